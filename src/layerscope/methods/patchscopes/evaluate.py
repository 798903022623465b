"""The Patchscopes evaluations: next-token prediction here, attribute extraction (:mod:`.attributes`) and
entity description (:mod:`.describe`).

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
from collections.abc import Sequence

import pandas as pd
import torch

from layerscope.datasets import corpus_split
from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec, resolve_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.patchscopes.core import Source, capture_sources, decode_states
from layerscope.methods.patchscopes.presets import IDENTITY_PROMPT
from layerscope.names import canonical_name
from layerscope.readout.lenses import LogitLens, TunedLens
from layerscope.results.contract import tidy

METHODS = ("patchscope", "logit_lens", "tuned_lens")


def canonical_method(name: str) -> str:
    return canonical_name(name, METHODS, what="method", shown=["patchscope", "logit-lens", "tuned-lens"])


# ---- next-token prediction ------------------------------------------------------------------


def sample_positions(
    model, texts: Sequence[str], positions: int | str = "all", seed: int = 0, *, recipe: str = "paper"
) -> list[Source]:
    """One :class:`Source` per text with the positions to evaluate: every candidate (``"all"``) or
    ``positions`` of them drawn without replacement (seeded), in order.

    Candidates: ``recipe="paper"`` every token but the first (an attention sink in most models);
    ``recipe="authors"`` every token but the last, position 0 included (the authors' notebooks).
    """
    from layerscope.recipes import canonical_recipe

    recipe = canonical_recipe(recipe)
    if positions != "all" and (not isinstance(positions, int) or positions < 1):
        raise LayerscopeError(f"positions must be 'all' or a positive int, got {positions!r}")
    rng = random.Random(seed)
    sources = []
    for text in texts:
        n = len(model.tokenizer(text)["input_ids"])
        # position 0 is an attention sink in most models; the authors sample it but never the last token
        candidates = list(range(1, n)) if recipe == "paper" else list(range(0, n - 1))
        if positions != "all" and len(candidates) > positions:
            candidates = sorted(rng.sample(candidates, positions))
        if candidates:
            sources.append(Source(text, candidates))
    if not sources:
        raise LayerscopeError("no text has a position to evaluate (each needs at least 2 tokens)")
    return sources


def next_token_unit(model, unit) -> list[dict]:
    """Sums for a chunk of sources: per (layer, method), positions whose top token is the model's own
    final one, the surprisal summed, and the count (a work unit: locally or on a Ray worker)."""
    p = unit.payload
    layer_list, last, budget = p["layers"], model.n_layers - 1, p["batch_budget"]
    capture_layers = sorted(set(layer_list) | {last})
    states, _ = capture_sources(model, p["sources"], capture_layers, batch_budget=budget)  # [S, N, D]
    with torch.no_grad():
        final_logp = model.adapter.unembed_states(states[capture_layers.index(last)]).float().log_softmax(-1)
    final_top = final_logp.argmax(-1)  # [N]

    def score(layer: int, method: str, predicted: torch.Tensor) -> dict:  # predicted: [N] token ids
        surprisal = -final_logp.gather(1, predicted.unsqueeze(1)).squeeze(1)
        return {"layer": layer, "method": method, "correct": int((predicted == final_top).sum()),
                "surprisal_sum": float(surprisal.double().sum()), "n": int(predicted.numel())}  # fmt: skip

    rows = []
    for method in p["methods"]:
        if method == "patchscope":
            table = decode_states(
                model,
                states[[capture_layers.index(l) for l in layer_list]],
                layer_list,
                IDENTITY_PROMPT,
                "same",
                max_new_tokens=0,
                batch_budget=budget,
                progress=p["progress"],
            )
            for layer, group in table.groupby("source_layer"):
                predicted = torch.tensor(group.sort_values("item")["top_token_id"].to_numpy())
                rows.append(score(int(layer), method, predicted))
        else:
            lens = LogitLens() if method == "logit_lens" else p["tuned_lens"]
            for layer in layer_list:
                logits = lens.logits(model, states[capture_layers.index(layer)], layer)
                rows.append(score(layer, method, logits.argmax(-1)))
    return rows


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
    recipe: str = "paper",
    texts_per_unit: int = 16,
    resume: str | None = None,
    restart: bool = False,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
) -> pd.DataFrame:
    """Precision@1 and Surprisal per layer against the model's own final prediction.

    Args:
        texts: evaluation texts (default: the held-out quarter of the shipped corpus; the tuned
            lens is fitted on the other three quarters).
        positions: ``"all"`` or the number of positions per text (seeded sample).
        tuned_lens: a fitted lens (default: :meth:`TunedLens.cached`).
        recipe: the position sampling, ``"paper"`` or ``"authors"`` (:func:`sample_positions`).
        texts_per_unit: texts per work unit: a unit is what ``resume`` keeps when a run is
            interrupted, and what ``workers`` / ``address`` hand to one Ray worker
            (:func:`layerscope.distributed.run_units`; the tuned lens travels with each unit).
    Returns:
        rows ``layer``, ``method``, ``precision_at_1``, ``surprisal`` (mean, nats), ``n`` (positions),
        ``recipe``.
        At the last layer every method is 1.0 / the final entropy-free surprisal by construction.
    """
    from layerscope.distributed import Unit, run_units
    from layerscope.results.io import Checkpoint, texts_hash

    methods = [canonical_method(m) for m in methods]
    texts = corpus_split()[1] if texts is None else [t for t in texts if t.strip()]
    if texts_per_unit < 1:
        raise LayerscopeError(f"texts_per_unit must be at least 1, got {texts_per_unit}")
    layer_list = resolve_layers(layers, model.n_layers)
    sources = sample_positions(model, texts, positions, seed, recipe=recipe)
    if "tuned_lens" in methods and tuned_lens is None:
        tuned_lens = TunedLens.cached(model, batch_budget=batch_budget, progress=progress)
    distributed = workers is not None or address is not None
    options = {"layers": layer_list, "methods": methods, "batch_budget": batch_budget,
               "progress": progress and not distributed, "tuned_lens": tuned_lens}  # fmt: skip
    units = [
        Unit(("texts", i), {"sources": sources[i : i + texts_per_unit], **options})
        for i in range(0, len(sources), texts_per_unit)
    ]
    lens_id = None if tuned_lens is None else getattr(tuned_lens, "path", None) or "given"
    config = {"command": "eval next-token", "model": model.name, "texts": texts_hash(texts), "methods": methods,
              "positions": positions, "layers": layer_list, "seed": seed, "recipe": recipe,
              "texts_per_unit": texts_per_unit, "tuned_lens": str(lens_id)}  # fmt: skip
    checkpoint = Checkpoint(resume, config, restart=restart)
    results = run_units(
        units, next_token_unit, model, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
        checkpoint=checkpoint, progress=progress, desc="texts",
    )  # fmt: skip
    sums = pd.DataFrame([row for rows in results.values() for row in rows])
    table = sums.groupby(["method", "layer"], sort=False)[["correct", "surprisal_sum", "n"]].sum().reset_index()
    table = pd.DataFrame({"layer": table["layer"].astype(int), "method": table["method"],
                          "precision_at_1": table["correct"] / table["n"],
                          "surprisal": table["surprisal_sum"] / table["n"], "n": table["n"].astype(int)})  # fmt: skip
    table = table.sort_values(["method", "layer"], kind="stable").reset_index(drop=True)
    return tidy(table, model=model, method="patchscopes", recipe=recipe)


def _sample(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    if limit is None or limit >= len(rows):
        return rows
    return random.Random(seed).sample(rows, limit)
