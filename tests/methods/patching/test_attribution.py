"""Attribution patching and integrated gradients vs a hand-written autograd computation on the plain model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope.errors import LayerscopeError
from layerscope.methods.patching import activation_patching, attribution_patching, compare_with_exact
from tests.conftest import tiny

CLEAN = "the eiffel tower is located in the city of paris"
CORRUPT = "the colosseum tower is located in the city of rome"
ANSWER, WRONG = " paris", " rome"


def _ids(model, text):
    return model.tokenizer(text, return_tensors="pt")["input_ids"]


def _modules(model, site):
    return {"resid_post": model.adapter.blocks, "attn_out": model.adapter.attn, "mlp_out": model.adapter.mlp}[site]


def hand_attribution(model, site: str, embeddings=None) -> np.ndarray:
    """``[L, T]``: (h_clean - h_corrupt) . dm/dh at the corrupt run (or, with ``embeddings``, at the
    corrupt run whose input embeddings are replaced), from raw hooks on the plain HF model."""
    answer, wrong = (model.tokenizer.convert_tokens_to_ids(t.strip()) for t in (ANSWER, WRONG))
    modules = _modules(model, site)

    def states(text, keep_grad, embeddings=None):
        kept, handles = {}, []

        def post(layer):
            def hook(module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                if keep_grad:
                    h.retain_grad()
                kept[layer] = h

            return hook

        def pre(module, args, kwargs):
            if embeddings is None:
                return None
            if args:
                return (embeddings, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": embeddings}

        handles = [m.register_forward_hook(post(i)) for i, m in enumerate(modules)]
        handles.append(model.adapter.blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
        try:
            with torch.set_grad_enabled(keep_grad):
                logits = model.hf(input_ids=_ids(model, text)).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
        return kept, logits[answer] - logits[wrong]

    clean, _ = states(CLEAN, False)
    base, _ = states(CORRUPT, False)
    run, metric = states(CORRUPT, True, embeddings)
    metric.backward()
    model.hf.zero_grad(set_to_none=True)
    return np.stack([((clean[l] - base[l]) * run[l].grad)[0].sum(-1).numpy() for l in range(model.n_layers)])


def _grid(table, site):
    part = table[table["site"] == site]
    return part.pivot(index="layer", columns="position", values="attribution").sort_index().to_numpy()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_attribution_equals_hand_written_autograd_at_every_site(arch):
    model = tiny(arch)
    table = attribution_patching(model, CLEAN, CORRUPT, ANSWER, WRONG, sites=["resid_post", "attn_out", "mlp_out"])
    for site in ("resid_post", "attn_out", "mlp_out"):
        np.testing.assert_allclose(_grid(table, site), hand_attribution(model, site), rtol=1e-4, atol=1e-6)
    assert set(table["estimator"]) == {"attribution"}
    assert np.allclose(table["value"], table["corrupt_value"] + table["attribution"])


def test_integrated_gradients_average_the_gradient_along_the_embedding_path():
    model = tiny("llama")
    steps = 4
    table = attribution_patching(model, CLEAN, CORRUPT, ANSWER, WRONG, steps=steps)
    with torch.no_grad():
        e_clean = model.hf.get_input_embeddings()(_ids(model, CLEAN))
        e_corrupt = model.hf.get_input_embeddings()(_ids(model, CORRUPT))
    expected = np.mean(
        [
            hand_attribution(model, "resid_post", e_corrupt + (k + 0.5) / steps * (e_clean - e_corrupt))
            for k in range(steps)
        ],
        axis=0,
    )
    np.testing.assert_allclose(_grid(table, "resid_post"), expected, rtol=1e-4, atol=1e-6)
    assert set(table["estimator"]) == {"integrated_gradients"} and set(table["steps"]) == {steps}


def test_compare_with_exact_reports_the_exact_grid_and_its_correlation():
    model = tiny("llama")
    cells, agreement = compare_with_exact(model, CLEAN, CORRUPT, ANSWER, WRONG, layers=[0, 2, 3], progress=False)
    exact = activation_patching(model, CLEAN, CORRUPT, ANSWER, WRONG, layers=[0, 2, 3], progress=False)
    merged = cells.merge(exact, on=["layer", "position"], suffixes=("", "_x"))
    np.testing.assert_allclose(merged["exact"], merged["value_x"])
    row = agreement.iloc[0]
    assert row["pearson"] == pytest.approx(np.corrcoef(cells["value"], cells["exact"])[0, 1])
    assert row["max_abs_error"] == pytest.approx((cells["value"] - cells["exact"]).abs().max())
    assert {"model", "method"} <= set(agreement.columns)


@pytest.mark.parametrize("steps", [0, -2, 1.5, True])
def test_bad_steps_are_refused(steps):
    with pytest.raises(LayerscopeError, match="steps must be a positive integer"):
        attribution_patching(tiny("llama"), CLEAN, CORRUPT, ANSWER, WRONG, steps=steps)
