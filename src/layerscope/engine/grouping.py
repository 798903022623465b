"""Group prompts by length so each forward chunk pads little and fits a memory budget.

Every method that runs many prompts does the same three steps: sort by token count, fill chunks
while they fit ``batch_budget`` (and a row cap), run them, then put the results back in the
caller's order. :func:`length_groups` does the first two, :func:`in_order` the last, and
:func:`iter_groups` adds the progress bar; the per-row memory estimate stays the caller's
(:func:`layerscope.engine.chunking.row_bytes` with what that method keeps alive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from layerscope.engine.chunking import parse_budget
from layerscope.progress import bar

__all__ = ["in_order", "iter_groups", "length_groups"]


def length_groups(
    lengths: Sequence[int],
    row_cost: Callable[[int], int],
    budget: str | int | None,
    *,
    max_rows: int | None = None,
    weights: Sequence[int] | None = None,
    longest_first: bool = False,
    padded: bool = True,
) -> list[list[int]]:
    """Indices ``0..N-1`` in groups of similar length, each within ``budget`` bytes and ``max_rows`` rows.

    Indices are sorted by ``lengths`` (stable; ``longest_first`` puts the longest group first, so a
    budget that is too large fails at once, not at the end) and consecutive ones fill a group while
    it fits. A group's cost is ``rows * row_cost(its longest length)`` (``padded``: every row is
    padded to the longest) or the sum of its items' ``weight * row_cost(length)``. ``weights``: rows
    per item (default 1). A group always takes at least one item.
    """
    limit = parse_budget(budget)
    weights = [1] * len(lengths) if weights is None else list(weights)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i] if longest_first else lengths[i])
    groups: list[list[int]] = []
    rows = cost = longest = 0
    for i in order:
        new_rows = rows + weights[i]
        new_longest = max(longest, lengths[i])
        new_cost = new_rows * row_cost(new_longest) if padded else cost + weights[i] * row_cost(lengths[i])
        too_many = max_rows is not None and new_rows > max_rows
        if groups and groups[-1] and (too_many or (limit is not None and new_cost > limit)):
            groups.append([])
            new_rows, new_longest = weights[i], lengths[i]
            new_cost = weights[i] * row_cost(lengths[i])
        if not groups:
            groups.append([])
        groups[-1].append(i)
        rows, cost, longest = new_rows, new_cost, new_longest
    return groups


def iter_groups(groups: list[list[int]], *, desc: str = "", progress: bool = True) -> Iterator[list[int]]:
    """The groups, with a progress bar when there is more than one."""
    yield from bar(groups, progress=progress, desc=desc or None, leave=False)


def in_order(groups: list[list[int]], parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``parts[g]: [len(groups[g]), ...]`` -> one ``[N, ...]`` tensor in the original index order."""
    order = torch.as_tensor([i for group in groups for i in group])
    return torch.cat(list(parts))[torch.argsort(order)]
