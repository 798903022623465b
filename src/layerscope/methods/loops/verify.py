"""Self-verification vs probes per loop count: P_TP, P_SV and P_RR at every (layer, iteration)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from layerscope.errors import LayerscopeError
from layerscope.methods.loops.runner import loop_generate, loop_states
from layerscope.methods.loops.spec import Block, execution_order, parse_block, parse_loops
from layerscope.methods.loops.tasks import OracleTask
from layerscope.readout.tokens import yes_no_scorer
from layerscope.results.contract import tidy

# ---- P_TP / P_SV / P_RR --------------------------------------------------------------------------

VERIFY_COLUMNS = ["task", "loops", "metric", "layer", "iteration", "step", "value", "std", "n"]


def _probe_folds(labels: np.ndarray, folds: int) -> int:
    smallest = int(np.unique(labels, return_counts=True)[1].min()) if len(set(labels.tolist())) > 1 else 0
    if smallest < 2:
        raise LayerscopeError("the probe needs at least 2 items of each oracle label (correct and incorrect)")
    return min(folds, smallest)


def self_verification(
    model,
    task: OracleTask,
    block: Block | str | None = None,
    loops: Sequence[int] | str = (1, 2, 3, 4),
    *,
    probe_layers: Sequence[int] | None = None,
    folds: int = 5,
    seed: int = 0,
    batch_budget: str | int | None = None,
    progress: bool = True,
    checkpoint=None,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> pd.DataFrame:
    """P_TP, P_SV and P_RR per (layer, iteration), for each loop count.

    Args:
        task: from :func:`load_oracle_task`.
        block: the looped block ``[a, b)`` (default: the middle third).
        probe_layers: layers probed (default all; inside the block at every iteration).
        folds, seed: stratified k-fold CV of :func:`layerscope.readout.probes.probe_accuracy`.
        checkpoint: an :class:`layerscope.results.io.Checkpoint`; finished loop counts are skipped.
        workers, address, gpus_per_worker: one loop count per Ray work unit
            (:func:`layerscope.distributed.run_units`). In one process the loop counts share one pass
            below the block instead.
    Returns:
        Tidy rows ``task, loops, metric, layer, iteration, step, value, std, n``; ``metric`` is
        ``P_TP``, ``P_SV``, ``yes_rate`` (share of Yes verdicts), ``p_yes`` (mean normalised P(Yes))
        or ``P_RR`` (one row per probed (layer, iteration); ``step`` = index in execution order).
    """
    block = parse_block(block, model.n_layers)
    loops = parse_loops(loops)
    _probe_folds(task.labels, folds)  # a task the probe cannot score fails before any forward
    options = {"probe_layers": probe_layers, "folds": folds, "seed": seed, "batch_budget": batch_budget}
    if workers is not None or address is not None:
        from layerscope.distributed import Unit, run_units

        units = [Unit(n, {"task": task, "block": block, **options}) for n in loops]
        results = run_units(units, verify_unit, model, workers=workers, address=address,
                            gpus_per_worker=gpus_per_worker, checkpoint=checkpoint, progress=progress,
                            desc=f"{task.name}: loop counts")  # fmt: skip
        rows = [r for n in loops for r in results[n]]
    else:
        pending = [n for n in loops if checkpoint is None or not checkpoint.done(n)]
        collected = _verify_rows(model, task, block, pending, progress=progress, **options) if pending else {}
        for n, got in collected.items():
            if checkpoint is not None:
                checkpoint.add(n, got)
        rows = [r for n in loops for r in (collected[n] if n in collected else checkpoint.rows_of(n))]
    return tidy(_tidy(pd.DataFrame(rows), VERIFY_COLUMNS, ["layer", "iteration", "step"]), model=model, method="loops")


def verify_unit(model, unit) -> list[dict]:
    """One loop count's rows (a Ray work unit)."""
    p = dict(unit.payload)
    task, block = p.pop("task"), p.pop("block")
    return _verify_rows(model, task, block, [unit.key], progress=False, **p)[unit.key]


def _verify_rows(
    model, task: OracleTask, block: Block, loops: list[int], *, probe_layers, folds, seed, batch_budget, progress
) -> dict[int, list[dict]]:
    """``{n: rows}`` for the loop counts ``loops``, sharing one pass below the block."""
    from threadpoolctl import threadpool_limits

    from layerscope.readout.probes import probe_accuracy

    labels = task.labels
    folds = _probe_folds(labels, folds)
    collected = loop_states(
        model,
        task.verify_prompts,
        block,
        loops,
        layers=probe_layers,
        score=yes_no_scorer(model.tokenizer),
        batch_budget=batch_budget,
        progress=progress,
        desc=f"{task.name}: verify",
    )
    base = {"task": task.name, "n": len(task.items)}
    out = {}
    for n in loops:
        got = collected[n]
        p_yes = (got.scores[:, 0] / got.scores.sum(-1).clamp(min=1e-30)).numpy()
        verdict = got.scores[:, 0] > got.scores[:, 1]
        answers = loop_generate(
            model,
            task.task_prompts,
            block,
            n,
            max_new_tokens=task.max_new_tokens,
            batch_budget=batch_budget,
            progress=progress,
            desc=f"{task.name}: answer (loops {n})",
        )
        solved = np.array([task.check(item, text) for item, text in zip(task.items, answers, strict=True)])
        rows = [
            {**base, "loops": n, "metric": "P_TP", "value": float(solved.mean())},
            {**base, "loops": n, "metric": "P_SV", "value": float((verdict.numpy() == labels).mean())},
            {**base, "loops": n, "metric": "yes_rate", "value": float(verdict.float().mean())},
            {**base, "loops": n, "metric": "p_yes", "value": float(p_yes.mean())},
        ]
        for step, key in enumerate(execution_order(model.n_layers, block, n)):
            if key not in got.states:
                continue
            with threadpool_limits(1):  # small fits: BLAS threads only add overhead (6x slower on a busy CPU)
                mean, std = probe_accuracy(got.states[key].double().numpy(), labels, folds, seed)
            rows.append(
                {
                    **base,
                    "loops": n,
                    "metric": "P_RR",
                    "layer": key[0],
                    "iteration": key[1],
                    "step": step,
                    "value": mean,
                    "std": std,
                }
            )
        out[n] = rows
    return out


def _tidy(table: pd.DataFrame, columns: list[str], int_columns: list[str]) -> pd.DataFrame:
    for column in columns:
        if column not in table:
            table[column] = None
    table = table[columns].copy()
    for column in int_columns:
        table[column] = pd.array(table[column], dtype="Int64")
    return table


def verification_summary(table: pd.DataFrame, n_layers: int | None = None) -> pd.DataFrame:
    """One row per (task, loops): P_TP, P_SV, sup P_RR with where it is, and P_RR at the last step."""
    rows = []
    for (task, n), group in table.groupby(["task", "loops"], sort=True):
        value = dict(zip(group["metric"], group["value"], strict=False))
        probes = group[group["metric"] == "P_RR"]
        row = {"task": task, "loops": int(n), "P_TP": value.get("P_TP"), "P_SV": value.get("P_SV")}
        if len(probes):
            best = probes.loc[probes["value"].idxmax()]
            last = probes.loc[probes["step"].idxmax()]
            row.update(
                sup_P_RR=float(best["value"]),
                best_layer=int(best["layer"]),
                best_iteration=int(best["iteration"]),
                last_P_RR=float(last["value"]),
            )
        row.update(yes_rate=value.get("yes_rate"), p_yes=value.get("p_yes"))
        rows.append(row)
    return pd.DataFrame(rows)
