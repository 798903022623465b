"""Every distributed method on a local Ray cluster of 2 CPU workers: the rows of one process.

Each method's resumable loop is a list of work units (:func:`layerscope.distributed.run_units`);
here each runs once in this process and once on two workers (which rebuild the same tiny model
from ``model.spec``), and the rows must agree: same keys, same values to 1e-6, none twice.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from layerscope.testing import tiny_model

ray = pytest.importorskip("ray")
# workers run 1 torch thread: so does the single-process reference, or float sums differ in order
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def same_rows(local: pd.DataFrame, spread: pd.DataFrame, keys: list[str], tolerance: float = 1e-6) -> None:
    """Same key set, no duplicates, numbers to ``tolerance``, everything else equal."""
    assert list(local.columns) == list(spread.columns)
    assert not spread.duplicated(subset=keys).any()
    a, b = (t.sort_values(keys).reset_index(drop=True) for t in (local, spread))
    assert a[keys].equals(b[keys])
    for column in a.columns:
        if pd.api.types.is_float_dtype(a[column]):
            assert np.allclose(a[column], b[column], atol=tolerance, equal_nan=True), column
        else:
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column


def test_eval_attributes_on_two_workers(cluster, model):
    from layerscope.methods.patchscopes.attributes import eval_attributes

    kwargs = dict(limit=2, source_layers="0,3", target_layers="1", max_new_tokens=2)
    relations = ["country_capital", "element_symbol", "country_currency"]
    local = eval_attributes(model, relations, **kwargs)
    spread = eval_attributes(model, relations, workers=2, **kwargs)
    same_rows(local["items"], spread["items"], ["relation", "subject", "source_layer", "target_layer"])
    same_rows(local["probe"], spread["probe"], ["relation", "layer"])
    same_rows(local["pairs"], spread["pairs"], ["relation", "source_layer", "target_layer"])


def test_eval_describe_on_two_workers(cluster, model, tmp_path):
    from layerscope.methods.patchscopes.describe import eval_describe
    entities = [{"entity": e, "description": f"a place called {e}"} for e in ("paris", "tokyo", "rome", "oslo", "lima")]
    kwargs = dict(layers="0,3", max_new_tokens=3, entities_per_batch=2)
    local = eval_describe(model, entities, **kwargs)
    resume = tmp_path / "describe.jsonl"
    spread = eval_describe(model, entities, workers=2, resume=str(resume), **kwargs)
    same_rows(local["items"], spread["items"], ["entity", "layer"])
    keys = [json.loads(line)["key"] for line in resume.read_text().splitlines()[1:]]
    assert sorted(map(tuple, keys)) == sorted([("paris", "tokyo"), ("rome", "oslo"), ("lima",)])
    assert len(keys) == len({json.dumps(k) for k in keys}) == 3  # 5 entities in units of 2, each written once


def test_eval_next_token_on_two_workers(cluster, model):
    from layerscope.methods.patchscopes.evaluate import eval_next_token

    texts = ["the capital of france is paris", "hello world and more", "one two three four five six",
             "the cat and the dog", "what is the capital of spain ?"]  # fmt: skip
    methods = ["patchscope", "logit_lens"]
    local = eval_next_token(model, texts, methods, positions="all")
    one_unit = eval_next_token(model, texts, methods, positions="all", texts_per_unit=100)
    spread = eval_next_token(model, texts, methods, positions="all", texts_per_unit=2, workers=2)
    same_rows(local, one_unit, ["method", "layer"], tolerance=1e-9)  # chunks sum to the whole
    same_rows(local, spread, ["method", "layer"])


def test_attend_sweep_on_two_workers(cluster, model):
    import layerscope.methods.attend as attend

    items = attend.task_items("copy", limit=8)
    kwargs = dict(progress=False, task="copy", max_group_rows=3)
    for seeding in ("layerscope", "authors"):  # the knob travels with the units' variants
        local = attend.sweep_task(model, items, ["random", "shuffle", "freeze"], "0,2", seeding=seeding, **kwargs)
        spread = attend.sweep_task(model, items, ["random", "shuffle", "freeze"], "0,2", seeding=seeding,
                                   workers=2, **kwargs)  # fmt: skip
        assert (spread["seeding"] == seeding).all()
        same_rows(local, spread, ["layer", "manipulation"])


def test_loop_verify_and_inject_on_two_workers(cluster, model):
    import layerscope.methods.loops as L

    task = L.arithmetic_task(model, 24, seed=1)
    local = L.self_verification(model, task, (1, 3), [1, 2], folds=3, progress=False)
    spread = L.self_verification(model, task, (1, 3), [1, 2], folds=3, progress=False, workers=2)
    keys = ["loops", "metric", "layer", "iteration"]
    same_rows(local.fillna({"layer": -1, "iteration": -1}), spread.fillna({"layer": -1, "iteration": -1}), keys)

    concepts = {"fire": ["the fire is red", "a big fire", "fire fire fire", "the red fire and the sun"],
                "music": ["the music is loud", "music and music", "a song of music", "the old music"]}
    neutral = ["the city", "a new model", "hello world", "the old tower", "a queen", "the river is blue"]
    kwargs = dict(concepts=concepts, neutral=neutral, scale=2.0, max_new_tokens=2)
    local = L.concept_injections(model, ["fire", "music"], (1, 3), [1, 2], progress=False, **kwargs)
    spread = L.concept_injections(model, ["fire", "music"], (1, 3), [1, 2], progress=False, workers=2, **kwargs)
    same_rows(local, spread, ["concept", "loops", "extract_iteration", "inject_iteration"])


def test_a_worker_killed_with_ray_kill_is_replaced(cluster, tmp_path):
    """``ray.kill`` of the actor running a unit: the unit runs again elsewhere, rows unchanged."""
    from layerscope.distributed import run_units
    from layerscope.testing.units import noise_unit, tiny_spec, units

    local = run_units(units(8), noise_unit, tiny_model("llama"), progress=False)
    marker = tmp_path / "killed"
    spread = run_units(units(8, kill_marker=str(marker)), noise_unit, tiny_spec(), workers=2, progress=False)
    assert marker.exists()  # an actor was killed mid-unit
    assert list(spread) == list(local)
    for key in local:
        (a,), (b,) = local[key], spread[key]
        assert a["token"] == b["token"] and abs(a["value"] - b["value"]) <= 1e-6


def test_eval_attributes_cli_on_two_workers(cluster, capsys, tmp_path):
    """The CLI's workers load the model the driver loaded (``--model PATH``, recorded in ``model.spec``)."""
    from tests.conftest import save_model_dir
    from tests.helpers import run_cli

    path = save_model_dir("llama", tmp_path / "llama")
    argv = ["eval", "attributes", "--model", path, "--relations", "country_capital,element_symbol", "--limit", "2",
            "--source-layers", "0,3", "--target-layers", "1", "--max-new-tokens", "2", "--json"]  # fmt: skip
    code, local, _ = run_cli(capsys, *argv)
    code2, spread, _ = run_cli(capsys, *argv, "--workers", "2")
    assert code == code2 == 0
    rows = lambda out: sorted(json.dumps(r, sort_keys=True) for r in json.loads(out))  # noqa: E731
    assert rows(local) == rows(spread)
    code, _, err = run_cli(capsys, *argv, "--workers", "0")
    assert code != 0 and "--workers must be at least 1" in err
