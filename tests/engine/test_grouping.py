"""length_groups against the three hand-written groupings it replaced (so no chunk changed)."""

import random

import pytest
import torch

from layerscope.engine.chunking import parse_budget, rows_per_chunk
from layerscope.engine.grouping import in_order, length_groups


def old_plan_chunks(lengths, cost, budget, batch_size):
    """layer_by_layer.plan_chunks before: longest first, each chunk sized for its first (longest) text."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    plan, start = [], 0
    while start < len(order):
        size = rows_per_chunk(budget, cost(lengths[order[start]]), len(order) - start)
        if batch_size is not None:
            size = min(size, batch_size)
        plan.append(order[start : start + size])
        start += size
    return plan


def old_attend_groups(lengths, rows_of, cost, budget, max_rows):
    """attend._groups before: shortest first, a group's cost the sum of its items' costs."""
    limit = parse_budget(budget)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, used, rows = [[]], 0, 0
    for i in order:
        c = rows_of[i] * cost(lengths[i])
        if groups[-1] and (rows + rows_of[i] > max_rows or (limit is not None and used + c > limit)):
            groups.append([])
            used = rows = 0
        groups[-1].append(i)
        used += c
        rows += rows_of[i]
    return groups


def old_loop_chunks(lengths, per_row, budget):
    """loops' runners before: shortest first, fixed-size chunks sized for the longest prompt."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = rows_per_chunk(budget, per_row, len(lengths))
    return [order[s : s + size] for s in range(0, len(order), size)]


CASES = [(seed, budget) for seed in range(6) for budget in (None, 1_000, 5_000, 40_000, 10**9)]


@pytest.mark.parametrize(("seed", "budget"), CASES)
def test_same_chunks_as_before(seed, budget):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 30))]
    rows_of = [rng.randint(1, 4) for _ in lengths]

    def cost(length):
        return 7 * length + length * length

    for batch_size in (None, 3):
        assert length_groups(lengths, cost, budget, max_rows=batch_size, longest_first=True) == old_plan_chunks(
            lengths, cost, budget, batch_size
        )
    assert length_groups(lengths, cost, budget, max_rows=9, weights=rows_of, padded=False) == old_attend_groups(
        lengths, rows_of, cost, budget, 9
    )
    per_row = cost(max(lengths))
    assert length_groups(lengths, lambda _: per_row, budget) == old_loop_chunks(lengths, per_row, budget)


def test_in_order_restores_the_callers_order():
    lengths = [5, 1, 4, 1, 3]
    groups = length_groups(lengths, lambda n: n, 6)
    parts = [torch.tensor([[float(i)] for i in g]) for g in groups]
    assert in_order(groups, parts).squeeze(-1).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
