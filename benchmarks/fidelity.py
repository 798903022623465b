"""``--recipe authors`` against the authors' formulas on the default model: the max difference per check.

Layer by Layer: :func:`representation_metrics` with ``recipe="authors"`` vs the authors' formulas in
NumPy (``tests/methods/layer_by_layer/test_layer_by_layer_recipes.py``) on HF's own ``hidden_states`` of each
prompt run alone (the last after the final norm), at every depth; beside it the paper recipe's
distance from the same formulas (what the recipe changes).  Attend first: ``sweep_task`` with
``recipe="authors"`` vs the authors' freeze (input of block k-1) and all-position skip written as
raw hooks (``tests/methods/attend/test_attend_recipes.py``), and its random and shuffle (the authors'
seeding) vs their ``DistruptClass`` draws on torch's global generator
(``tests/methods/attend/test_attend_seeding.py``), answer probability at every k; beside them the
``layerscope`` seeding's distance from the same draws.

    python benchmarks/fidelity.py [--texts 24] [--items 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import layerscope as ls
import layerscope.methods.attend as attend
from layerscope.augment import augment_views
from layerscope.datasets import load_corpus
from layerscope.methods.layer_by_layer import representation_metrics
from tests.helpers import hf_logits, with_hooks
from tests.methods.attend.test_attend_recipes import all_position_skip_hooks, authors_freeze_hooks
from tests.methods.attend.test_attend_seeding import their_last_logits, their_random, their_shuffle
from tests.methods.layer_by_layer.test_layer_by_layer_recipes import (
    clamped_entropy,
    hf_states,
    normalise_tokens,
    token_angle_curvature,
)


def authors_layer_by_layer(model, texts: list[str], ks=(1, 2, 5)) -> dict[str, np.ndarray]:
    states = hf_states(model, texts)
    depths = range(model.n_layers + 1)
    out = {
        "prompt_entropy": np.array(
            [np.mean([clamped_entropy(normalise_tokens(s[d])) for s in states]) for d in depths]
        ),
        "dataset_entropy": np.array(
            [clamped_entropy(np.stack([normalise_tokens(s[d]).mean(0) for s in states])) for d in depths]
        ),
    }
    for k in ks:
        name = "curvature" if k == 1 else f"curvature_k{k}"
        per_depth = [[token_angle_curvature(s[d], k) for s in states if len(s[d]) > k] for d in depths]
        out[name] = np.array([np.mean(values) for values in per_depth])
    views = []
    for view in augment_views(texts, 2, seed=0):
        per = hf_states(model, view)
        views.append(torch.tensor(np.stack([[normalise_tokens(s[d]).mean(0) for s in per] for d in depths])))
    out["infonce"] = ls.metrics.infonce(*views).numpy()
    raw = ls.metrics.dime(*views, seed=0).numpy()
    out["dime"] = raw / min(math.log(len(texts)), math.log(model.d_model))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=24)
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the random manipulation's seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = ls.load()
    texts = [t for t in load_corpus() if len(t.split()) >= 6][: args.texts]
    metrics = ["prompt_entropy", "dataset_entropy", "curvature", "infonce", "dime"]
    reference = authors_layer_by_layer(model, texts)
    for recipe in ("authors", "paper"):
        table = representation_metrics(model, texts, metrics, recipe=recipe, curvature_k="1,2,5", progress=False)
        for name, group in table.groupby("metric"):
            got = group.sort_values("depth")["value"].to_numpy()
            ref = reference[name]
            diff = np.abs(got - ref)
            rel = diff / np.maximum(np.abs(ref), 1e-12)
            print(f"LbL {recipe:7s} {name:16s} max |diff| {diff.max():.3g}  max rel {rel.max():.3g}")

    items = attend.task_items("capitals", limit=args.items)
    worst = {"freeze": 0.0, "skip-attention": 0.0}
    for item in items:
        one = attend.sweep_task(model, [item], ["freeze", "skip-attention"], recipe="authors", match="first-token",
                                progress=False)  # fmt: skip
        token = attend.answer_token_ids(model.tokenizer, item.prompt, item.answers[0])[1][0]
        for row in one.itertuples():
            written = authors_freeze_hooks if row.manipulation == "freeze" else all_position_skip_hooks
            hooks = written(model, row.layer)
            logits = with_hooks(model, hooks, lambda p=item.prompt: hf_logits(model, p))[0, -1]
            expected = float(logits.float().softmax(-1)[token])
            worst[row.manipulation] = max(worst[row.manipulation], abs(row.answer_prob - expected))
    for name, value in worst.items():
        print(f"Attend authors {name:16s} max |answer_prob diff| over k and items {value:.3g}")
    for seeding in ("authors", "layerscope"):
        worst = {"random": 0.0, "shuffle": 0.0}
        for item in items:
            one = attend.sweep_task(model, [item], ["random", "shuffle"], recipe="authors", seeding=seeding,
                                    seed=args.seed, match="first-token", progress=False)  # fmt: skip
            token = attend.answer_token_ids(model.tokenizer, item.prompt, item.answers[0])[1][0]
            for row in one.itertuples():
                hook = their_random if row.manipulation == "random" else their_shuffle(row.layer)
                logits = their_last_logits(model, item.prompt, hook, row.layer, args.seed)
                expected = float(logits.float().softmax(-1)[token])
                worst[row.manipulation] = max(worst[row.manipulation], abs(row.answer_prob - expected))
        for name, value in worst.items():
            print(f"Attend seeding {seeding:10s} {name:8s} max |answer_prob diff| over k and items {value:.3g}")
    print(f"({len(texts)} texts, {len(items)} capitals items, every depth / every k)")


if __name__ == "__main__":
    main()
