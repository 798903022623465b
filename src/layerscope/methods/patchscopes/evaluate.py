"""The Patchscopes evaluations: next-token prediction, attribute extraction, entity description.

Each returns tidy tables; the CLI (``layerscope eval ...``) prints, plots and saves them.

- :func:`eval_next_token`: per source layer l, Precision@1 (the method's top token == the model's
  own final top token at that position) and Surprisal (``-ln p_final(method's top token)``, nats),
  for the token-identity Patchscope (l* = l), the logit lens and the tuned lens.
- :func:`eval_attributes`: relation templates with a placeholder, every (l, l*) pair; correct if
  the object (or an alias) appears in the generated continuation. Baseline: a logistic-regression
  probe per source layer on the subject's last-token state (3-fold CV).
- :func:`eval_describe`: entity descriptions per layer scored with ROUGE-L (``rouge-score``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from layerscope.datasets import corpus_split
from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec, resolve_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes.core import Source, capture_sources, decode_states, patchscope
from layerscope.methods.patchscopes.presets import DESCRIBE_PROMPT, IDENTITY_PROMPT
from layerscope.readout.lenses import LogitLens, TunedLens
from layerscope.results.contract import tidy
from layerscope.results.io import Checkpoint

METHODS = ("patchscope", "logit_lens", "tuned_lens")


def canonical_method(name: str) -> str:
    method = name.strip().lower().replace("-", "_")
    if method not in METHODS:
        raise LayerscopeError(f"unknown method {name!r}: use patchscope, logit-lens or tuned-lens")
    return method


# ---- next-token prediction ------------------------------------------------------------------


def sample_positions(model, texts: Sequence[str], positions: int | str = "all", seed: int = 0) -> list[Source]:
    """One :class:`Source` per text with the positions to evaluate: every token but the first
    (``"all"``) or ``positions`` of them drawn without replacement (seeded), in order."""
    if positions != "all" and (not isinstance(positions, int) or positions < 1):
        raise LayerscopeError(f"positions must be 'all' or a positive int, got {positions!r}")
    rng = random.Random(seed)
    sources = []
    for text in texts:
        n = len(model.tokenizer(text)["input_ids"])
        candidates = list(range(1, n))  # position 0 is an attention sink in most models
        if positions != "all" and len(candidates) > positions:
            candidates = sorted(rng.sample(candidates, positions))
        if candidates:
            sources.append(Source(text, candidates))
    if not sources:
        raise LayerscopeError("no text has a position to evaluate (each needs at least 2 tokens)")
    return sources


def eval_next_token(
    model,
    texts: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    positions: int | str = 6,
    *,
    layers: LayerSpec = "all",
    tuned_lens: TunedLens | None = None,
    seed: int = 0,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> pd.DataFrame:
    """Precision@1 and Surprisal per layer against the model's own final prediction.

    Args:
        texts: evaluation texts (default: the held-out quarter of the shipped corpus; the tuned
            lens is fitted on the other three quarters).
        positions: ``"all"`` or the number of positions per text (seeded sample).
        tuned_lens: a fitted lens (default: :meth:`TunedLens.cached`).
    Returns:
        rows ``layer``, ``method``, ``precision_at_1``, ``surprisal`` (mean, nats), ``n`` (positions).
        At the last layer every method is 1.0 / the final entropy-free surprisal by construction.
    """
    methods = [canonical_method(m) for m in methods]
    texts = corpus_split()[1] if texts is None else [t for t in texts if t.strip()]
    layer_list = resolve_layers(layers, model.n_layers)
    last = model.n_layers - 1
    sources = sample_positions(model, texts, positions, seed)
    capture_layers = sorted(set(layer_list) | {last})
    states, _ = capture_sources(model, sources, capture_layers, batch_budget=batch_budget)  # [S, N, D]
    with torch.no_grad():
        final_logp = model.adapter.unembed_states(states[capture_layers.index(last)]).float().log_softmax(-1)
    final_top = final_logp.argmax(-1)  # [N]

    def score(layer: int, method: str, predicted: torch.Tensor) -> dict:
        surprisal = -final_logp.gather(1, predicted.unsqueeze(1)).squeeze(1)
        return {
            "layer": layer,
            "method": method,
            "precision_at_1": float((predicted == final_top).double().mean()),
            "surprisal": float(surprisal.double().mean()),
            "n": int(predicted.numel()),
        }

    rows = []
    lenses = {"logit_lens": LogitLens()}
    if "tuned_lens" in methods:
        lenses["tuned_lens"] = tuned_lens or TunedLens.cached(model, batch_budget=batch_budget, progress=progress)
    for method in methods:
        if method == "patchscope":
            table = decode_states(
                model,
                states[[capture_layers.index(l) for l in layer_list]],
                layer_list,
                IDENTITY_PROMPT,
                "same",
                max_new_tokens=0,
                batch_budget=batch_budget,
                progress=progress,
            )
            for layer, group in table.groupby("source_layer"):
                predicted = torch.tensor(group.sort_values("item")["top_token_id"].to_numpy())
                rows.append(score(int(layer), method, predicted))
        else:
            lens = lenses[method]
            for layer in layer_list:
                logits = lens.logits(model, states[capture_layers.index(layer)], layer)
                rows.append(score(layer, method, logits.argmax(-1)))
    table = pd.DataFrame(rows).sort_values(["method", "layer"], kind="stable").reset_index(drop=True)
    return tidy(table, model=model, method="patchscopes")


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


def _sample(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    if limit is None or limit >= len(rows):
        return rows
    return random.Random(seed).sample(rows, limit)


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
        for l in layers:
            rows.append({"layer": l, "probe_accuracy": 0.0, "n": len(items), "learnable": int(keep.sum())})
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
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
    on_relation: Callable[[str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Attribute extraction over (l, l*) pairs on the shipped relations, with a probe baseline.

    Args:
        relations: relation names (default: all shipped).
        limit: subjects per relation for the Patchscope (a seeded sample; None = all). The probe
            always uses every subject of the relation (3-fold CV needs them).
        source_layers, target_layers: layer specs (``"all"`` for the paper's full sweep; the
            default stride keeps a CPU run to minutes).
        resume: a JSON-lines checkpoint file: finished relations are not recomputed.
    Returns:
        ``{"items": one row per (relation, subject, l, l*) with text and correct,
        "pairs": accuracy per (relation, l, l*), "probe": probe accuracy per (relation, layer),
        "summary": per relation, the best Patchscope pair vs the best probe layer}``.
    """
    from layerscope.datasets import load_relations, relation_names

    names = list(relations) if relations else relation_names()
    src_layers = resolve_layers(source_layers, model.n_layers)
    config = {
        "model": model.name,
        "limit": limit,
        "source_layers": src_layers,
        "target_layers": str(target_layers),
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "folds": folds,
        "probe": probe,
    }
    checkpoint = Checkpoint(resume, config)
    for name in names:
        if checkpoint.done(name):
            continue
        if on_relation is not None:
            on_relation(name)
        try:
            rows = load_relations(name)
        except ValueError as error:
            raise LayerscopeError(str(error)) from None
        chosen = _sample(rows, limit, seed)
        table = patchscope(
            model,
            [Source(row["source"], row["subject"]) for row in chosen],
            target=rows[0]["template"],
            source_layers=src_layers,
            target_layers=target_layers,
            max_new_tokens=max_new_tokens,
            batch_budget=batch_budget,
            progress=progress,
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
        if probe:
            probe_table = attribute_probe(model, rows, src_layers, folds, seed, batch_budget)
            for rec in probe_table.to_dict("records"):
                out.append({"kind": "probe", "relation": name, **rec})
        checkpoint.add(name, out)
    all_rows = [r for r in checkpoint.rows() if r["relation"] in names]
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
    return {name: tidy(table, model=model, method="patchscopes") for name, table in tables.items()}


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
            "n": int(best["n"]),
        }
        if len(probe):
            p = probe[probe["relation"] == name]
            top = p.loc[p["probe_accuracy"].idxmax()]
            row.update(
                probe_best=float(top["probe_accuracy"]),
                probe_layer=int(top["layer"]),
                probe_n=int(top["n"]),
                probe_learnable=int(top["learnable"]),
            )
            row["winner"] = "patchscope" if row["patchscope_best"] > row["probe_best"] else "probe"
        rows.append(row)
    return pd.DataFrame(rows)


# ---- entity description -------------------------------------------------------------------------


_NEXT_ITEM = re.compile(r",\s*[^,:\n]{1,40}:")


def clean_description(text: str) -> str:
    """The generated description of the patched entity: after the ``:`` the prompt's format puts
    there, up to the next few-shot item (", Name:") or the end of the line."""
    text = text.lstrip(" :\n\t").split("\n", 1)[0]
    match = _NEXT_ITEM.search(text)
    if match:
        text = text[: match.start()]
    return text.strip(" ,.")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (``rouge-score``, Porter stemming)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise LayerscopeError(
            "the describe evaluation needs the ROUGE library: pip install rouge-score (or pip install layerscope)"
        ) from None
    scorer = _SCORERS.get("rougeL") or _SCORERS.setdefault("rougeL", rouge_scorer.RougeScorer(["rougeL"], True))
    return float(scorer.score(reference, prediction)["rougeL"].fmeasure)


_SCORERS: dict = {}


def eval_describe(
    model,
    entities: Sequence[dict] | None = None,
    *,
    limit: int | None = 20,
    layers: LayerSpec = "::3",
    max_new_tokens: int = 30,
    seed: int = 0,
    resume: str | None = None,
    entities_per_batch: int = 5,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Entity description per layer (S = the name, i = its last token, l* = l), scored by ROUGE-L.

    Returns ``{"items": entity, layer, text, description, reference, rouge_l;
    "layers": layer, rouge_l (mean), n}``.
    """
    from layerscope.datasets import load_dataset

    rows = list(entities) if entities is not None else load_dataset("entities")
    chosen = _sample(rows, limit, seed)
    layer_list = resolve_layers(layers, model.n_layers)
    config = {"model": model.name, "limit": limit, "layers": layer_list, "max_new_tokens": max_new_tokens}
    checkpoint = Checkpoint(resume, config)
    todo = [r for r in chosen if not checkpoint.done(r["entity"])]
    # a few entities per batch, so that an interrupted run keeps what it finished (--resume)
    for start in range(0, len(todo), entities_per_batch):
        part = todo[start : start + entities_per_batch]
        table = patchscope(
            model,
            [r["entity"] for r in part],
            "last",
            DESCRIBE_PROMPT,
            layer_list,
            "same",
            max_new_tokens=max_new_tokens,
            batch_budget=batch_budget,
            progress=progress,
        )
        for k, row in enumerate(part):
            out = []
            for rec in table[table["source"] == k].itertuples():
                description = clean_description(rec.text)
                out.append(
                    {
                        "entity": row["entity"],
                        "layer": rec.source_layer,
                        "text": rec.text,
                        "description": description,
                        "reference": row["description"],
                        "rouge_l": rouge_l(description, row["description"]),
                    }
                )
            checkpoint.add(row["entity"], out)
    names = {r["entity"] for r in chosen}
    items = pd.DataFrame([r for r in checkpoint.rows() if r["entity"] in names])
    per_layer = items.groupby("layer")["rouge_l"].agg(rouge_l="mean", n="size").reset_index()
    tables = {"items": items, "layers": per_layer}
    return {name: tidy(table, model=model, method="patchscopes") for name, table in tables.items()}
