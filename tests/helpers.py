"""Independent computations the tests compare the engine against: plain HF forwards and hooks."""

from __future__ import annotations

import torch


def hf_logits(model, prompts, **extra) -> torch.Tensor:
    """Logits of a plain HF forward on the engine's own (left-padded) batch."""
    batch = model.tokenize(prompts)
    with torch.no_grad():
        return model.hf(**batch.model_inputs(), **extra).logits


def hf_hidden_states(model, prompt: str):
    enc = model.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        return model.hf(**enc, output_hidden_states=True).hidden_states


def with_hooks(model, hooks, fn):
    """Run ``fn()`` with raw torch hooks ``[(module, kind, hook)]`` installed (kind: 'pre' or 'post')."""
    handles = []
    try:
        for module, kind, hook in hooks:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(hook))
            else:
                handles.append(module.register_forward_hook(hook))
        with torch.no_grad():
            return fn()
    finally:
        for h in handles:
            h.remove()


def assert_clean(model) -> None:
    """No wrapper or hook left anywhere on the model."""
    for name, module in model.hf.named_modules():
        assert "forward" not in module.__dict__, f"wrapper left on {name}"
        assert not module._forward_hooks, f"forward hook left on {name}"
        assert not module._forward_pre_hooks, f"pre-hook left on {name}"
