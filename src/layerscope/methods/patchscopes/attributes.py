"""Attribute extraction (the paper's section 4.2): the (l, l*) sweep over shipped relations against a probe."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec, resolve_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes.core import Source, capture_sources, patchscope
from layerscope.methods.patchscopes.evaluate import _sample
from layerscope.results.contract import tidy
from layerscope.results.io import Checkpoint

# ---- attribute extraction ---------------------------------------------------------------------


def mentions(text: str, answers: Sequence[str]) -> bool:
    """Whether ``text`` mentions any answer (case-insensitive): an answer of <= 3 characters as a
    whole word ("Fe" not in "feline"), a longer one starting at a word boundary, so that plurals
    and endings count ("mammals", "Euros") but word middles do not ("euro" in "neurology")."""
    lowered = text.lower()
    for answer in answers:
        a = answer.lower().strip()
        if not a:
            continue
        end = r"(?!\w)" if len(a) <= 3 else ""
        if re.search(rf"(?<!\w){re.escape(a)}{end}", lowered):
            return True
    return False


def attribute_probe(
    model,
    items: Sequence[dict],
    layers: Sequence[int],
    folds: int = 3,
    seed: int = 0,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> pd.DataFrame:
    """Logistic-regression probe per layer: the subject's last-token state -> the object (k-fold CV).

    A classifier can only answer objects it saw in training, so objects with fewer than ``folds``
    subjects cannot be learned: the probe is cross-validated (:func:`layerscope.readout.probes.probe_accuracy`) on
    the items whose object occurs at least ``folds`` times, and those accuracies are scaled to all
    items (the other items count as wrong). ``learnable`` says how many items that is.
    """
    from layerscope.readout.probes import probe_accuracy

    labels = np.asarray([row["object"] for row in items])
    values, counts = np.unique(labels, return_counts=True)
    frequent = set(values[counts >= folds])
    keep = np.asarray([label in frequent for label in labels])
    rows = []
    if keep.sum() == 0 or len(frequent) < 2:
        # no object seen often enough to learn (or one class only): the probe has no score, and a 0.0
        # here would read as a measured failure (and hand every comparison to the Patchscope)
        for l in layers:
            rows.append({"layer": l, "probe_accuracy": float("nan"), "n": len(items), "learnable": int(keep.sum())})
        return pd.DataFrame(rows)
    sources = [Source(row["source"], row["subject"]) for row in items]
    states, _ = capture_sources(model, sources, list(layers), batch_budget=batch_budget)  # [S, N, D]
    X = states.double().numpy()
    for k, l in enumerate(layers):
        accuracy, _ = probe_accuracy(X[k][keep], labels[keep], folds=folds, seed=seed)
        rows.append(
            {
                "layer": l,
                "probe_accuracy": accuracy * keep.sum() / len(items),
                "n": len(items),
                "learnable": int(keep.sum()),
            }
        )
    return pd.DataFrame(rows)


def relation_unit(model, unit) -> list[dict]:
    """One relation's Patchscope items and probe rows (a work unit: runs locally or on a Ray worker)."""
    from layerscope.datasets import load_relations

    p = unit.payload
    name = unit.key
    try:
        rows = load_relations(name)
    except ValueError as error:
        raise LayerscopeError(str(error)) from None
    chosen = _sample(rows, p["limit"], p["seed"])
    if p["recipe"] == "authors":
        chosen = known_items(model, chosen, p["max_new_tokens"])
        if not chosen:
            return []
    table = patchscope(
        model,
        [Source(row["source"], row["subject"]) for row in chosen],
        target=rows[0]["template"],
        source_layers=p["source_layers"],
        target_layers=p["target_layers"],
        max_new_tokens=p["max_new_tokens"],
        batch_budget=p["batch_budget"],
        progress=p["progress"],
    )
    out = []
    for rec in table.itertuples():
        row = chosen[rec.source]
        answers = [row["object"], *row.get("object_aliases", [])]
        out.append(
            {
                "kind": "item",
                "relation": name,
                "subject": row["subject"],
                "object": row["object"],
                "source_layer": rec.source_layer,
                "target_layer": rec.target_layer,
                "text": rec.text,
                "correct": mentions(rec.text, answers),
            }
        )
    if p["probe"]:
        probe_table = attribute_probe(model, rows, p["source_layers"], p["folds"], p["seed"], p["batch_budget"])
        for rec in probe_table.to_dict("records"):
            out.append({"kind": "probe", "relation": name, **rec})
    return out


def _announced(work: Callable, announce: Callable[[str], None]) -> Callable:
    """``work`` that first calls ``announce(unit key)`` (a status line per relation, in one process)."""

    def announced(model, unit):
        announce(unit.key)
        return work(model, unit)

    return announced


def eval_attributes(
    model,
    relations: Sequence[str] | None = None,
    *,
    limit: int | None = 5,
    source_layers: LayerSpec = "::6",
    target_layers: LayerSpec = "::6",
    max_new_tokens: int = 20,
    folds: int = 3,
    probe: bool = True,
    seed: int = 0,
    resume: str | None = None,
    restart: bool = False,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
    on_relation: Callable[[str], None] | None = None,
    recipe: str = "paper",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> dict[str, pd.DataFrame]:
    """Attribute extraction over (l, l*) pairs on the shipped relations, with a probe baseline.

    Args:
        relations: relation names (default: all shipped).
        limit: subjects per relation for the Patchscope (a seeded sample; None = all). The probe
            always uses every subject of the relation (3-fold CV needs them).
        source_layers, target_layers: layer specs (``"all"`` for the paper's full sweep; the
            default stride keeps a CPU run to minutes).
        resume: a JSON-lines checkpoint file: finished relations are not recomputed.
        restart: start ``resume`` over when it was written with another config (else an error).
        recipe: ``"paper"`` (every sampled subject, every layer) or ``"authors"`` (their notebook:
            only the subjects the model gets right unpatched, i.e. the template with ``x``
            replaced by the subject generates the object, and no source or target layer L - 1).
        workers, address, gpus_per_worker: one relation per Ray work unit (see
            :func:`layerscope.distributed.run_units`; the workers load ``model.spec``).
    Returns:
        ``{"items": one row per (relation, subject, l, l*) with text and correct,
        "pairs": accuracy per (relation, l, l*), "probe": probe accuracy per (relation, layer),
        "summary": per relation, the best Patchscope pair vs the best probe layer}``.
    """
    from layerscope.datasets import relation_names
    from layerscope.distributed import Unit, run_units
    from layerscope.recipes import canonical_recipe

    recipe = canonical_recipe(recipe)
    names = list(relations) if relations else relation_names()
    src_layers = resolve_layers(source_layers, model.n_layers)
    tgt_layers = target_layers
    if recipe == "authors":  # the authors' notebooks exclude the last layer
        src_layers = [l for l in src_layers if l < model.n_layers - 1]
        if not (isinstance(target_layers, str) and target_layers.strip() == "same"):
            tgt_layers = [l for l in resolve_layers(target_layers, model.n_layers) if l < model.n_layers - 1]
    config = {
        "model": model.name,
        "limit": limit,
        "source_layers": src_layers,
        "target_layers": str(target_layers),
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "folds": folds,
        "probe": probe,
        "recipe": recipe,
    }
    checkpoint = Checkpoint(resume, config, restart=restart)
    distributed = workers is not None or address is not None
    payload = {"limit": limit, "seed": seed, "recipe": recipe, "source_layers": src_layers,
               "target_layers": tgt_layers, "max_new_tokens": max_new_tokens, "batch_budget": batch_budget,
               "probe": probe, "folds": folds, "progress": progress and not distributed}  # fmt: skip
    work = relation_unit if on_relation is None or distributed else _announced(relation_unit, on_relation)
    results = run_units(
        [Unit(name, payload) for name in dict.fromkeys(names)], work, model, workers=workers, address=address,
        gpus_per_worker=gpus_per_worker, checkpoint=checkpoint, progress=progress, desc="relations",
    )  # fmt: skip
    all_rows = [row for rows in results.values() for row in rows]
    if not any(r["kind"] == "item" for r in all_rows):
        raise LayerscopeError("no item left to evaluate (the authors' recipe keeps only items the model gets right)")
    items = pd.DataFrame([r for r in all_rows if r["kind"] == "item"]).drop(columns="kind")
    pairs = (
        items.groupby(["relation", "source_layer", "target_layer"], sort=False)["correct"]
        .agg(accuracy="mean", n="size")
        .reset_index()
    )
    probe_rows = pd.DataFrame([r for r in all_rows if r["kind"] == "probe"])
    probe_table = probe_rows.drop(columns="kind") if len(probe_rows) else pd.DataFrame()
    summary = _summary(pairs, probe_table)
    tables = {"items": items, "pairs": pairs, "probe": probe_table, "summary": summary}
    return {name: tidy(table, model=model, method="patchscopes", recipe=recipe) for name, table in tables.items()}


def known_items(model, rows: Sequence[dict], max_new_tokens: int = 20) -> list[dict]:
    """The rows whose relation the model completes unpatched: the template with the placeholder ``x``
    replaced by the subject generates the object (or an alias) in ``max_new_tokens`` greedy tokens
    (the authors' item filter)."""
    if not rows:
        return []
    prompts = [re.sub(r"(?<!\w)x(?!\w)", row["subject"], row["template"]) for row in rows]
    texts = model.generate(prompts, max_new_tokens=max_new_tokens).texts
    return [
        row
        for row, text in zip(rows, texts, strict=True)
        if mentions(text, [row["object"], *row.get("object_aliases", [])])
    ]


def _summary(pairs: pd.DataFrame, probe: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, group in pairs.groupby("relation", sort=False):
        best = group.loc[group["accuracy"].idxmax()]
        by_source = group.groupby("source_layer")["accuracy"].max()
        row = {
            "relation": name,
            "patchscope_best": float(best["accuracy"]),
            "best_pair": f"({int(best['source_layer'])}, {int(best['target_layer'])})",
            "patchscope_mean_l": float(by_source.mean()),
            "patchscope_n": int(best["n"]),
        }
        if len(probe):
            p = probe[probe["relation"] == name]
            scored = p.dropna(subset=["probe_accuracy"])
            top = scored.loc[scored["probe_accuracy"].idxmax()] if len(scored) else p.iloc[0]
            row.update(
                probe_best=float(top["probe_accuracy"]),
                probe_layer=int(top["layer"]) if len(scored) else None,
                probe_n=int(top["n"]),
                probe_learnable=int(top["learnable"]),
            )
            row["winner"] = _winner(row["patchscope_best"], row["probe_best"] if len(scored) else None)
        rows.append(row)
    return pd.DataFrame(rows)


def _winner(patchscope: float, probe: float | None) -> str:
    """``"patchscope"``, ``"probe"``, ``"tie"``, or ``"none"`` where the probe cannot score (no object
    seen in enough training folds to learn it): a comparison with it would say nothing."""
    if probe is None:
        return "none"
    if patchscope == probe:
        return "tie"
    return "patchscope" if patchscope > probe else "probe"
