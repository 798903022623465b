"""Gradients: ``run(grad=True)`` against a hand-written autograd computation on the plain model."""

from __future__ import annotations

import pytest
import torch

import layerscope as ls
from layerscope.errors import SiteError
from tests.conftest import tiny

PROMPT = "the capital of france is paris"


def _plain_grad_of_block_output(model, layer: int, token: int, value=None, position=-1):
    """d logit[token] at the last position / d (block ``layer`` output), and / d ``value`` when the
    output at ``position`` is replaced by ``value``; a hook on the plain HF model."""
    kept = {}

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if value is not None:
            hidden = hidden.clone()
            hidden[:, position] = value
        hidden.retain_grad()
        kept["h"] = hidden
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = model.adapter.blocks[layer].register_forward_hook(hook)
    try:
        ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
        with torch.enable_grad():
            logits = model.hf(input_ids=ids).logits
            logits[0, -1, token].backward()
    finally:
        handle.remove()
    return kept["h"].grad


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_grad_of_a_captured_state_equals_hand_written_autograd(arch):
    model = tiny(arch)
    out = model.run(PROMPT, capture=("resid_post", 1), grad=True)
    token = int(out.logits[0, -1].argmax())
    out.logits[0, -1, token].backward()
    expected = _plain_grad_of_block_output(model, 1, token)
    torch.testing.assert_close(out.grad("resid_post", 1), expected, rtol=1e-5, atol=1e-6)
    model.hf.zero_grad(set_to_none=True)


def test_grad_reaches_an_interventions_value():
    model = tiny("llama")
    value = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    out = model.run(PROMPT, interventions=[ls.patch("resid_post", 2, -1, value)], grad=True)
    token = int(out.logits[0, -1].argmax())
    out.logits[0, -1, token].backward()
    expected = _plain_grad_of_block_output(model, 2, token, value=value.detach())[0, -1]
    torch.testing.assert_close(value.grad, expected, rtol=1e-5, atol=1e-6)
    model.hf.zero_grad(set_to_none=True)


def test_no_grad_by_default_even_under_enable_grad():
    model = tiny("llama")
    with torch.enable_grad():
        out = model.run(PROMPT, capture=("resid_post", 1))
    assert not out.logits.requires_grad and not out.get("resid_post", 1).requires_grad
    with pytest.raises(SiteError, match="grad=True"):
        out.grad("resid_post", 1)
