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
