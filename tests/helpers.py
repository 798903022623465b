"""Independent computations the tests compare the engine against: plain HF forwards and hooks."""

from __future__ import annotations

import contextlib

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


def _foreign(hooks) -> list:
    """Hooks not installed by transformers itself (a first call with ``output_hidden_states=True`` makes
    transformers >= 5 install its own output-capturing hooks for good; they are not ours to remove)."""
    return [h for h in hooks.values() if not getattr(h, "__module__", "").startswith("transformers.")]


def assert_clean(model) -> None:
    """No wrapper or hook left anywhere on the model."""
    for name, module in model.hf.named_modules():
        assert "forward" not in module.__dict__, f"wrapper left on {name}"
        assert not _foreign(module._forward_hooks), f"forward hook left on {name}"
        assert not _foreign(module._forward_pre_hooks), f"pre-hook left on {name}"


def site_hook(model, site: str, layer: int, fn):
    """A raw hook ``(module, kind, hook)`` that replaces the ``[B, T, D]`` state at a site by ``fn(state)``.

    ``resid_pre`` is the first positional input of the block, ``resid_post`` its output, ``attn_out`` /
    ``mlp_out`` the output (first element) of the attention / MLP sub-module.
    """
    adapter = model.adapter
    if site == "resid_pre":

        def pre(module, args):
            return (fn(args[0]), *args[1:])

        return (adapter.blocks[layer], "pre", pre)
    module = {"resid_post": adapter.blocks, "attn_out": adapter.attn, "mlp_out": adapter.mlp}[site][layer]

    def post(module, args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return (module, "post", post)


def freeze_hooks(model, layer: int, positions):
    """Hand-made freeze: record ``resid_pre[layer]`` at ``positions`` and write it into every later block's input."""
    slot = {}

    def record(h):
        slot["states"] = h[:, positions].clone()
        return h

    def replay(h):
        h = h.clone()
        h[:, positions] = slot["states"]
        return h

    hooks = [site_hook(model, "resid_pre", layer, record)]
    hooks += [site_hook(model, "resid_pre", j, replay) for j in range(layer + 1, model.n_layers)]
    return hooks


def looped_copy(model, start: int, stop: int, times: int):
    """An independent looped model: a deep copy whose block list is
    ``[0..stop-1] + [start..stop-1] * (times - 1) + [stop..L-1]`` (the same module objects repeated).

    Run it with ``use_cache=False`` (a repeated block would write its cache slot twice).
    """
    import copy

    from torch import nn

    hf = copy.deepcopy(model.hf)
    path = model.adapter.blocks_path
    parent_path, _, name = path.rpartition(".")
    parent = hf.get_submodule(parent_path) if parent_path else hf
    blocks = list(getattr(parent, name))
    order = list(range(stop)) + list(range(start, stop)) * (times - 1) + list(range(stop, len(blocks)))
    setattr(parent, name, nn.ModuleList([blocks[i] for i in order]))
    hf.config.num_hidden_layers = len(order)
    for key in ("layer_types", "layers_block_type"):  # per-layer kinds (sliding / full, mamba / attention)
        kinds = getattr(hf.config, key, None)
        if isinstance(kinds, list) and len(kinds) == len(blocks):
            with contextlib.suppress(AttributeError):  # derived from other keys: the blocks know their kind
                setattr(hf.config, key, [kinds[i] for i in order])
    return hf, order


def assert_clean_of_layerscope(model) -> None:
    """No layerscope wrapper left (other libraries' own forward wrappers, e.g. accelerate's, may stay)."""
    for name, module in model.hf.named_modules():
        forward = module.__dict__.get("forward")
        assert forward is None or forward.__qualname__.split(".")[0] != "HookSession", f"wrapper left on {name}"


def run_cli(capsys, *argv):
    """Run the CLI in-process: ``(exit code, stdout, stderr)``."""
    from layerscope.cli.main import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def random_like(states: torch.Tensor, seed: int) -> torch.Tensor:
    """The engine's seeded random op, drawn by hand: Gaussian noise rescaled to each state's norm."""
    noise = torch.randn(states.shape, generator=torch.Generator().manual_seed(seed))
    return noise * (states.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True))


def shuffled(states: torch.Tensor, seed: int) -> torch.Tensor:
    """The engine's seeded shuffle op, drawn by hand: each state's dimensions permuted."""
    keys = torch.rand(states.shape, generator=torch.Generator().manual_seed(seed))
    return states.gather(-1, keys.argsort(dim=-1))


def hand_logit_lens(model, prompt: str) -> torch.Tensor:
    """The logit lens by hand: ``[L, T, V]`` probabilities from hooks on the HF blocks, then the HF
    model's own final norm and ``lm_head`` (Llama-style attribute names: ``hf.model.norm``)."""
    states = []

    def keep(module, args, out):
        states.append(out[0] if isinstance(out, tuple) else out)

    hooks = [(block, "post", keep) for block in model.adapter.blocks]
    enc = model.tokenizer(prompt, return_tensors="pt")
    with_hooks(model, hooks, lambda: model.hf(**enc))
    hf = model.hf
    with torch.no_grad():
        return torch.stack([hf.lm_head(hf.model.norm(h[0])).softmax(-1) for h in states])
