"""Distributed units on a local Ray cluster of 2 CPU workers: the rows of one process, whatever dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layerscope.distributed import run_units
from layerscope.errors import LayerscopeError
from layerscope.testing import tiny_model
from layerscope.testing.units import noise_unit, tiny_spec, units

ray = pytest.importorskip("ray")
# workers run 1 torch thread: so does the single-process reference, or float sums differ in order
pytestmark = pytest.mark.usefixtures("one_thread")


def _flat(results):
    return sorted((row["unit"], row["layer"], row["token"], row["value"]) for rows in results.values() for row in rows)


@pytest.fixture(scope="module")
def single_process():
    return run_units(units(), noise_unit, tiny_model("llama"), progress=False)


def test_two_workers_give_the_rows_of_one_process(cluster, single_process):
    distributed = run_units(units(), noise_unit, tiny_spec(), workers=2, progress=False)
    assert list(distributed) == list(single_process)  # every unit, in unit order
    for (a, b) in zip(_flat(distributed), _flat(single_process), strict=True):
        assert a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-6


def test_a_worker_that_dies_mid_unit_is_replaced_and_nothing_is_lost(cluster, single_process, tmp_path):
    from layerscope.results import Checkpoint

    marker = tmp_path / "crashed"
    checkpoint = Checkpoint(tmp_path / "run.jsonl", {"test": "crash"})
    distributed = run_units(
        units(crash_marker=str(marker)), noise_unit, tiny_spec(), workers=2, checkpoint=checkpoint, progress=False
    )
    assert marker.exists()  # a worker did die
    for a, b in zip(_flat(distributed), _flat(single_process), strict=True):
        assert a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-6
    lines = (tmp_path / "run.jsonl").read_text().splitlines()[1:]
    assert len(lines) == len(units())  # each unit's rows written exactly once


def test_a_unit_that_raises_stops_the_run_with_its_error(cluster):
    start = time.perf_counter()
    with pytest.raises(LayerscopeError, match=r"unit \('unit', 5\) has bad input"):
        run_units(units(fail_key=("unit", 5)), noise_unit, tiny_spec(), workers=2, progress=False)
    assert time.perf_counter() - start < 60


DRIVER = """
import sys
from layerscope.distributed import run_units
from layerscope.results import Checkpoint
from layerscope.testing.units import noise_unit, tiny_spec, units, slow_unit
checkpoint = Checkpoint(sys.argv[1], {"test": "driver"})
run_units(units(), slow_unit if sys.argv[2] == "slow" else noise_unit, tiny_spec(), workers=2,
          checkpoint=checkpoint, progress=False)
"""


def test_sigkill_of_the_driver_then_resume_gives_the_same_rows(single_process, tmp_path):
    from layerscope.results import Checkpoint

    path = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(path), "slow"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 4):
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    done = len(path.read_text().splitlines()) - 1
    assert 0 < done < len(units())  # killed mid-run
    subprocess.run([sys.executable, "-c", DRIVER, str(path), "fast"], env=env, check=True, timeout=300)
    resumed = Checkpoint(path, {"test": "driver"})
    rows = sorted((r["unit"], r["layer"], r["token"], r["value"]) for r in resumed.rows())
    assert len(path.read_text().splitlines()) - 1 == len(units())  # no unit written twice
    for a, b in zip(rows, _flat(single_process), strict=True):
        assert a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-6


def test_metrics_and_probes_over_models_on_two_workers(cluster, tmp_path):
    """``metrics|probe --models`` units (one model, or one (model, task), each) on Ray: the local rows."""
    from layerscope.methods.layer_by_layer import compare_models, compare_probes
    from tests.conftest import save_model_dir

    paths = [save_model_dir(arch, tmp_path / arch) for arch in ("llama", "gpt2")]
    texts = ["the capital of france is paris", "hello world", "one two three four five", "the cat and the dog"]
    metrics = ["prompt-entropy", "curvature"]
    local = compare_models(paths, texts, metrics, progress=False)
    spread = compare_models(paths, texts, metrics, workers=2, progress=False)
    keys = ["model", "depth", "metric"]
    a, b = (t.sort_values(keys).reset_index(drop=True) for t in (local, spread))
    assert a[keys].equals(b[keys]) and (a["value"] - b["value"]).abs().max() <= 1e-6
    tasks = {"t": ([f"{w} item {i}" for i in range(6) for w in ("good", "bad")], ["p", "n"] * 6)}
    local = compare_probes(paths, tasks, folds=3, progress=False)
    spread = compare_probes(paths, tasks, folds=3, workers=2, progress=False)
    keys = ["model", "task", "depth"]
    a, b = (t.sort_values(keys).reset_index(drop=True) for t in (local, spread))
    assert a[keys].equals(b[keys]) and (a["accuracy"] - b["accuracy"]).abs().max() <= 1e-9


def test_metrics_models_cli_with_workers(cluster, capsys, tmp_path):
    import json

    from tests.conftest import save_model_dir
    from tests.helpers import run_cli

    paths = [save_model_dir(arch, tmp_path / arch) for arch in ("llama", "gpt2")]
    argv = ["metrics", "--models", ",".join(paths), "--limit", "4", "--metrics", "prompt-entropy", "--json"]
    code, local, _ = run_cli(capsys, *argv)
    code2, spread, _ = run_cli(capsys, *argv, "--workers", "2")
    assert code == code2 == 0
    rows = lambda out: sorted((r["model"], r["depth"], round(r["value"], 6)) for r in json.loads(out))  # noqa: E731
    assert rows(local) == rows(spread)
    code, _, err = run_cli(capsys, "metrics", "--model", paths[0], "--workers", "2")
    assert code == 2 and "--workers and --ray go with --models" in err


def test_a_finished_checkpoint_starts_no_cluster_and_loads_no_model(single_process, tmp_path, monkeypatch):
    from layerscope.distributed import ray_pool
    from layerscope.results import Checkpoint

    checkpoint = Checkpoint(tmp_path / "run.jsonl", {"test": "done"})
    for key, rows in single_process.items():
        checkpoint.add(key, rows)
    monkeypatch.setattr(ray_pool.RayPool, "__enter__", lambda self: pytest.fail("started a cluster"))

    def no_model():
        raise AssertionError("loaded a model")

    again = run_units(units(), noise_unit, no_model, workers=2, checkpoint=checkpoint, progress=False)
    assert _flat(again) == _flat(single_process)


def test_a_model_the_workers_cannot_load_fails_before_any_unit_with_its_error(cluster, tmp_path):
    start = time.perf_counter()
    with pytest.raises(LayerscopeError, match="not found"):
        run_units(units(2), noise_unit, {"model": str(tmp_path / "no-such-model")}, workers=2, progress=False)
    assert time.perf_counter() - start < 60


def test_timings_split_start_up_from_the_units(cluster):
    timings: dict = {}
    run_units(units(4), noise_unit, tiny_spec(), workers=2, progress=False, timings=timings)
    assert set(timings) == {"startup_s", "units_s"} and timings["startup_s"] > 0 and timings["units_s"] > 0
