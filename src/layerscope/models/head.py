"""The head: everything a model does between its last block and its logits, found and verified.

The logit lens, the per-row-start path and activation patching all turn residual states into
logits themselves, so they must apply exactly what the model applies. That is rarely just "final
norm, then unembedding": Cohere multiplies the logits by ``logit_scale``, Granite divides by
``logits_scaling``, MiniCPM3 scales the states by ``dim_model_base / hidden_size``, Gemma 2/3 and
RecurrentGemma soft-cap the logits (under different config keys), ModernBERT-decoder has a
prediction head (dense, activation, norm) before its decoder, OPT-350m projects its states to
another width (``project_out``).

Rather than a table of such quirks, the head is *observed*: one probe forward records, in call
order, the modules that run after the last block at the top level (not nested in one another):
e.g. ``[model.norm, lm_head]`` or ``[model.decoder.final_layer_norm, model.decoder.project_out,
lm_head]``. What the forward does without a module (a scale, a soft cap) is then fitted from the
same probe: ``logits = cap * tanh(scale * z / cap)`` with ``z`` the composed modules' output, the
cap taken from any ``*softcap*``/``*soft_cap*`` config value. :func:`find_head` keeps a head only if
it reproduces the model's own logits on the probe; otherwise the model's lens is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from layerscope.errors import AdapterError


@dataclass
class Head:
    """``resid_post[L-1] -> logits``: modules in call order, then an optional scale and soft cap.

    Attributes:
        modules: the modules that run after the last block (norms, projections, prediction heads,
            the unembedding last).
        names: their dotted names (for messages and the capability cache).
        scale: a factor the forward applies without a module (1.0: none).
        softcap: ``cap`` of ``cap * tanh(x / cap)`` applied last (None: none).
    """

    modules: list[nn.Module]
    names: list[str]
    scale: float = 1.0
    softcap: float | None = None

    def __call__(self, states: torch.Tensor, tokens: Sequence[int] | None = None) -> torch.Tensor:
        """``[..., D]`` states -> ``[..., V]`` logits (``[..., len(tokens)]`` with ``tokens``).

        With ``tokens``, a plain linear unembedding multiplies by those rows alone (much cheaper
        than the whole vocabulary); the scale and cap act elementwise, so the subset is exact.
        """
        h = states
        *body, last = self.modules
        for module in body:
            h = _first(module(h))
        if tokens is not None and isinstance(last, nn.Linear):
            index = list(tokens)
            bias = None if last.bias is None else last.bias[index]
            logits = nn.functional.linear(h, last.weight[index], bias)
        else:
            logits = _first(last(h))
            if tokens is not None:
                logits = logits[..., list(tokens)]
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _first(out):
    return out[0] if isinstance(out, tuple | list) else out


def trace_head(hf: nn.Module, last_block: nn.Module, run_probe) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Run ``run_probe()`` once and record the top-level modules called after ``last_block``.

    Returns ``(names, last_block_output [B, T, D], logits [B, T, V])``.
    """
    names_of = {id(m): n for n, m in hf.named_modules()}
    state = {"after": False, "open": 0, "out": None}
    called: list[str] = []
    handles = []

    def pre(module, args):
        if state["after"]:
            if state["open"] == 0:
                called.append(names_of[id(module)])
            state["open"] += 1

    def post(module, args, output):
        if state["after"]:
            state["open"] -= 1

    def block_done(module, args, output):
        state["after"], state["open"], state["out"] = True, 0, _first(output)

    containers = _ancestors(hf, last_block)
    for _name, module in hf.named_modules():
        if module is hf or module is last_block or id(module) in containers:
            continue
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    handles.append(last_block.register_forward_hook(block_done))
    try:
        logits = run_probe()
    finally:
        for handle in handles:
            handle.remove()
    if state["out"] is None:
        raise AdapterError(f"the last block of {type(hf).__name__} did not run in a probe forward")
    return called, state["out"], logits


def _ancestors(root: nn.Module, target: nn.Module) -> set[int]:
    """ids of the modules that contain ``target`` (they are still open when it finishes)."""
    found: set[int] = set()

    def walk(module: nn.Module) -> bool:
        hit = False
        for child in module.children():
            if child is target or walk(child):
                hit = True
        if hit:
            found.add(id(module))
        return hit

    walk(root)
    return found


def fit_head(hf: nn.Module, names: list[str], last_out: torch.Tensor, logits: torch.Tensor) -> Head:
    """The head of ``names`` plus the scale / soft cap that make it reproduce ``logits``.

    Raises :class:`AdapterError` (saying what differs) when no such head reproduces them.
    """
    if not names:
        raise AdapterError("no module runs after its last block, so no unembedding was found")
    modules = [hf.get_submodule(n) for n in names]
    head = Head(modules, names)
    with torch.no_grad():
        z = head(last_out).float()
    y = logits.float()
    if z.shape != y.shape:
        raise AdapterError(
            f"the modules after its last block ({', '.join(names)}) give logits of shape "
            f"{tuple(z.shape)}, the model gives {tuple(y.shape)}"
        )
    for cap in [None, *_softcap_candidates(hf)]:
        target = y if cap is None else _untanh(y, cap)
        if target is None:
            continue
        scale = float((target * z).sum() / (z * z).sum().clamp(min=1e-30))
        scale = _snap(scale, hf)
        head.scale, head.softcap = scale, cap
        with torch.no_grad():
            if _close(head(last_out).float(), y):
                return head
    err = (Head(modules, names)(last_out).float() - y).abs().max().item()
    raise AdapterError(
        f"the modules after its last block ({' -> '.join(names)}) do not reproduce the model's "
        f"logits (max difference {err:.3g}, also with a fitted scale or soft cap): the model does something "
        "after its last block that layerscope cannot see, so the logit lens, activation patching and per-row "
        "start layers refuse it. Pass the head yourself: "
        "ls.load(path, head=lambda states: ...) ([..., D] -> [..., vocab])"
    )


def _softcap_candidates(hf: nn.Module) -> list[float]:
    config = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    caps = []
    for key, value in vars(config).items():
        low = key.lower()
        named = ("softcap" in low or "soft_cap" in low) and "attn" not in low and "gate" not in low
        if named and isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            caps.append(float(value))
    return caps


def _untanh(y: torch.Tensor, cap: float) -> torch.Tensor | None:
    ratio = y / cap
    if ratio.abs().max() >= 1:
        return None
    return torch.atanh(ratio) * cap


def _snap(scale: float, hf: nn.Module) -> float:
    """A fitted scale equal to 1 or to a config value (or its inverse) up to rounding is that value,
    so that an ordinary model's lens stays bit-exact."""
    config = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    candidates = [1.0]
    for value in vars(config).values():
        if isinstance(value, int | float) and not isinstance(value, bool) and value not in (0, 1):
            candidates += [float(value), 1.0 / float(value)]
    for candidate in candidates:
        if math.isclose(scale, candidate, rel_tol=1e-4):
            return candidate
    return scale


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    tol = 1e-4 * max(1.0, float(b.abs().max()))
    return bool((a - b).abs().max() <= tol)
