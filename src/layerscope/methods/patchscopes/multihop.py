"""Multi-hop (chain-of-thought) Patchscope: hop 1's answer state patched into hop 2's prompt.

A two-hop question ("The capital city of the country where the Eiffel Tower is located is")
needs a bridge entity (France) that the model must resolve internally. The paper's CoT
Patchscope (METHODS.md section 2) reads the bridge from hop 1 and writes it into hop 2:
source S = the hop-1 prompt ("The Eiffel Tower is located in the country of"), i = its last
token, state ``resid_post[l]``; target T = the hop-2 template ("The capital city of x is"),
i* = the placeholder ``x``, layer ``l*``; then greedy generation. An item is correct if the
final answer (or an alias) appears in the continuation (:func:`.attributes.mentions`).

Reported beside the patched accuracy: the end-to-end baseline (the two-hop question asked as
is), hop 1 alone (does the hop-1 prompt generate the bridge?) and hop 2 alone (the template with
the bridge written in). The headline is how often patching *fixes* a question the model gets
wrong end to end: at the best (l, l*) pair, and at any pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes.attributes import mentions
from layerscope.methods.patchscopes.core import Source, patchscope
from layerscope.results.contract import tidy

__all__ = ["eval_multihop", "fill_placeholder", "load_two_hop"]


def load_two_hop(limit: int | None = None) -> list[dict]:
    """The shipped two-hop facts (``data/two_hop.jsonl``), the first ``limit`` of them."""
    from layerscope.datasets import load_dataset

    rows = load_dataset("two_hop")
    return rows if limit is None else rows[:limit]


def fill_placeholder(template: str, value: str, placeholder: str = "x") -> str:
    """``"The capital city of x is"``, ``"France"`` -> ``"The capital city of France is"``."""
    return re.sub(rf"(?<!\w){re.escape(placeholder)}(?!\w)", value, template)


def _answers(row: dict) -> list[str]:
    return [row["answer"], *row.get("answer_aliases", [])]


def eval_multihop(
    model,
    facts: Sequence[dict] | None = None,
    *,
    source_layers: LayerSpec = "::6",
    target_layers: LayerSpec = "::6",
    max_new_tokens: int = 8,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """The multi-hop Patchscope over (l, l*) pairs on two-hop facts, beside the unpatched baselines.

    Args:
        facts: rows with ``question``, ``hop1``, ``hop1_answer``, ``hop2`` (a template with ``x``),
            ``answer`` and optional ``answer_aliases`` (default: the shipped ``two_hop`` set).
        source_layers, target_layers: l and l* (every combination; ``target_layers="same"``: l* = l).
        max_new_tokens: greedy tokens generated for every prompt (baselines and patched runs).

    Returns:
        ``{"items": one row per (fact, l, l*) with text and correct, "baseline": one row per fact
        (end_to_end, hop1, hop2 correct), "pairs": per (l, l*) accuracy and fixed (the share of the
        end-to-end-wrong facts it answers correctly), "summary": one row}``.
    """
    facts = load_two_hop() if facts is None else list(facts)
    if not facts:
        raise LayerscopeError("no two-hop facts given")
    for key in ("question", "hop1", "hop1_answer", "hop2", "answer"):
        missing = [i for i, row in enumerate(facts) if key not in row]
        if missing:
            raise LayerscopeError(f"two-hop fact {missing[0]} has no {key!r}")

    def generated(prompts: list[str]) -> list[str]:
        return model.generate(prompts, max_new_tokens=max_new_tokens).texts

    end_to_end = generated([row["question"] for row in facts])
    hop1 = generated([row["hop1"] for row in facts])
    hop2 = generated([fill_placeholder(row["hop2"], row["hop1_answer"]) for row in facts])
    baseline = pd.DataFrame(
        [
            {
                "fact": i,
                "relation": row.get("relation", ""),
                "question": row["question"],
                "answer": row["answer"],
                "end_to_end": mentions(e, _answers(row)),
                "hop1": mentions(h1, [row["hop1_answer"]]),
                "hop2": mentions(h2, _answers(row)),
                "end_to_end_text": e,
            }
            for i, (row, e, h1, h2) in enumerate(zip(facts, end_to_end, hop1, hop2, strict=True))
        ]
    )

    items = []
    by_template: dict[str, list[int]] = {}
    for i, row in enumerate(facts):
        by_template.setdefault(row["hop2"], []).append(i)
    for template, index in by_template.items():
        table = patchscope(
            model,
            [Source(facts[i]["hop1"], "last") for i in index],
            target=template,
            source_layers=source_layers,
            target_layers=target_layers,
            max_new_tokens=max_new_tokens,
            batch_budget=batch_budget,
            progress=progress,
        )
        for rec in table.itertuples():
            i = index[rec.source]
            items.append(
                {
                    "fact": i,
                    "source_layer": int(rec.source_layer),
                    "target_layer": int(rec.target_layer),
                    "text": rec.text,
                    "correct": mentions(rec.text, _answers(facts[i])),
                }
            )
    items = pd.DataFrame(items).sort_values(["fact", "source_layer", "target_layer"], ignore_index=True)
    wrong = set(baseline.loc[~baseline["end_to_end"], "fact"])
    items["end_to_end"] = items["fact"].map(baseline.set_index("fact")["end_to_end"])
    pairs = (
        items.groupby(["source_layer", "target_layer"])
        .agg(
            accuracy=("correct", "mean"),
            fixed=("correct", lambda c: c[items.loc[c.index, "fact"].isin(wrong)].sum()),
            n=("correct", "size"),
        )
        .reset_index()
    )
    pairs["fixed"] = pairs["fixed"] / len(wrong) if wrong else 0.0
    best = pairs.loc[pairs["fixed"].idxmax()] if wrong else pairs.loc[pairs["accuracy"].idxmax()]
    fixed_any = items[items["fact"].isin(wrong)].groupby("fact")["correct"].any()
    summary = pd.DataFrame(
        [
            {
                "n": len(facts),
                "end_to_end_accuracy": float(baseline["end_to_end"].mean()),
                "hop1_accuracy": float(baseline["hop1"].mean()),
                "hop2_accuracy": float(baseline["hop2"].mean()),
                "wrong_end_to_end": len(wrong),
                "best_pair": f"({int(best['source_layer'])}, {int(best['target_layer'])})",
                "best_pair_accuracy": float(best["accuracy"]),
                "fixed_at_best_pair": float(best["fixed"]),
                "fixed_at_any_pair": float(fixed_any.mean()) if wrong else 0.0,
            }
        ]
    )
    tables = {"items": items, "baseline": baseline, "pairs": pairs, "summary": summary}
    return {name: tidy(table, model=model, method="patchscopes") for name, table in tables.items()}
