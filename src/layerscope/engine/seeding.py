"""How the random ops draw: per batch row (``layerscope``) or as the Attend-first authors' code does.

``layerscope`` (default): each batch row restarts a generator from ``seed`` and draws its ``[n, D]``
numbers in one call, so a prompt's noise does not depend on its batch-mates (batched variants equal
one-by-one runs) nor on the layer.

``authors``: the draws of ``manipulations_utils.py`` in Ben Artzy & Schwartz's repository
(``DistruptClass.apply_random_switch`` / ``apply_shuffle_random``), call for call, for one forward
pass of one prompt:

- random: a generator seeded with ``seed`` (their code reads torch's global generator: this is
  ``torch.manual_seed(seed)`` before their forward pass), then for each manipulated token in
  ascending token order ``v = randn(D)`` in the states' dtype and device, and the state becomes
  ``(v / ||v||_2) * ||h||_2``;
- shuffle: for each manipulated token ``t`` (its index in the unpadded prompt) at block ``k``,
  ``torch.manual_seed(k * t)`` then ``perm = torch.randperm(D)`` (on the CPU), and the state becomes
  ``h[perm]``; ``seed`` plays no part (their code has none).

Each batch row is one such forward pass (the generator restarts per row). Their generation without a
KV cache continues one global stream across steps; a run here restarts it for every scored prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from layerscope.errors import InterventionError

SEEDINGS = ("layerscope", "authors")
INT64 = (-(2**63), 2**63 - 1)

__all__ = [
    "INT64",
    "SEEDINGS",
    "authors_random",
    "authors_shuffle",
    "check_seed",
    "check_seeding",
    "draw_per_row",
    "generator",
    "token_index",
]


def check_seed(seed) -> int:
    """A seed the torch generator takes: an int in int64 (a :class:`InterventionError` otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InterventionError(f"seed must be an int, got {seed!r}")
    if not INT64[0] <= seed <= INT64[1]:
        raise InterventionError(f"seed {seed} is outside int64 ({INT64[0]}..{INT64[1]})")
    return seed


def check_seeding(seeding) -> str:
    """``"layerscope"`` or ``"authors"`` (a :class:`InterventionError` naming both otherwise)."""
    if seeding not in SEEDINGS:
        raise InterventionError(f"seeding must be one of {', '.join(SEEDINGS)}, got {seeding!r}")
    return seeding


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def draw_per_row(
    shape: torch.Size, rows: torch.Tensor, seed: int, device: torch.device, draw: Callable
) -> torch.Tensor:
    """``[N, D]`` random numbers, each batch row's ``[n, D]`` from ``draw((n, D), generator(seed))``.

    Every row restarts the generator from ``seed``, so a prompt's noise does not depend on the other
    rows of the batch: batched variants equal one-by-one runs.
    """
    out = torch.empty(shape, device=device)
    for row in rows.unique().tolist():
        where = (rows == row).nonzero().squeeze(-1)
        out[where] = draw((len(where), shape[-1]), generator(seed, device))
    return out


def token_index(rows: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` index of each selected state's token in its unpadded prompt (pads never count).

    ``rows``, ``positions``: ``[N]``; ``mask``: ``[B, T]``, 1 = real token.
    """
    before = mask.long().cumsum(dim=1) - 1  # [B, T]: real tokens up to and including t, minus one
    return before[rows.to(mask.device), positions.to(mask.device)].to(rows.device)


def _by_row_in_token_order(rows: torch.Tensor, tokens: torch.Tensor):
    """Per batch row (ascending), the indices into ``[N]`` of its states in ascending token order."""
    for row in rows.unique().tolist():
        where = (rows == row).nonzero().squeeze(-1)
        yield where[tokens[where].argsort(stable=True)].tolist()


def authors_random(states: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor, seed: int) -> torch.Tensor:
    """The authors' random switch (see the module doc): ``states [N, D]`` -> ``[N, D]``.

    ``rows``: ``[N]`` batch rows; ``tokens``: ``[N]`` token indices in the unpadded prompt.
    """
    out = states.clone()
    for order in _by_row_in_token_order(rows, tokens):
        g = generator(seed, states.device)
        for i in order:
            h = states[i]
            v = torch.randn(h.shape, generator=g, dtype=h.dtype, device=h.device)
            out[i] = (v / torch.norm(v, 2)) * torch.norm(h, 2)
    return out


def authors_shuffle(states: torch.Tensor, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """The authors' shuffle at block ``layer`` (see the module doc): ``states [N, D]`` -> ``[N, D]``."""
    out = states.clone()
    for i, t in enumerate(tokens.tolist()):
        perm = torch.randperm(states.shape[-1], generator=generator(layer * t))
        out[i] = states[i][perm.to(states.device)]
    return out
