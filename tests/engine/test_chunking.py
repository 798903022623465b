"""Memory-budget chunking: parsing, the per-row estimate, and chunk coverage."""

import pytest

from layerscope.engine.chunking import chunks, parse_budget, row_bytes, rows_per_chunk
from layerscope.errors import LayerscopeError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512MB", 512 * 10**6), ("2GiB", 2 * 2**30), ("1.5 GB", 1_500_000_000), (4096, 4096), ("100", 100)],
)
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["lots", "5 parsecs", "-1GB", "0", 0])
def test_parse_budget_rejects_nonsense(text):
    with pytest.raises(LayerscopeError, match="budget"):
        parse_budget(text)


def test_row_bytes_grows_with_what_is_kept(decoder):
    base = row_bytes(decoder, 16)
    assert row_bytes(decoder, 32) > base
    logits_all = row_bytes(decoder, 16, logits_positions=16)
    assert logits_all - base == 15 * decoder.vocab_size * 4
    captured = row_bytes(decoder, 16, captured_states=3)
    assert captured - base == 3 * 16 * decoder.d_model * 4
    assert row_bytes(decoder, 16, keep_cache=True) > base


def test_rows_per_chunk_respects_the_budget():
    assert rows_per_chunk(None, 1000, 37) == 37
    assert rows_per_chunk(10_000, 1000, 37) == 10
    assert rows_per_chunk(10, 1000, 37) == 1  # never zero: one row always runs
    assert rows_per_chunk(10**9, 1000, 37) == 37


@pytest.mark.parametrize(("n", "size"), [(10, 3), (10, 10), (10, 50), (1, 1), (0, 4)])
def test_chunks_cover_every_row_once(n, size):
    covered = [i for part in chunks(n, size, progress=False) for i in range(n)[part]]
    assert covered == list(range(n))
    assert all(part.stop - part.start <= size for part in chunks(n, size, progress=False))


def test_checkpoint_resumes_and_ignores_a_cut_line(tmp_path):
    from layerscope.results.io import Checkpoint

    path = tmp_path / "run.jsonl"
    first = Checkpoint(path, config={"model": "m", "n": 3})
    first.add(0, [{"layer": 0, "value": 0.5}])
    first.add([1, "a"], [{"layer": 1, "value": 1.5}])
    with open(path, "a") as handle:
        handle.write('{"key": 2, "rows": [{"lay')  # an interrupted write
    again = Checkpoint(path, config={"model": "m", "n": 3})
    assert again.done(0) and again.done([1, "a"]) and not again.done(2)
    assert again.rows() == [{"layer": 0, "value": 0.5}, {"layer": 1, "value": 1.5}]
    again.add(2, [{"layer": 2, "value": 2.5}])
    assert Checkpoint(path, config={"model": "m", "n": 3}).done(2)  # written after the cut line, still read
    other = Checkpoint(path, config={"model": "m", "n": 4}, restart=True)  # another config: --restart
    assert len(other) == 0 and not other.done(0)
    assert Checkpoint(None).rows() == []
