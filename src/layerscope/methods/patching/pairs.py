"""Dataset-level activation patching: one grid per prompt pair, and their mean with a confidence interval.

One pair's grid says where *this* prompt's answer lives; a claim about a model needs many pairs.
Each pair is a unit (resumable, distributable with :func:`layerscope.distributed.run_units`); its
cells are normalised by its own baselines, ``(value - corrupt) / (clean - corrupt)`` (0 = the
corrupt run, 1 = the clean run fully restored), so pairs of different logit scales average
meaningfully. Pairs differ in length, so the mean grid aligns positions from the end
(``position_from_end``: -1 is the last token, where the metric is read).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from layerscope.distributed import Unit, run_units
from layerscope.engine.interventions import LayerSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.api import activation_patching
from layerscope.results.contract import tidy

PAIR_KEYS = ("clean", "corrupt", "answer", "wrong")
#: baselines closer than this cannot normalise a pair (the two runs agree: nothing to restore)
MIN_GAP = 1e-3


def load_pairs(path: str | Path | None = None) -> list[dict]:
    """Pairs from a JSON-lines file (one ``{"clean", "corrupt", "answer", "wrong"}`` object a line;
    None = the shipped set, ``layerscope/data/patching_pairs.jsonl``)."""
    if path is None:
        from layerscope.datasets import load_dataset

        return load_dataset("patching_pairs")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LayerscopeError(f"cannot read the pairs file {path}: {err}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
        except json.JSONDecodeError:
            raise LayerscopeError(f"{path}:{number} is not a JSON object") from None
        missing = [k for k in PAIR_KEYS if not isinstance(pair, dict) or not isinstance(pair.get(k), str)]
        if missing:
            needs = ", ".join(PAIR_KEYS)
            raise LayerscopeError(f"{path}:{number} lacks {', '.join(missing)} (each line needs {needs})")
        pairs.append(pair)
    if not pairs:
        raise LayerscopeError(f"{path} holds no pairs")
    return pairs


def usable(model, pairs: Sequence[dict]) -> tuple[list[int], list[str]]:
    """Indices of the pairs this model's tokenizer can patch position by position, and why not the others."""
    from layerscope.readout.tokens import single_token

    keep, why = [], []
    for i, pair in enumerate(pairs):
        try:
            single_token(model.tokenizer, pair["answer"], "answer")
            single_token(model.tokenizer, pair["wrong"], "wrong")
        except LayerscopeError as err:
            why.append(f"pair {i}: {err}")
            continue
        lengths = [model.tokenize(pair[k]).length for k in ("clean", "corrupt")]
        if lengths[0] != lengths[1]:
            why.append(f"pair {i}: clean and corrupt have {lengths[0]} and {lengths[1]} tokens")
            continue
        keep.append(i)
    return keep, why


def pair_unit(model, unit: Unit) -> list[dict]:
    """One pair's grid as plain rows (a module-level function: Ray workers import it by name)."""
    options = unit.payload["options"]
    pair = unit.payload["pair"]
    table = activation_patching(model, *(pair[k] for k in PAIR_KEYS), progress=False, **options)
    seq_len = int(table["position"].max()) + 1  # every position of the prompt is in the grid
    gap = float(table["clean_value"].iloc[0] - table["corrupt_value"].iloc[0])
    rows = []
    for row in table.to_dict(orient="records"):
        normalized = (row["value"] - row["corrupt_value"]) / gap if abs(gap) > MIN_GAP else math.nan
        rows.append({"pair": unit.key, "relation": pair.get("relation", ""), **row,
                     "position_from_end": row["position"] - seq_len, "normalized": normalized})  # fmt: skip
    return rows


def pair_sweep(
    model,
    pairs: Sequence[dict],
    *,
    site: str = "resid_post",
    layers: LayerSpec = "all",
    batch_budget: str | int | None = None,
    checkpoint=None,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    model_spec: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Patch every pair's grid, then average the normalised grids.

    Args:
        pairs: dicts with ``clean``, ``corrupt``, ``answer``, ``wrong`` (see :func:`load_pairs`).
        checkpoint: finished pairs are not run again (units keyed by the pair's index).
        workers, address, gpus_per_worker: run the pairs on Ray (see :func:`run_units`); the
            workers load ``model_spec`` (``ls.load`` keywords, e.g. ``{"model": "smollm2-135m"}``),
            by default what ``model`` was loaded from (``model.spec``).
    Returns:
        Per-pair rows (``aggregate = "pair"``: the cell's ``value``, ``normalized``, the pair's
        baselines) and the mean grid (``aggregate = "mean"``: ``normalized`` = the mean over the
        pairs with that (layer, position_from_end), ``ci_low`` / ``ci_high`` its 95% interval
        (mean +- 1.96 standard errors), ``n`` the pairs; per ``relation`` and over all pairs,
        ``relation = "all"``), in one tidy table.
    """
    keep, skipped = usable(model, pairs)
    if not keep:
        raise LayerscopeError("no pair can be patched with this model's tokenizer: " + "; ".join(skipped[:3]))
    options = {"site": site, "layers": layers, "batch_budget": batch_budget}
    units = [Unit(i, {"pair": pairs[i], "options": options}) for i in keep]
    distributed = workers is not None or address is not None
    results = run_units(
        units, pair_unit, model_spec if distributed and model_spec is not None else model, workers=workers,
        address=address, gpus_per_worker=gpus_per_worker, checkpoint=checkpoint, progress=progress, desc="pairs",
    )  # fmt: skip
    cells = pd.DataFrame([row for rows in results.values() for row in rows])
    cells.insert(0, "aggregate", "pair")
    mean = _mean_grid(cells)
    table = pd.concat([cells, mean], ignore_index=True)
    return tidy(table.drop(columns=["model", "method"], errors="ignore"), model=model, method="patching",
                pairs_skipped=len(skipped))  # fmt: skip


def _mean_grid(cells: pd.DataFrame) -> pd.DataFrame:
    """Per relation (its prompts share a template, so a position from the end has one role) and over
    all pairs (``relation = "all"``)."""
    everything = cells.assign(relation="all")
    rows = []
    both = pd.concat([cells, everything]) if cells["relation"].nunique() > 1 else cells
    for (relation, layer, offset), group in both.groupby(["relation", "layer", "position_from_end"], sort=True):
        values = group["normalized"].dropna()
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        half = 1.96 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
        rows.append({"aggregate": "mean", "relation": relation, "layer": layer, "position_from_end": offset,
                     "normalized": mean,
                     "ci_low": mean - half, "ci_high": mean + half, "n": n})  # fmt: skip
    return pd.DataFrame(rows)
