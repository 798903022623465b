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
) -> pd.DataFrame:
    """P_TP, P_SV and P_RR per (layer, iteration), for each loop count.

    Args:
        task: from :func:`load_oracle_task`.
        block: the looped block ``[a, b)`` (default: the middle third).
        probe_layers: layers probed (default all; inside the block at every iteration).
        folds, seed: stratified k-fold CV of :func:`layerscope.readout.probes.probe_accuracy`.
        checkpoint: an :class:`layerscope.results.io.Checkpoint`; finished loop counts are skipped.
    Returns:
        Tidy rows ``task, loops, metric, layer, iteration, step, value, std, n``; ``metric`` is
        ``P_TP``, ``P_SV``, ``yes_rate`` (share of Yes verdicts), ``p_yes`` (mean normalised P(Yes))
        or ``P_RR`` (one row per probed (layer, iteration); ``step`` = index in execution order).
    """
    from threadpoolctl import threadpool_limits

    from layerscope.readout.probes import probe_accuracy

    block = parse_block(block, model.n_layers)
    loops = parse_loops(loops)
    labels = task.labels
    folds = _probe_folds(labels, folds)
    pending = [n for n in loops if checkpoint is None or not checkpoint.done(n)]
    collected = {}
    if pending:
        collected = loop_states(
            model,
            task.verify_prompts,
            block,
            pending,
            layers=probe_layers,
            score=yes_no_scorer(model.tokenizer),
            batch_budget=batch_budget,
            progress=progress,
            desc=f"{task.name}: verify",
        )
    base = {"task": task.name, "n": len(task.items)}
    for n in pending:
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
        if checkpoint is not None:
            checkpoint.add(n, rows)
        else:
            collected[n] = rows
    if checkpoint is not None:
        rows = [r for r in checkpoint.rows() if r["loops"] in loops]
    else:
        rows = [r for n in loops for r in collected[n]]
    return tidy(_tidy(pd.DataFrame(rows), VERIFY_COLUMNS, ["layer", "iteration", "step"]), model=model, method="loops")


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
