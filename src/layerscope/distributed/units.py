"""Run work units locally or on Ray actors, each unit's rows written exactly once by the driver.

Why the driver writes: a unit may run twice (its worker died after finishing but before the
driver heard back, or a retry raced the original), and a checkpoint written by several processes
could interleave lines. Here workers only compute and return rows; the driver adds a unit's rows
to the checkpoint the first time they arrive and ignores any later copy, so a run that lost
workers, or was killed and resumed, ends with the same rows as one process, none twice.

Failure handling: a worker that dies mid-unit (its process crashed, ``ray.kill``, its machine
left) is replaced and its unit is queued again, up to ``max_retries`` times; a unit that raises
(bad input, a :class:`~layerscope.errors.LayerscopeError`) stops the whole run with that error at
once, because running the other units would only repeat it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from layerscope.errors import LayerscopeError

#: what builds a worker's model: ``ls.load`` keywords, or a picklable zero-argument callable
ModelSpec = dict | Callable[[], Any]


@dataclass(frozen=True)
class Unit:
    """One resumable piece of work: ``key`` (hashable and JSON-able, unique in the run) and its ``payload``."""

    key: Any
    payload: Any = None


@dataclass
class Throughput:
    """Units finished per worker, for the progress bar and the benchmark."""

    started: float = field(default_factory=time.perf_counter)
    done: dict[int, int] = field(default_factory=dict)

    def add(self, worker: int) -> None:
        self.done[worker] = self.done.get(worker, 0) + 1

    def describe(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return " ".join(f"w{w}:{n / elapsed:.2f}/s" for w, n in sorted(self.done.items()))


def build_model(spec: ModelSpec):
    """The model a spec describes (``ls.load(**spec)``, or the callable's result)."""
    if callable(spec):
        return spec()
    from layerscope.models.model import load

    return load(**{"progress": False, **spec})


def is_spec(model) -> bool:
    """Whether ``model`` describes a model (a dict or a callable) rather than being one."""
    return isinstance(model, dict) or (callable(model) and not hasattr(model, "hf"))


def worker_spec(model) -> ModelSpec:
    """What each worker loads: a spec as given, or the spec a loaded model remembers (``ls.load``
    records its arguments in ``model.spec``)."""
    if is_spec(model):
        return model
    spec = getattr(model, "spec", None)
    if spec is None:
        raise LayerscopeError(
            f"a distributed run needs a model each worker can load: {getattr(model, 'name', 'this model')} was "
            "built in memory; load it with ls.load(name or path), or give model.spec (a zero-argument callable)"
        )
    return spec


def run_units(
    units: Iterable[Unit],
    work: Callable[[Any, Unit], list[dict]],
    model: ModelSpec | Any,
    *,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    threads_per_worker: int = 1,
    checkpoint=None,
    progress: bool = True,
    max_retries: int = 3,
    desc: str = "units",
    timings: dict | None = None,
) -> dict[Any, list[dict]]:
    """Run ``work(model, unit)`` for every unit not already in ``checkpoint``; rows by unit key.

    Args:
        units: the work; keys must be unique.
        work: a module-level function (workers import it by name) ``(model, unit) -> rows``.
        model: a loaded model, or a spec (``{"model": "smollm2-135m", "dtype": "float32"}``, or a
            zero-argument callable). With Ray each worker loads its replica from the spec, or from the
            loaded model's ``spec`` (what ``ls.load`` was given).
        workers: start a local Ray cluster with this many workers (actors).
        address: use an existing Ray cluster (``"auto"``, ``"ray://host:10001"``); ``workers``
            then says how many actors to place on it (default: one per CPU the cluster has).
        gpus_per_worker: GPUs per actor; None = 1 where the cluster has GPUs, else 0 (an actor given a
            GPU loads its replica there).
        threads_per_worker: torch threads inside each worker.
        checkpoint: anything with ``done(key)`` / ``add(key, rows)`` / ``rows_of(key)``
            (:class:`layerscope.results.Checkpoint`): finished units are skipped, new ones added.
        max_retries: how often a unit whose worker died is tried again elsewhere.
        timings: a dict filled with ``startup_s`` (starting the workers and loading their models, or
            building the local model) and ``units_s`` (running the units after that).
    Returns:
        ``{key: rows}`` for every unit, in the order of ``units``.
    """
    units = list(units)
    keys = [u.key for u in units]
    unhashable = [k for k in keys if getattr(k, "__hash__", None) is None]
    if unhashable:
        raise LayerscopeError(f"a work unit's key must be hashable (a tuple, not a list): {unhashable[0]!r}")
    if len(set(map(repr, keys))) != len(keys):
        raise LayerscopeError("work units must have unique keys")
    if workers is not None and workers < 1:
        raise LayerscopeError(f"--workers must be at least 1, got {workers}")
    results: dict[Any, list[dict]] = {}
    todo = []
    for unit in units:
        if checkpoint is not None and checkpoint.done(unit.key):
            results[repr(unit.key)] = checkpoint.rows_of(unit.key)
        else:
            todo.append(unit)
    from layerscope.progress import bar as progress_bar

    bar = progress_bar(progress=progress, total=len(units), initial=len(units) - len(todo), desc=desc, unit="unit")
    try:
        started = time.perf_counter()
        ready = finished = started
        if not todo:
            pass  # every unit is in the checkpoint: no model to build, no cluster to start
        elif workers is None and address is None:
            local = build_model(model) if is_spec(model) else model
            ready = time.perf_counter()
            for unit in todo:
                _record(results, checkpoint, unit, work(local, unit))
                bar.update(1)
            finished = time.perf_counter()
        else:
            from layerscope.distributed.ray_pool import RayPool

            with RayPool(worker_spec(model), workers, address, gpus_per_worker, threads_per_worker) as pool:
                ready = pool.throughput.started = time.perf_counter()  # rates from the first unit on
                for unit, rows, worker in pool.map(work, todo, max_retries):
                    if _record(results, checkpoint, unit, rows):
                        bar.update(1)
                        pool.throughput.add(worker)
                        bar.set_postfix_str(pool.throughput.describe(), refresh=False)
                finished = time.perf_counter()  # before the workers are stopped
        if timings is not None:
            timings.update(startup_s=ready - started, units_s=finished - ready)
    finally:
        bar.close()
    return {key: results[repr(key)] for key in keys}


def _record(results: dict, checkpoint, unit: Unit, rows: list[dict]) -> bool:
    """Keep a unit's rows the first time they arrive (False for a duplicate)."""
    if repr(unit.key) in results:
        return False
    results[repr(unit.key)] = rows
    if checkpoint is not None and not checkpoint.done(unit.key):
        checkpoint.add(unit.key, rows)
    return True
