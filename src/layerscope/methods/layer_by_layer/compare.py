"""Several models side by side on a relative-depth axis, resumable from a checkpoint."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pandas as pd

from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer.probing import best_vs_last, probe_layers
from layerscope.methods.layer_by_layer.representation import DEFAULT_METRICS, canonical_metric, representation_metrics
from layerscope.results.contract import tidy
from layerscope.results.io import Checkpoint

# ---- several models side by side -------------------------------------------------------------


def _key(entry) -> str:
    return entry if isinstance(entry, str) else entry.name


def _load(entry, load_options: dict | None):
    """A name or path is loaded now (one model is held at a time); a loaded model is used as is."""
    if not isinstance(entry, str):
        return entry
    from layerscope.models.model import load

    return load(entry, **(load_options or {}))


def _check_names(models: Sequence) -> list:
    models = list(models)
    if not models:
        raise LayerscopeError("no model given")
    keys = [_key(m) for m in models]
    if len(set(keys)) != len(keys):
        raise LayerscopeError(f"a model is listed twice: {keys}")
    return models


def no_model():
    """The workers' model spec for units that load their own model (a different one per unit)."""
    return None


_LOADED: dict = {}


def _worker_model(name: str, load_options: dict | None):
    """The unit's model in a worker process: kept while consecutive units ask for the same one."""
    key = (name, repr(sorted((load_options or {}).items())))
    if key not in _LOADED:
        _LOADED.clear()  # one model at a time per worker
        _LOADED[key] = _load(name, {"progress": False, **(load_options or {})})
    return _LOADED[key]


def metrics_unit(_, unit) -> list[dict]:
    """One model's metrics (a Ray work unit: the worker loads the model the unit names)."""
    p = unit.payload
    model = _worker_model(p["model"], p["load_options"])
    table = representation_metrics(model, p["texts"], p["metrics"], progress=False, **p["options"])
    return table.to_dict(orient="records")


def probe_unit(_, unit) -> list[dict]:
    """One (model, task) probe (a Ray work unit)."""
    p = unit.payload
    model = _worker_model(p["model"], p["load_options"])
    table = probe_layers(model, p["texts"], p["labels"], progress=False, **p["options"])
    table.insert(2, "task", p["task"])
    return table.to_dict(orient="records")


def _distributed(models, units, work, checkpoint, progress, distributed: dict) -> list[pd.DataFrame]:
    from layerscope.distributed import run_units

    if not all(isinstance(m, str) for m in models):
        raise LayerscopeError("a distributed run names its models (workers load them): pass names or paths")
    results = run_units(units, work, no_model, checkpoint=checkpoint, progress=progress, **distributed)
    return [pd.DataFrame(rows) for rows in results.values()]


def compare_models(
    models: Sequence,
    texts: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    checkpoint: Checkpoint | None = None,
    load_options: dict | None = None,
    progress: bool = True,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    **options,
) -> pd.DataFrame:
    """The same Layer-by-Layer metrics on several models, against relative depth.

    Args:
        models: loaded :class:`~layerscope.models.model.Model` objects and/or names or paths for
            :func:`layerscope.load` (loaded one at a time, with ``load_options``, and released
            before the next).
        texts, metrics, options: as in :func:`representation_metrics` (same texts, same
            augmentations and seeds for every model).
        checkpoint: an :class:`layerscope.results.io.Checkpoint`; a model already in it is not run
            (nor loaded) again, and each finished model is added to it.
        workers, address, gpus_per_worker: run one model per Ray worker (see
            :func:`layerscope.distributed.run_units`); the workers load the named models themselves.

    Returns:
        DataFrame ``model, depth, relative_depth, metric, value``: ``relative_depth = depth / L``
        runs from 0 (embeddings) to 1 (last block) whatever the model's depth, so models of
        different depths share an axis, as in the paper's figures.
    """
    models = _check_names(models)
    names = [canonical_metric(m) for m in metrics]  # fail on a bad name before loading anything
    tables = []
    if workers is not None or address is not None:
        from layerscope.distributed import Unit

        units = [
            Unit(_key(m), {"model": m, "load_options": load_options, "texts": list(texts), "metrics": names,
                           "options": options})
            for m in models
        ]  # fmt: skip
        distributed = {"workers": workers, "address": address, "gpus_per_worker": gpus_per_worker}
        tables = _distributed(models, units, metrics_unit, checkpoint, progress, distributed)
        models = []
    for entry in models:
        key = _key(entry)
        if checkpoint is not None and checkpoint.done(key):
            tables.append(pd.DataFrame(checkpoint.rows_of(key)))
            continue
        model = _load(entry, load_options)
        if progress:
            print(f"metrics on {model.name} ({model.n_layers} layers) ...", file=sys.stderr, flush=True)
        table = representation_metrics(model, texts, names, progress=progress, **options)  # rows name the model
        if checkpoint is not None:
            checkpoint.add(key, table.to_dict(orient="records"))
        tables.append(table)
        del model
    table = pd.concat(tables, ignore_index=True)[["model", "depth", "relative_depth", "metric", "value"]]
    return tidy(table, model=None, method="layer_by_layer")


def compare_probes(
    models: Sequence,
    tasks: dict[str, tuple[Sequence[str], Sequence]],
    *,
    checkpoint: Checkpoint | None = None,
    load_options: dict | None = None,
    progress: bool = True,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    **options,
) -> pd.DataFrame:
    """:func:`probe_layers` for every (model, task): ``model, task, depth, relative_depth, accuracy, accuracy_std, n``.

    Args:
        models: as in :func:`compare_models`.
        tasks: ``{name: (texts, labels)}``.
        checkpoint: units are ``[model, task]``; finished ones are skipped.
        options: passed to :func:`probe_layers` (pooling, folds, seed, batch_size, batch_budget, recipe,
            final_norm).
        workers, address, gpus_per_worker: run the (model, task) units on Ray workers.
    """
    models = _check_names(models)
    if not tasks:
        raise LayerscopeError("no task given")
    tables = []
    if workers is not None or address is not None:
        from layerscope.distributed import Unit

        units = [
            Unit((_key(m), task), {"model": m, "load_options": load_options, "texts": list(texts),
                                   "labels": list(labels), "task": task, "options": options})
            for m in models
            for task, (texts, labels) in tasks.items()
        ]  # fmt: skip
        distributed = {"workers": workers, "address": address, "gpus_per_worker": gpus_per_worker}
        tables = _distributed(models, units, probe_unit, checkpoint, progress, distributed)
        models = []
    for entry in models:
        key = _key(entry)
        todo = [t for t in tasks if checkpoint is None or not checkpoint.done([key, t])]
        model = _load(entry, load_options) if todo else None
        for task, (texts, labels) in tasks.items():
            if task not in todo:
                tables.append(pd.DataFrame(checkpoint.rows_of([key, task])))
                continue
            if progress:
                print(f"probe {task} on {model.name} ...", file=sys.stderr, flush=True)
            table = probe_layers(model, texts, labels, progress=progress, **options)
            table.insert(2, "task", task)  # after model, method
            if checkpoint is not None:
                checkpoint.add([key, task], table.to_dict(orient="records"))
            tables.append(table)
        del model
    table = pd.concat(tables, ignore_index=True)
    columns = ["model", "task", "depth", "relative_depth", "accuracy", "accuracy_std", "n", "chance"]
    columns += ["recipe", "pooling", "final_norm"]  # the knobs (absent from checkpoints written before them)
    # a checkpoint written before the chance column resumes without it
    return tidy(table[[c for c in columns if c in table]], model=None, method="layer_by_layer")


def probe_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_vs_last` per ``model`` and ``task`` (whichever of the two columns exist)."""
    keys = [k for k in ("model", "task") if k in table.columns]
    if not keys:
        return pd.DataFrame([best_vs_last(table)])
    rows = []
    for values, group in table.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        n_layers = int(group["depth"].max())
        summary = best_vs_last(group.reset_index(drop=True))
        rows.append(
            {**dict(zip(keys, values, strict=True)), **summary, "best_relative_depth": summary["best_depth"] / n_layers}
        )
    return pd.DataFrame(rows)
