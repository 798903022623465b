"""Bigger than memory: the default model under a memory budget smaller than its weights runs with
parts offloaded to disk, and every engine path gives the numbers of the model held in memory."""

from __future__ import annotations

import pytest
import torch

import layerscope as ls

pytestmark = pytest.mark.integration
PROMPT = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"


@pytest.fixture(scope="module")
def offloaded(default_model, tmp_path_factory):
    weights = sum(p.numel() * p.element_size() for p in default_model.hf.parameters())
    budget = weights // 4  # a quarter of the weights fits in memory: the rest lives on disk
    model = ls.load(max_memory={"cpu": budget}, offload_folder=tmp_path_factory.mktemp("offload"), progress=False)
    assert "disk" in set(model.hf.hf_device_map.values())
    return model


def test_an_offloaded_model_gives_the_same_numbers(default_model, offloaded):
    steer = torch.randn(default_model.d_model, generator=torch.Generator().manual_seed(0))
    ivs = [ls.add("resid_post", 12, "all", steer, scale=4.0)]
    for kwargs in ({}, {"interventions": ivs}, {"capture": ("resid_post", [0, 29])}):
        a, b = offloaded.run(PROMPT, **kwargs), default_model.run(PROMPT, **kwargs)
        assert torch.equal(a.logits, b.logits)
        for key, states in b.cache.items():
            assert torch.equal(a.cache[key], states)
    gen_a = offloaded.generate(PROMPT, max_new_tokens=4)
    assert gen_a.texts == default_model.generate(PROMPT, max_new_tokens=4).texts


def test_an_offloaded_model_runs_a_patching_sweep(default_model, offloaded):
    from layerscope.methods.patching import activation_patching

    args = (PROMPT, CORRUPT, " Paris", " Rome")
    options = dict(layers="0:30:10", positions=[3, -1], progress=False)
    a = activation_patching(offloaded, *args, **options)
    b = activation_patching(default_model, *args, **options)
    assert (a["value"] - b["value"]).abs().max() <= 1e-4
