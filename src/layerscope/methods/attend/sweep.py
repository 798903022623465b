"""The sweep over k: accuracy and answer probability per (k, manipulation), items grouped by length."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from layerscope.distributed import Unit, run_units
from layerscope.engine.chunking import DEFAULT_BUDGET, row_bytes
from layerscope.engine.grouping import length_groups
from layerscope.engine.interventions import resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.manipulations import manipulation, start_layer
from layerscope.methods.attend.recipes import knobs
from layerscope.methods.attend.scoring import Scores, answer_token_ids, evaluate
from layerscope.methods.attend.tasks import MANIPULATIONS, Item, canonical_manipulation
from layerscope.results.contract import tidy

# ---- the sweep over k --------------------------------------------------------------------------


def _groups(model, lengths: list[int], rows_of: list[int], n_starts: int, budget, max_rows: int) -> list[list[int]]:
    """Item indices in groups of similar length (little padding) whose clean run fits the budget.

    A group's clean run keeps ``resid_pre`` at every start layer for all its rows, so its size is
    bounded by ``budget`` as well as by ``max_rows``.
    """
    element = model.dtype.itemsize

    def row_cost(length: int) -> int:
        return row_bytes(model, length) + n_starts * length * model.d_model * element

    return length_groups(lengths, row_cost, budget, max_rows=max_rows, weights=rows_of, padded=False)


def sweep_task(
    model,
    items: Sequence[Item],
    manipulations: Sequence[str] = ("random",),
    layers="all",
    *,
    positions: PositionSpec = "previous",
    seed: int = 0,
    every_layer: bool = False,
    match: str = "greedy",
    batch_budget: str | int | None = DEFAULT_BUDGET,
    checkpoint=None,
    progress: bool = True,
    task: str = "custom",
    max_group_rows: int = 256,
    recipe: str = "paper",
    freeze_index: str | None = None,
    skip_positions: PositionSpec | None = None,
    seeding: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> pd.DataFrame:
    """Accuracy and mean answer probability per (k, manipulation), manipulating from k on.

    Items are scored in groups of similar prompt length (at most ``max_group_rows`` prompts, and a
    clean run that fits ``batch_budget``); each group is one :func:`evaluate` sweep. With
    ``checkpoint`` (an :class:`layerscope.results.io.Checkpoint`) finished groups are skipped on a rerun;
    with ``workers`` / ``address`` the groups are Ray work units (:func:`layerscope.distributed.run_units`).

    ``recipe="authors"`` follows the authors' code (:mod:`layerscope.methods.attend.recipes`): their
    freeze index (their k = our freeze at k - 1, so no freeze row at k = 0) and skip-attention at
    every position, and their random/shuffle draws (``seeding="authors"``, ``engine/seeding.py``);
    ``freeze_index``, ``skip_positions`` and ``seeding`` set each on its own (None = the recipe's; the
    paper's skip positions are ``positions``).

    Returns:
        One row per (layer, manipulation): ``task, layer, manipulation, accuracy, answer_prob, n,
        clean_accuracy, clean_answer_prob`` (the clean numbers repeat on every row), and the
        ``recipe``, ``freeze_index``, ``skip_positions`` and ``seeding`` used.
    """
    names = [canonical_manipulation(m) for m in manipulations]
    if not names:
        raise LayerscopeError("no manipulation given: use one or more of " + ", ".join(MANIPULATIONS))
    if len(set(names)) != len(names):
        raise LayerscopeError(f"manipulation listed twice: {', '.join(manipulations)}")
    used = knobs(recipe, freeze_index=freeze_index, skip_positions=skip_positions, seeding=seeding)
    skip_at = positions if used["recipe"] == "paper" and skip_positions is None else used["skip_positions"]
    ks = resolve_layers(layers, model.n_layers, sorted_unique=True)
    grid: dict[int, list] = {}
    cells: dict[tuple[int, int], tuple[str, int]] = {}  # (start layer, variant) -> (manipulation, k)
    for k in ks:
        for m in names:
            start = start_layer(m, k, used["freeze_index"])
            if start < 0:
                continue  # the authors' freeze has no k = 0
            variant = manipulation(
                m,
                k,
                positions=positions,
                seed=seed,
                every_layer=every_layer,
                freeze_index=used["freeze_index"],
                skip_positions=skip_at,
                seeding=used["seeding"],
            )
            cells[(start, len(grid.setdefault(start, [])))] = (m, k)
            grid[start].append(variant)
    if not items:
        raise LayerscopeError("no items to score")
    encoded = [_item_rows(model, item, match) for item in items]
    lengths = [n for n, _ in encoded]
    rows_of = [r for _, r in encoded]
    groups = _groups(model, lengths, rows_of, sum(k > 0 for k in grid), batch_budget, max_group_rows)
    distributed = workers is not None or address is not None
    units = [
        Unit((group[0], len(group)), {
            "items": [items[i] for i in group], "grid": grid, "cells": cells, "match": match,
            "batch_budget": batch_budget, "progress": progress and not distributed,
            "desc": f"{task} {g + 1}/{len(groups)}" if len(groups) > 1 else task,
        })
        for g, group in enumerate(groups)
    ]  # fmt: skip
    results = run_units(
        units, group_unit, model, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
        checkpoint=checkpoint, progress=progress and (distributed or len(units) > 1), desc=f"{task} groups",
    )  # fmt: skip
    totals: dict[tuple, list[float]] = {}
    for u in (row for rows in results.values() for row in rows):
        acc = totals.setdefault((u["manipulation"], u["layer"]), [0.0, 0.0, 0])
        acc[0] += u["correct"]
        acc[1] += u["prob_sum"]
        acc[2] += u["n"]
    clean_correct, clean_prob, n = totals[("clean", -1)]
    out = [
        {
            "task": task,
            "layer": k,
            "manipulation": m,
            "accuracy": totals[(m, k)][0] / totals[(m, k)][2],
            "answer_prob": totals[(m, k)][1] / totals[(m, k)][2],
            "n": int(totals[(m, k)][2]),
            "clean_accuracy": clean_correct / n,
            "clean_answer_prob": clean_prob / n,
        }
        for m in names
        for k in ks
        if (m, k) in totals
    ]
    recorded = {"recipe": used["recipe"], "freeze_index": used["freeze_index"], "skip_positions": str(skip_at),
                "seeding": used["seeding"]}  # fmt: skip
    return tidy(pd.DataFrame(out), model=model, method="attend", **recorded)


def group_unit(model, unit) -> list[dict]:
    """One length group's clean run and every manipulated variant, as count rows (a work unit:
    locally or on a Ray worker)."""
    p = unit.payload
    clean, scored = evaluate(
        model, p["items"], p["grid"], match=p["match"], batch_budget=p["batch_budget"], progress=p["progress"],
        desc=p["desc"],
    )  # fmt: skip
    key = list(unit.key)
    return [_unit(key, "clean", -1, clean)] + [_unit(key, *p["cells"][cell], s) for cell, s in scored.items()]


def _item_rows(model, item: Item, match: str) -> tuple[int, int]:
    """``(longest row, number of rows)`` of an item (an upper bound: shared prefixes counted per answer)."""
    encoded = [answer_token_ids(model.tokenizer, item.prompt, a) for a in item.answers]
    if match == "first-token":
        return len(encoded[0][0]), 1
    return max(len(p) + len(a) for p, a in encoded), sum(len(a) + 1 for _, a in encoded)


def _unit(group: list[int], name: str, layer: int, scores: Scores) -> dict:
    return {
        "group": group,
        "manipulation": name,
        "layer": layer,
        "correct": int(scores.correct.sum()),
        "prob_sum": float(scores.answer_prob.sum()),
        "n": len(scores.correct),
    }


def stable_from(table: pd.DataFrame, tolerance: float = 0.1) -> dict[str, int | None]:
    """Per manipulation, the first swept layer from which accuracy stays >= (1 - tolerance) x clean accuracy.

    None when even the last swept layer is below that (or no layer qualifies).
    """
    out: dict[str, int | None] = {}
    for name, group in table.groupby("manipulation", sort=False):
        group = group.sort_values("layer")
        threshold = (1 - tolerance) * float(group["clean_accuracy"].iloc[0])
        ok = (group["accuracy"] >= threshold - 1e-12).tolist()
        layer = None
        for i in range(len(ok) - 1, -1, -1):
            if not ok[i]:
                break
            layer = int(group["layer"].iloc[i])
        out[str(name)] = layer
    return out
