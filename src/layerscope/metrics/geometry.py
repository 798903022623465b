"""Curvature of token trajectories (Layer-by-Layer, METHODS.md section 1).

Two variants, both averaged first over the angles of one prompt, then over
prompts:

* ``variant="paper"`` (default, the paper's definition): along the real tokens
  ``z_1 .. z_T`` of a prompt (raw hidden states, as given), ``v_k = z_{k+1} - z_k``
  and the prompt's curvature is ``mean_k angle(v_k, v_{k+1})`` for
  ``k = 1 .. T-2``.  Needs ``T >= 3`` real tokens; shorter prompts are skipped.
* ``variant="token-angle"`` (the authors' code): the prompt's tokens are centred
  across tokens and L2-normalised (as in prompt entropy) and the prompt's
  curvature is ``mean_k angle(z_k, z_{k+1})`` for ``k = 1 .. T-1``.  Needs
  ``T >= 2``; shorter prompts are skipped.

``k`` (k-step curvature, default 1) takes steps of ``k`` tokens: ``v_t = z_{t+k} - z_t`` and
``angle(v_t, v_{t+k})`` ("paper"; needs ``T >= 2k + 1``), or ``angle(z_t, z_{t+k})``
("token-angle"; needs ``T >= k + 1``), averaged over every start ``t``.  ``k = 1`` is the
definition above; the authors report k = 1, 2, 5.

Angles are in radians in ``[0, pi]``, computed as
``2 * atan2(|a/|a| - b/|b||, |a/|a| + b/|b||)``, which equals
``arccos(a.b / (|a||b|))`` but stays accurate near 0 and pi (plain arccos of a
cosine that rounds to 1 - 1e-16 gives ~1e-8 rad).  An angle involving a
zero-length vector (two identical consecutive states in the "paper" variant, or
a token equal to the prompt mean in the "token-angle" variant) is undefined and
is left out of the average; a prompt left with no defined angle is skipped.

Padding may be on either side (or anywhere): the real tokens are first
compacted to the front in their original order.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from layerscope.metrics.pooling import (
    center_and_normalize_tokens,
    check_states_mask,
    compact_tokens,
)

__all__ = ["CurvatureVariant", "vector_angle", "curvature"]

CurvatureVariant = Literal["paper", "token-angle"]


def vector_angle(a: Tensor, b: Tensor) -> Tensor:
    """Angle in radians between ``a [..., D]`` and ``b [..., D]`` -> ``[...]``.

    Numerically stable (half-angle atan2 form).  NaN where either vector is zero.
    """
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    na = torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    nb = torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    ua, ub = a / na, b / nb  # NaN for zero vectors, propagates
    return 2.0 * torch.atan2(torch.linalg.vector_norm(ua - ub, dim=-1), torch.linalg.vector_norm(ua + ub, dim=-1))


def curvature(
    states: Tensor,
    mask: Tensor | None = None,
    variant: CurvatureVariant = "paper",
    *,
    k: int = 1,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Average curvature of the token trajectories of a batch of prompts.

    Args:
        states: ``[..., B, T, D]`` hidden states (e.g. ``[L, B, T, D]``).
        mask: ``[B, T]`` bool, True = real token; None = no padding.
        variant: ``"paper"`` (angle between consecutive difference vectors) or
            ``"token-angle"`` (angle between consecutive centred, normalised
            tokens; authors' code).  See the module docstring.
        k: step length in tokens (k-step curvature; 1 = consecutive tokens).
        reduction: ``"mean"`` -> mean over prompts with at least one defined
            angle, ``[...]``; ``"none"`` -> per-prompt ``[..., B]`` (NaN for
            skipped prompts).

    Returns:
        ``[...]`` (or ``[..., B]``) float64 radians.
    """
    states, mask = check_states_mask(states, mask)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if variant == "token-angle":
        states = center_and_normalize_tokens(states, mask)
    elif variant != "paper":
        raise ValueError(f"unknown variant {variant!r}; expected 'paper' or 'token-angle'")
    z, cmask = compact_tokens(states, mask)  # real tokens first: [..., B, T, D], [B, T]

    if variant == "paper":
        v = z[..., k:, :] - z[..., :-k, :]  # [..., B, T-k, D]
        vmask = cmask[:, k:]  # v_t valid iff token t+k is real
        angles = vector_angle(v[..., :-k, :], v[..., k:, :])  # [..., B, T-2k]
        amask = vmask[:, k:]  # both v_t and v_{t+k} valid
    else:
        angles = vector_angle(z[..., :-k, :], z[..., k:, :])  # [..., B, T-k]
        amask = cmask[:, k:]

    defined = amask & ~torch.isnan(angles)  # [..., B, K] (broadcast)
    zero = torch.zeros((), dtype=angles.dtype, device=angles.device)
    total = torch.where(defined, angles, zero).sum(dim=-1)
    count = defined.sum(dim=-1)
    per_prompt = total / count  # NaN where no defined angle (0 / 0)
    if reduction == "none":
        return per_prompt
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    if per_prompt.numel() and bool(torch.isnan(per_prompt).all()):
        raise ValueError("no prompt has enough real tokens for a curvature angle")
    return torch.nanmean(per_prompt, dim=-1)
