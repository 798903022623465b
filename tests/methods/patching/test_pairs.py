"""Dataset-level patching: per-pair grids equal single sweeps, the mean grid and its interval by hand,
resume, and the same rows from 2 Ray workers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from layerscope.errors import LayerscopeError
from layerscope.methods.patching import activation_patching
from layerscope.methods.patching.pairs import load_pairs, pair_sweep
from tests.conftest import tiny

PAIRS = [
    {"clean": "the capital of france is", "corrupt": "the capital of spain is", "answer": " paris", "wrong": " madrid"},
    {"clean": "the capital of italy is", "corrupt": "the capital of japan is", "answer": " rome", "wrong": " tokyo"},
    {"clean": "where is the eiffel tower ? paris", "corrupt": "where is the colosseum tower ? rome",
     "answer": " paris", "wrong": " rome"},
    {"clean": "one two", "corrupt": "one two three", "answer": " four", "wrong": " five"},  # lengths differ
]  # fmt: skip


def test_pair_grids_equal_single_sweeps_and_the_mean_is_by_hand():
    model = tiny("llama")
    table = pair_sweep(model, PAIRS, layers=[0, 2], progress=False)
    cells, mean = table[table["aggregate"] == "pair"], table[table["aggregate"] == "mean"]
    assert set(mean["relation"]) == {""}  # the test pairs name no relation: one mean grid
    assert set(cells["pair"]) == {0, 1, 2} and (table["pairs_skipped"] == 1).all()  # pair 3 cannot be patched
    normalized = {}
    for i in (0, 1, 2):
        pair = PAIRS[i]
        alone = activation_patching(model, pair["clean"], pair["corrupt"], pair["answer"], pair["wrong"],
                                    layers=[0, 2], progress=False)  # fmt: skip
        mine = cells[cells["pair"] == i].sort_values(["layer", "position"])
        np.testing.assert_allclose(mine["value"], alone.sort_values(["layer", "position"])["value"])
        clean, corrupt = alone["clean_value"].iloc[0], alone["corrupt_value"].iloc[0]
        for row in alone.itertuples():
            key = (row.layer, row.position - len(alone) // 2)
            normalized.setdefault(key, []).append((row.value - corrupt) / (clean - corrupt))
    for row in mean.itertuples():
        values = normalized[(row.layer, row.position_from_end)]
        assert row.n == len(values) and row.normalized == pytest.approx(np.mean(values))
        if len(values) > 1:
            half = 1.96 * np.std(values, ddof=1) / math.sqrt(len(values))
            assert row.ci_high - row.normalized == pytest.approx(half)


def test_resume_skips_finished_pairs(tmp_path):
    from layerscope.results import Checkpoint

    model = tiny("llama")
    first = pair_sweep(model, PAIRS[:2], layers=[1], checkpoint=Checkpoint(tmp_path / "c.jsonl", {"t": 1}),
                       progress=False)  # fmt: skip
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the config, then one line per pair
    again = pair_sweep(model, PAIRS[:3], layers=[1], checkpoint=Checkpoint(tmp_path / "c.jsonl", {"t": 1}),
                       progress=False)  # fmt: skip
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 4  # only the new pair ran
    old = first[first["aggregate"] == "pair"].reset_index(drop=True)
    new = again[(again["aggregate"] == "pair") & (again["pair"] < 2)].reset_index(drop=True)
    np.testing.assert_allclose(old["value"], new["value"])


def test_the_shipped_pairs_and_bad_files(tmp_path):
    shipped = load_pairs()
    assert len(shipped) >= 100 and all({"clean", "corrupt", "answer", "wrong"} <= set(p) for p in shipped)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"clean": "a", "corrupt": "b"}) + "\n")
    with pytest.raises(LayerscopeError, match="bad.jsonl:1 lacks answer, wrong"):
        load_pairs(bad)
    with pytest.raises(LayerscopeError, match="no pair can be patched"):
        pair_sweep(tiny("llama"), PAIRS[3:], progress=False)


def test_two_ray_workers_give_the_same_rows(one_thread):
    pytest.importorskip("ray")  # workers run 1 torch thread, and so does this process here
    from layerscope.testing.units import tiny_spec

    model = tiny("llama")
    local = pair_sweep(model, PAIRS, layers=[0, 3], progress=False)
    spread = pair_sweep(model, PAIRS, layers=[0, 3], workers=2, model_spec=tiny_spec(), progress=False)
    keys = ["aggregate", "pair", "layer", "position"]
    a, b = (t.sort_values(keys, na_position="first").reset_index(drop=True) for t in (local, spread))
    np.testing.assert_allclose(a["value"].fillna(0), b["value"].fillna(0), atol=1e-6)
    np.testing.assert_allclose(a["normalized"], b["normalized"], atol=1e-6)


def test_means_per_relation_and_over_all_pairs():
    pairs = [dict(p, relation=r) for p, r in zip(PAIRS[:3], ["a", "a", "b"], strict=True)]
    table = pair_sweep(tiny("llama"), pairs, layers=[1], progress=False)
    cells, mean = table[table["aggregate"] == "pair"], table[table["aggregate"] == "mean"]
    assert set(mean["relation"]) == {"a", "b", "all"}
    for row in mean[mean["relation"] == "all"].itertuples():
        mine = cells[(cells["layer"] == row.layer) & (cells["position_from_end"] == row.position_from_end)]
        assert row.normalized == pytest.approx(mine["normalized"].mean()) and row.n == len(mine)


def test_sweep_pairs_cli(capsys, tmp_path):
    from tests.conftest import save_model_dir
    from tests.helpers import run_cli

    folder = save_model_dir("llama", tmp_path / "m")
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS[:2]))
    code, out, err = run_cli(capsys, "sweep", "--model", folder, "--pairs", str(path), "--layers", "0,3", "--json")
    rows = json.loads(out)
    assert code == 0 and {"model", "method", "aggregate", "pair", "normalized"} <= set(rows[0])
    assert {r["aggregate"] for r in rows} == {"pair", "mean"}
    code, _, err = run_cli(capsys, "sweep", "--model", folder, "--pairs", str(path), "--clean", "x")
    assert code == 2 and "--pairs replaces" in err
    code, _, err = run_cli(capsys, "sweep", "--model", folder, "--clean", "a b", "--corrupt", "a c")
    assert code == 2 and "give --clean, --corrupt, --answer and --wrong" in err


def test_single_sweep_resume_and_patchscope_out(capsys, tmp_path):
    from tests.conftest import save_model_dir
    from tests.helpers import run_cli

    folder = save_model_dir("llama", tmp_path / "m")
    pair = PAIRS[0]
    argv = ["sweep", "--model", folder, "--clean", pair["clean"], "--corrupt", pair["corrupt"], "--answer",
            pair["answer"], "--wrong", pair["wrong"], "--layers", "0,2", "--json",
            "--resume", str(tmp_path / "r.jsonl")]  # fmt: skip
    code, first, _ = run_cli(capsys, *argv)
    assert code == 0 and len((tmp_path / "r.jsonl").read_text().splitlines()) == 2  # config + the grid
    code, again, err = run_cli(capsys, *argv)
    assert code == 0 and "already there" in err and json.loads(again) == json.loads(first)
    png = tmp_path / "ps.png"
    code, _, err = run_cli(capsys, "patchscope", "--model", folder, "--source", "the capital of france is",
                           "--source-layers", "1,3", "--max-new-tokens", "2", "--out", str(png))  # fmt: skip
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG", err
    code, _, err = run_cli(capsys, "patchscope", "--model", folder, "--source", "the capital", "--save", "ps.xlsx")
    assert code == 2 and ".xlsx" in err and "loaded" not in err  # refused before the model loads
