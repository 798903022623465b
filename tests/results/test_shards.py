"""Streamed captures: shards planned to a size, written one at a time, round-trip, resume, refuse."""

from __future__ import annotations

import json

import pytest
import torch

from layerscope.capture import capture_to_shards, plan_capture
from layerscope.errors import ConfigError, LayerscopeError, ResultError
from layerscope.results.shards import iter_shards, plan_shards, read_index, shard_bytes
from tests.conftest import save_model_dir, tiny
from tests.helpers import run_cli

TEXTS = ["the capital of france is paris", "hello world", "one two three four five six seven",
         "the cat", "what is the capital of spain ?", "a b c d e f g h i j k l", "the dog and the cat"]  # fmt: skip


def test_plan_shards_covers_every_prompt_once_within_the_size():
    lengths = [3, 9, 2, 2, 14, 5, 5, 5, 1]
    for size in (1, 20, 40, 100, 10_000):
        ranges = plan_shards(lengths, 2, size)
        assert [i for a, b in ranges for i in range(a, b)] == list(range(len(lengths)))  # in order, once
        for a, b in ranges:
            padded = max(lengths[a:b]) * (b - a) * 2
            assert padded <= size or b - a == 1  # over the size only when one prompt alone is
        assert shard_bytes(lengths, ranges, 2) == sum(max(lengths[a:b]) * (b - a) * 2 for a, b in ranges)
    assert len(plan_shards(lengths, 2, 10_000)) == 1
    assert plan_shards([], 2, 100) == []


def test_shards_round_trip_to_the_states_of_each_text(tmp_path):
    model = tiny("llama")
    layers = [0, 2, 3]
    plan = plan_capture(model, TEXTS, ["resid_post", "resid_pre"], layers, 2_000)
    assert len(plan.ranges) > 2  # small shards: several
    index = capture_to_shards(model, TEXTS, tmp_path / "cap", sites=["resid_post", "resid_pre"], layers=layers,
                              shard_size=2_000, batch_size=2, plan=plan)  # fmt: skip
    assert index["complete"] and index["total_bytes"] == plan.total_bytes
    seen = 0
    written = 0
    for tensors, entry in iter_shards(tmp_path / "cap"):
        a, b = entry["prompts"]
        assert a == seen
        seen = b
        for k, text in enumerate(TEXTS[a:b]):
            alone = model.run(text, capture=[("resid_post", layers), ("resid_pre", layers)], logits=None)
            n = alone.stack("resid_post", layers).shape[2]
            mask = tensors["attention_mask"][k].bool()
            assert int(mask.sum()) == n and mask[-n:].all()  # left-padded within its shard
            for site in ("resid_post", "resid_pre"):
                expected = alone.stack(site, layers)[:, 0]  # [layer, position, hidden]
                torch.testing.assert_close(tensors[site][:, k, -n:], expected, atol=1e-5, rtol=1e-5)
        written += sum(t.numel() * t.element_size() for name, t in tensors.items() if name.startswith("resid"))
    assert seen == len(TEXTS)
    assert written == plan.total_bytes  # the size said up front is what was written
    assert index["tokens"][1] == [model.tokenizer.decode([i]) for i in model.tokenizer(TEXTS[1])["input_ids"]]


def test_an_interrupted_capture_resumes_without_redoing_finished_shards(tmp_path, monkeypatch):
    import layerscope.capture as capture

    model = tiny("llama")
    folder = tmp_path / "cap"
    real = capture.capture_batches
    calls = []

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(capture, "capture_batches", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        capture_to_shards(model, TEXTS, folder, layers=[1], shard_size=1_000)
    with pytest.raises(ResultError, match="not complete"):
        list(iter_shards(folder))
    assert len(read_index(folder)["shards"]) == 2
    calls.clear()
    monkeypatch.setattr(capture, "capture_batches", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    capture_to_shards(model, TEXTS, folder, layers=[1], shard_size=1_000)
    n_shards = len(plan_capture(model, TEXTS, ["resid_post"], [1], 1_000).ranges)
    assert len(calls) == n_shards - 2  # the two finished shards were not computed again
    fresh = capture_to_shards(model, TEXTS, tmp_path / "fresh", layers=[1], shard_size=1_000)
    for (a, _), (b, _) in zip(iter_shards(folder), iter_shards(tmp_path / "fresh"), strict=True):
        assert torch.equal(a["resid_post"], b["resid_post"])
    assert fresh["shards"]["0"]["blake2b"] == read_index(folder)["shards"]["0"]["blake2b"]


def test_a_folder_of_something_else_or_another_config_is_refused(tmp_path):
    model = tiny("llama")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        capture_to_shards(model, TEXTS, other, layers=[1])
    assert (other / "keep.txt").read_text() == "mine"
    capture_to_shards(model, TEXTS, tmp_path / "cap", layers=[1])
    with pytest.raises(ConfigError, match="another config"):
        capture_to_shards(model, TEXTS, tmp_path / "cap", layers=[2])
    capture_to_shards(model, TEXTS, tmp_path / "cap", layers=[2], restart=True)
    assert read_index(tmp_path / "cap")["config"]["layers"] == [2]
    shard = tmp_path / "cap" / read_index(tmp_path / "cap")["shards"]["0"]["file"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"x")  # a shard changed after the index
    with pytest.raises(ResultError, match="does not match"):
        list(iter_shards(tmp_path / "cap"))
    with pytest.raises(LayerscopeError, match="no text"):
        capture_to_shards(model, [], tmp_path / "empty")


def test_capture_cli_streams_shards_and_says_the_size_first(capsys, tmp_path):
    folder = save_model_dir("llama", tmp_path / "llama")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS))
    out = tmp_path / "states"
    code, stdout, err = run_cli(capsys, "capture", "--model", folder, "--texts", str(texts), "--layers", "0,3",
                                "--out", str(out), "--shard-size", "2kB", "--json")  # fmt: skip
    assert code == 0, err
    index = read_index(out)
    said = err.split("will write ")[1].split(" of states")[0]
    assert said == f"{index['total_bytes'] / 1e3:.1f} kB"
    assert len(index["shards"]) > 1 and all(r["n_prompts"] == len(TEXTS) for r in json.loads(stdout))
    code, _, err = run_cli(capsys, "capture", "--model", folder, "hi", "--out", str(tmp_path / "x.npz"))
    assert code != 0 and "FILE.safetensors or a folder" in err


def test_capture_cli_with_a_memory_budget_offloads_and_gives_the_same_states(capsys, tmp_path):
    """``--max-memory`` below the weights' size: parts on disk, the same tensors as in memory."""
    from layerscope.results.states import read_states

    folder = save_model_dir("llama", tmp_path / "llama")
    base = ["capture", "--model", folder, *TEXTS[:3], "--layers", "0,3"]
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "a.safetensors"))
    assert code == 0, err
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "b.safetensors"), "--max-memory", "cpu=20kB",
                           "--offload-folder", str(tmp_path / "offload"))  # fmt: skip
    assert code == 0, err
    assert "on disk (offloaded" in err  # weights did go to disk
    a, b = read_states(tmp_path / "a.safetensors")[0], read_states(tmp_path / "b.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "c.safetensors"), "--max-memory", "gpu=1GB")
    assert code != 0 and "'gpu' is not a device" in err
