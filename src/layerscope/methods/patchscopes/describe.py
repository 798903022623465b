"""Entity description (the paper's section 4.3): descriptions from every layer scored by ROUGE-L."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec, resolve_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes.core import patchscope
from layerscope.methods.patchscopes.evaluate import _sample
from layerscope.methods.patchscopes.presets import DESCRIBE_PROMPT
from layerscope.results.contract import tidy
from layerscope.results.io import Checkpoint

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


def describe_unit(model, unit) -> list[dict]:
    """A few entities' descriptions at every layer, scored (a work unit: locally or on a Ray worker)."""
    p = unit.payload
    part = p["entities"]
    table = patchscope(
        model,
        [r["entity"] for r in part],
        "last",
        DESCRIBE_PROMPT,
        p["layers"],
        "same",
        max_new_tokens=p["max_new_tokens"],
        batch_budget=p["batch_budget"],
        progress=p["progress"],
    )
    out = []
    for k, row in enumerate(part):
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
    return out


def eval_describe(
    model,
    entities: Sequence[dict] | None = None,
    *,
    limit: int | None = 20,
    layers: LayerSpec = "::3",
    max_new_tokens: int = 30,
    seed: int = 0,
    resume: str | None = None,
    restart: bool = False,
    entities_per_batch: int = 5,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> dict[str, pd.DataFrame]:
    """Entity description per layer (S = the name, i = its last token, l* = l), scored by ROUGE-L.

    Entities go in work units of ``entities_per_batch`` (one batched Patchscope each), so that an
    interrupted run keeps what it finished (``resume``) and ``workers`` / ``address`` can spread the
    units over Ray workers (see :func:`layerscope.distributed.run_units`).

    Returns ``{"items": entity, layer, text, description, reference, rouge_l;
    "layers": layer, rouge_l (mean), n}``.
    """
    from layerscope.datasets import load_dataset
    from layerscope.distributed import Unit, run_units

    if entities_per_batch < 1:
        raise LayerscopeError(f"entities_per_batch must be at least 1, got {entities_per_batch}")
    rows = list(entities) if entities is not None else load_dataset("entities")
    chosen = _sample(rows, limit, seed)
    layer_list = resolve_layers(layers, model.n_layers)
    config = {"model": model.name, "limit": limit, "layers": layer_list, "max_new_tokens": max_new_tokens,
              "entities_per_batch": entities_per_batch}  # fmt: skip
    checkpoint = Checkpoint(resume, config, restart=restart)
    distributed = workers is not None or address is not None
    options = {"layers": layer_list, "max_new_tokens": max_new_tokens, "batch_budget": batch_budget,
               "progress": progress and not distributed}  # fmt: skip
    units = [
        Unit(tuple(r["entity"] for r in part), {"entities": part, **options})
        for part in (chosen[i : i + entities_per_batch] for i in range(0, len(chosen), entities_per_batch))
    ]
    results = run_units(
        units, describe_unit, model, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
        checkpoint=checkpoint, progress=progress, desc="entities",
    )  # fmt: skip
    items = pd.DataFrame([row for rows in results.values() for row in rows])
    per_layer = items.groupby("layer")["rouge_l"].agg(rouge_l="mean", n="size").reset_index()
    tables = {"items": items, "layers": per_layer}
    return {name: tidy(table, model=model, method="patchscopes") for name, table in tables.items()}
