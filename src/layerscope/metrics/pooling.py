"""Masked token operations and pooling for padded batches of hidden states.

Conventions shared by every metric in :mod:`layerscope.metrics`:

* ``states`` is a tensor of shape ``[..., B, T, D]``: any number of leading
  dimensions (for instance depth ``L``), ``B`` prompts, ``T`` padded positions,
  ``D`` hidden size.
* ``mask`` is a boolean tensor of shape ``[B, T]`` (``True`` = real token).  It is
  shared by all leading dimensions.  Padding may be on the left, on the right, or
  anywhere: nothing here assumes where the real tokens sit, only that their
  relative order is the token order.  ``mask=None`` means "every position is real".

All functions are pure torch and run on the device of ``states``.  Unless stated
otherwise results are computed in float64 (the metrics are spectral and
numerically delicate; hidden states often arrive as bf16/fp16).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "Pooling",
    "POOLINGS",
    "check_states_mask",
    "token_counts",
    "centered_tokens",
    "center_and_normalize_tokens",
    "compact_tokens",
    "mean_pool",
    "last_token_pool",
    "normalized_mean_pool",
    "pool",
]

Pooling = Literal["mean", "normalized-mean", "last"]
POOLINGS: tuple[str, ...] = ("mean", "normalized-mean", "last")


def check_states_mask(
    states: Tensor, mask: Tensor | None, *, dtype: torch.dtype | None = torch.float64
) -> tuple[Tensor, Tensor]:
    """Validate ``states [..., B, T, D]`` / ``mask [B, T]`` and return them prepared.

    Returns ``(states, mask)`` with ``states`` cast to ``dtype`` (unless ``dtype`` is
    None) and ``mask`` a bool tensor ``[B, T]`` on the device of ``states``
    (all-True when ``mask`` is None).
    """
    if states.dim() < 3:
        raise ValueError(f"states must have shape [..., B, T, D], got {tuple(states.shape)}")
    B, T = states.shape[-3], states.shape[-2]
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=states.device)
    else:
        if tuple(mask.shape) != (B, T):
            raise ValueError(
                f"mask must have shape [B, T] = {(B, T)} matching states {tuple(states.shape)}, got {tuple(mask.shape)}"
            )
        mask = mask.to(device=states.device, dtype=torch.bool)
    if dtype is not None:
        states = states.to(dtype)
    return states, mask


def token_counts(mask: Tensor) -> Tensor:
    """Number of real tokens per prompt: ``mask [B, T]`` -> long ``[B]``."""
    return mask.sum(dim=-1)


def _masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: ``[..., B, T, D]``, ``[B, T]`` -> ``[..., B, D]``.

    Prompts without any real token give NaN rows (0 / 0).
    """
    m = mask.to(states.dtype).unsqueeze(-1)  # [B, T, 1]
    total = (states * m).sum(dim=-2)  # [..., B, D]
    return total / m.sum(dim=-2)  # [B, 1] broadcasts


def centered_tokens(states: Tensor, mask: Tensor | None = None) -> Tensor:
    """Each prompt's real tokens centred across tokens; padding rows exactly zero.

    ``states [..., B, T, D]``, ``mask [B, T]`` -> a new float64 tensor ``[..., B, T, D]``
    (never a view of ``states``).  Computed in place on one float64 copy, with the masked
    mean as a matmul, so it makes about three passes over the data (this runs on every
    depth of every prompt).  A prompt with no real token gives zero rows.
    """
    states, mask = check_states_mask(states, mask, dtype=None)
    x = states.to(torch.float64, copy=True)
    m = mask.to(torch.float64)  # [B, T]
    counts = m.sum(dim=-1).clamp_min(1.0)  # [B]; empty prompts: 0 / 1 = 0
    mu = (m.unsqueeze(-2) @ x).squeeze(-2) / counts.unsqueeze(-1)  # [..., B, D]
    x -= mu.unsqueeze(-2)
    x *= m.unsqueeze(-1)
    return x


def center_and_normalize_tokens(states: Tensor, mask: Tensor | None = None) -> Tensor:
    """Centre each prompt's real tokens across tokens, then L2-normalise each row.

    This is the per-prompt pre-processing of the Layer-by-Layer paper (prompt
    entropy) and of the authors' ``normalize`` helper.

    Args:
        states: ``[..., B, T, D]`` hidden states.
        mask: ``[B, T]`` bool, True = real token (None = all real).

    Returns:
        ``[..., B, T, D]`` float64 tensor; padding rows are exactly zero.  A real row
        that is exactly zero after centring (a token equal to the prompt mean, e.g. a
        one-token prompt) stays zero instead of becoming NaN.
    """
    x = centered_tokens(states, mask)
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    x /= torch.where(norms > 0, norms, torch.ones_like(norms))
    return x


def compact_tokens(states: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Move each prompt's real tokens to the front, keeping their order.

    Works for left padding, right padding and arbitrary holes in the mask.

    Args:
        states: ``[..., B, T, D]``.
        mask: ``[B, T]`` bool.

    Returns:
        ``(compacted [..., B, T, D], compact_mask [B, T])`` where the real tokens of
        prompt ``b`` occupy positions ``0 .. T_b - 1`` (in original order) and
        ``compact_mask[b, t] = t < T_b``.  Dtype of ``states`` is preserved.
    """
    states, mask = check_states_mask(states, mask, dtype=None)
    T = mask.shape[-1]
    # Stable sort: real tokens (key 0) before padding (key 1), original order kept.
    order = torch.sort((~mask).to(torch.int8), dim=-1, stable=True).indices  # [B, T]
    index = order.unsqueeze(-1).expand(*states.shape[:-3], *order.shape, states.shape[-1])
    compacted = torch.gather(states, -2, index)
    counts = token_counts(mask)
    compact_mask = torch.arange(T, device=mask.device).unsqueeze(0) < counts.unsqueeze(-1)
    return compacted, compact_mask


def _require_nonempty(mask: Tensor) -> None:
    if not bool(mask.any(dim=-1).all()):
        raise ValueError("every prompt must contain at least one real token (mask row all False)")


def mean_pool(states: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of the raw hidden states over real (non-pad) tokens.

    ``states [..., B, T, D]``, ``mask [B, T]`` -> ``[..., B, D]`` (float64).
    This is the pooling described in the paper's text and layerscope's default.
    """
    states, mask = check_states_mask(states, mask)
    _require_nonempty(mask)
    return _masked_mean(states, mask)


def last_token_pool(states: Tensor, mask: Tensor | None = None) -> Tensor:
    """Hidden state of the last real token of each prompt (left or right padding).

    ``states [..., B, T, D]``, ``mask [B, T]`` -> ``[..., B, D]`` (float64).
    """
    states, mask = check_states_mask(states, mask)
    _require_nonempty(mask)
    T = mask.shape[-1]
    positions = torch.arange(1, T + 1, device=mask.device)
    last = (mask.long() * positions).argmax(dim=-1)  # [B] index of the last True
    index = last.view(-1, 1, 1).expand(*states.shape[:-3], mask.shape[0], 1, states.shape[-1])
    return torch.gather(states, -2, index).squeeze(-2)


def normalized_mean_pool(states: Tensor, mask: Tensor | None = None) -> Tensor:
    """The authors' code pooling: centre tokens per prompt, L2-normalise rows, mean.

    ``states [..., B, T, D]``, ``mask [B, T]`` -> ``[..., B, D]`` (float64).  The
    mean runs over real tokens only (padding rows are excluded from the count).
    """
    states, mask = check_states_mask(states, mask)
    _require_nonempty(mask)
    return _masked_mean(center_and_normalize_tokens(states, mask), mask)


def pool(states: Tensor, mask: Tensor | None = None, method: Pooling = "mean") -> Tensor:
    """Pool ``states [..., B, T, D]`` to ``[..., B, D]`` with ``method``.

    ``method`` is one of ``"mean"`` (raw mean over real tokens, default),
    ``"normalized-mean"`` (authors' code) or ``"last"`` (last real token).
    """
    if method == "mean":
        return mean_pool(states, mask)
    if method == "normalized-mean":
        return normalized_mean_pool(states, mask)
    if method == "last":
        return last_token_pool(states, mask)
    raise ValueError(f"unknown pooling {method!r}; expected one of {POOLINGS}")
