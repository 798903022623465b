"""The one forward path: hooks for a plan, then the one call into the Hugging Face forward.

Models differ in how a cache goes in and comes out (``cache=`` since transformers 5.24,
``past_key_values=`` before, ``state=`` for RWKV; some keep none), in whether they take
``position_ids``, ``use_cache`` or ``logits_to_keep`` at all, and in whether explicit position ids
are right for a padded row (RoBERTa counts from ``padding_idx + 1``). The self-check at load
(:mod:`layerscope.models.checks`) records what the model takes; every forward of the engine
(plain runs, staggered runs, generation steps) goes through :func:`forward`, which holds the model
(:meth:`Model.exclusive`), installs the plan's hooks and calls :func:`call_model`, so no other place
builds HF keywords or opens a hook session.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from layerscope.models.checks import CACHE_ARGS, accepted_kwargs


@dataclass
class ForwardOutput:
    """``logits``: ``[B, T', V]`` or None; ``cache``: the model's cache object when kept."""

    logits: torch.Tensor | None
    cache: object | None


def _signature(model) -> tuple[set[str], set[str] | None]:
    """``(named parameters, accepted keywords or None when it also takes **kwargs)`` of the forward."""
    found = getattr(model, "_forward_signature", None)
    if found is None:
        found = (set(inspect.signature(model.hf.forward).parameters), accepted_kwargs(model.hf))
        model._forward_signature = found
    return found


def call_model(
    model,
    inputs: dict[str, torch.Tensor],
    *,
    cache=None,
    keep_cache: bool = False,
    logits: str | None = "all",
    grad: bool = False,
) -> ForwardOutput:
    """Call ``model.hf`` once (no hooks of its own: a :class:`HookSession` may be open).

    Args:
        inputs: ``input_ids`` ``[B, T]`` and optionally ``attention_mask``, ``position_ids``.
        cache: a cache to continue from (passed under the model's own keyword).
        keep_cache: ask the model for its cache and return it.
        logits: ``"all"``, ``"last"`` (only the last position is unembedded where the model can
            skip the rest) or None (none, where the model can skip the unembedding).
        grad: run with autograd (default: without, which is faster and holds no graph).
    """
    named, accepted = _signature(model)
    caps = getattr(model, "caps", None)
    kwargs = dict(inputs)
    if caps is not None and caps.padding == "model" and "position_ids" in kwargs and cache is None:
        del kwargs["position_ids"]  # the model counts positions itself (from the padding)
    cache_arg = caps.cache_arg if caps is not None else next(a for a in CACHE_ARGS if accepted is None or a in accepted)
    if model.is_causal:
        if cache is not None:
            kwargs[cache_arg] = cache
        if accepted is None or "use_cache" in accepted:
            kwargs["use_cache"] = keep_cache
        if logits != "all" and "logits_to_keep" in named:
            # logits=None: an empty index keeps no position, so the unembedding is skipped
            keep = 1 if logits == "last" else torch.empty(0, dtype=torch.long, device=model.device)
            kwargs["logits_to_keep"] = keep
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    with torch.set_grad_enabled(grad):
        out = model.hf(**kwargs)
    out_logits = getattr(out, "logits", None)
    if out_logits is not None and logits == "last":
        out_logits = out_logits[:, -1:]
    kept = None
    if keep_cache:
        kept = next((getattr(out, a) for a in CACHE_ARGS if getattr(out, a, None) is not None), None)
    return ForwardOutput(out_logits if logits is not None else None, kept)


def forward(
    model,
    inputs: dict[str, torch.Tensor],
    plan,
    mask: torch.Tensor,
    *,
    capture: dict[str, set[int]] | None = None,
    cache=None,
    keep_cache: bool = False,
    logits: str | None = "all",
    grad: bool = False,
    **session_options,
) -> tuple[ForwardOutput, dict]:
    """One forward with ``plan``'s interventions and ``capture``'s captures.

    Args:
        mask: ``[B, T']`` attention mask of the positions this forward computes (ops read it).
        grad: run with autograd: captured states stay in the graph (their ``.grad`` is kept after
            ``backward``), and so do the interventions' values.
        session_options: ``start_layer``, ``start_states``, ``loop``, ``capture_index``, ``stagger``
            (see :class:`~layerscope.engine.session.HookSession`).
    Returns:
        ``(output, captured)`` with ``captured = {(site, layer, iteration): [B, T', D]}``.
    """
    from layerscope.engine.session import HookSession

    session = HookSession(model.adapter, plan, capture or {}, mask, grad=grad, **session_options)
    with model.exclusive(), session:
        session.reset()
        out = call_model(model, inputs, cache=cache, keep_cache=keep_cache, logits=logits, grad=grad)
    return out, session.captured
