"""State-space and hybrid models are first-class: Layer-by-Layer metrics and probes on them.

Layer by Layer compares transformers with state-space models; here its depth states, metrics and
probes run on Mamba-, Jamba- (hybrid) and RWKV-shaped (no attention mask) tiny models and are
checked against the plain model's own block inputs and outputs, one text at a time (no padding).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import layerscope as ls
from layerscope.methods.layer_by_layer import depth_states, probe_layers, representation_metrics
from layerscope.metrics import curvature, matrix_entropy, prompt_entropy
from layerscope.testing import tiny_tokenizer
from layerscope.testing.architectures import build

TEXTS = [
    "the capital of france is paris",
    "hello world",
    "one two three four five six",
    "the cat and the dog",
    "what is the capital of spain ?",
]
SSM = ["mamba", "jamba", "rwkv"]


@cache
def ssm(model_type: str):
    hf, _ = build(model_type)
    return ls.Model(hf, tiny_tokenizer(), name=f"tiny-{model_type}")


def hooked_states(model, text: str) -> torch.Tensor:
    """``[L + 1, T, D]``: every block's input, then the last block's output, from plain-model hooks."""
    seen: dict[int, torch.Tensor] = {}
    blocks = model.adapter.blocks

    def pre(layer):
        return lambda module, args, kwargs: seen.__setitem__(layer, (args[0] if args else kwargs["hidden_states"])[0])

    def post(module, args, output):
        seen[len(blocks)] = (output[0] if isinstance(output, tuple | list) else output)[0]

    handles = [b.register_forward_pre_hook(pre(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles.append(blocks[-1].register_forward_hook(post))
    try:
        with torch.no_grad():
            model.hf(input_ids=model.tokenizer(text, return_tensors="pt")["input_ids"])
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([seen[d] for d in range(len(blocks) + 1)])


@pytest.mark.parametrize("model_type", SSM)
def test_depth_states_and_metrics_match_block_hooks(model_type):
    model = ssm(model_type)
    states, mask = depth_states(model, TEXTS, batch_size=3, progress=False)
    per_text = [hooked_states(model, t) for t in TEXTS]
    for i, reference in enumerate(per_text):
        np.testing.assert_allclose(states[:, i, mask[i]].numpy(), reference.numpy(), atol=1e-5)
    table = representation_metrics(
        model, TEXTS, ["prompt-entropy", "curvature", "dataset-entropy"], batch_size=2, progress=False
    )
    got = {m: g.sort_values("depth")["value"].to_numpy() for m, g in table.groupby("metric")}
    expected_entropy = torch.cat(
        [prompt_entropy(s[:, None], normalization="max", reduction="none") for s in per_text], dim=1
    ).nanmean(1)
    expected_curvature = torch.cat([curvature(s[:, None], reduction="none") for s in per_text], dim=1).nanmean(1)
    pooled = torch.stack([s.mean(dim=1) for s in per_text], dim=1)
    np.testing.assert_allclose(got["prompt_entropy"], expected_entropy.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["curvature"], expected_curvature.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        got["dataset_entropy"], matrix_entropy(pooled, normalization="max").numpy(), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("model_type", SSM)
def test_probe_per_depth_matches_sklearn_on_hooked_states(model_type):
    model = ssm(model_type)
    texts = [f"{w} item number {i}" for i in range(6) for w in ("good", "bad")]
    labels = ["pos", "neg"] * 6
    table = probe_layers(model, texts, labels, folds=3, seed=0, batch_size=5, progress=False)
    pooled = torch.stack([hooked_states(model, t).mean(dim=1) for t in texts], dim=1).double().numpy()
    for depth in range(model.n_layers + 1):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        cv = StratifiedKFold(3, shuffle=True, random_state=0)
        scores = cross_val_score(clf, pooled[depth], np.array(labels), cv=cv, scoring="accuracy")
        assert table[table["depth"] == depth]["accuracy"].iloc[0] == pytest.approx(scores.mean(), abs=1e-9)


def test_a_recurrent_model_without_a_mask_runs_padded_prompts_by_length():
    """RWKV takes no attention mask: the self-check sends padded batches through length groups."""
    model = ssm("rwkv")
    assert model.caps.padding == "groups" and "left-padded row differs" in model.check_report()["padding"]
    batch = model.run(TEXTS[:2], logits="last").last_logits
    for row, text in enumerate(TEXTS[:2]):
        torch.testing.assert_close(batch[row], model.run(text, logits="last").last_logits[0], atol=1e-5, rtol=1e-5)
