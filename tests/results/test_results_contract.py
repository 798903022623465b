"""The results contract, end to end through the CLI on a tiny model.

For every registered method (the registry is what the CLI is built from, so a new method must
add an example here): ``--json`` rows name the model and the method; ``--save out.parquet``
writes the rows and ``out.config.json``; ``layerscope rerun out.config.json --json`` prints the
same rows. A bad ``--save`` fails with exit 2 before any model loads.
"""

import json
import os

import pandas as pd
import pytest

from layerscope.methods import METHODS
from layerscope.results.io import table_records
from tests.conftest import save_model_dir
from tests.helpers import run_cli

PROMPT = "the capital of france is"
SWITCH = ["--prompt", PROMPT, "--position", "france", "--source", "the country italy", "--source-position", "italy"]

#: per registered method, one or more command lines (without --model) that are cheap on the tiny model
EXAMPLES = {
    "lens": [["lens", PROMPT, "--layers", "0:4:2"]],
    "layer_by_layer": [
        ["metrics", "--limit", "4", "--metrics", "curvature,prompt-entropy"],
        ["probe", "--task", "sentiment", "--folds", "2"],
    ],
    "patchscopes": [
        ["patchscope", "--source", PROMPT, "--source-layers", "0,2", "--max-new-tokens", "1"],
        ["eval", "next-token", "--limit", "2", "--positions", "2", "--layers", "0:4:2", "--methods", "logit-lens"],
    ],
    "attend": [["attend", "switch", *SWITCH, "--answers", " paris, rome", "--layers", "0:4:2"]],
    "loops": [
        ["loop", "verify", "--task", "arithmetic", "--n", "10", "--block", "1:3", "--loops", "1,2"]
        + ["--probe-layers", "2", "--folds", "2"]
    ],
    "patching": [
        ["sweep", "--clean", "the eiffel tower is located in the city of"]
        + ["--corrupt", "the colosseum tower is located in the city of", "--answer", "paris", "--wrong", "rome"]
        + ["--layers", "0:4:2"]
    ],
}
NON_METHOD = [["info"]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama"))


def test_every_registered_method_has_an_example():
    assert set(EXAMPLES) == set(METHODS)


CASES = [(name, argv) for name, lines in EXAMPLES.items() for argv in lines] + [("info", argv) for argv in NON_METHOD]


@pytest.mark.parametrize(("method", "argv"), CASES, ids=[" ".join(a[:2]) for _, a in CASES])
def test_rows_name_model_and_method_and_save_reruns_to_the_same_rows(capsys, tmp_path, model_dir, method, argv):
    out = tmp_path / "out.parquet"
    code, stdout, err = run_cli(capsys, *argv, "--model", model_dir, "--json", "--save", str(out))
    assert code == 0, err
    rows = json.loads(stdout)
    assert rows, "no rows"
    model_name = os.path.basename(model_dir)
    assert {row["model"] for row in rows} == {model_name}
    assert all(row["method"] for row in rows)
    # --save: the same rows, every column, and the config beside it
    saved = pd.read_parquet(out)
    assert list(saved.columns) == list(rows[0]) and len(saved) == len(rows)
    assert _same(table_records(saved), rows)
    config = json.loads((tmp_path / "out.config.json").read_text())
    assert config["command"][0] == argv[0] and config["argv"][: len(argv)] == argv
    assert config["models"] and config["models"][0]["name"] == model_name and len(config["models"][0]["hash"]) == 32
    assert {"layerscope", "torch", "transformers"} <= set(config["versions"])
    # rerun: the same rows
    code, again, err = run_cli(capsys, "rerun", str(tmp_path / "out.config.json"), "--json")
    assert code == 0, err
    assert _same(json.loads(again), rows)


def _same(a: list[dict], b: list[dict]) -> bool:
    """Row lists equal, floats to 1e-9 (parquet and JSON both keep float64), None and NaN alike."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if set(x) != set(y):
            return False
        for key in x:
            u, v = x[key], y[key]
            if isinstance(u, float) and isinstance(v, float):
                if not (u == pytest.approx(v, rel=1e-9, abs=1e-12) or (u != u and v != v)):
                    return False
            elif u != v:
                return False
    return True


@pytest.mark.parametrize(
    ("target", "message"),
    [("out.xlsx", "unknown format '.xlsx'"), ("a_file/out.csv", "not a writable folder"), ("out", "unknown format")],
)
def test_bad_save_fails_before_the_model_loads(capsys, tmp_path, monkeypatch, target, message):
    import layerscope.models.model as model_module

    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setattr(model_module, "load", lambda *a, **k: pytest.fail("the model loaded before --save was checked"))
    code, out, err = run_cli(capsys, "lens", PROMPT, "--save", str(tmp_path / target))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_fast(capsys, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, "lens", PROMPT, "--save", str(folder / "out.json"))
    finally:
        folder.chmod(0o700)
    assert code == 2 and "not a writable folder" in err


def test_models_rows_name_their_model_and_save_with_a_config(capsys, tmp_path):
    out = tmp_path / "models.csv"
    code, stdout, err = run_cli(capsys, "models", "--json", "--save", str(out))
    assert code == 0, err
    rows = json.loads(stdout)
    assert all(row["model"] == row["name"] and row["method"] == "models" for row in rows)
    assert pd.read_csv(out)["model"].tolist() == [row["model"] for row in rows]
    config = json.loads((tmp_path / "models.config.json").read_text())
    assert config["command"] == ["models"] and config["models"] == []


def test_rerun_of_a_file_that_is_no_config(capsys, tmp_path):
    bad = tmp_path / "x.config.json"
    bad.write_text('{"rows": 3}')
    code, _, err = run_cli(capsys, "rerun", str(bad))
    assert code == 2 and "no layerscope run config" in err
    code, _, err = run_cli(capsys, "rerun", str(tmp_path / "missing.config.json"))
    assert code == 2 and "cannot read" in err
