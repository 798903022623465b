"""Compile interventions against a batch: per (site, layer), index tensors and ops.

Resolving positions and checking shapes once, before the forward pass, keeps the hooks cheap and
makes every bad input fail before the model has run. Patches of different variants (disjoint
rows) at the same site are fused into one indexed write, so a sweep of V variants costs one
``index_put`` per site instead of V.

The planner reads what each op declares (:class:`~layerscope.engine.interventions.Op`:
``value_field``/``value_shape`` for the shape checks and binding, ``fusable`` for the fusion,
``replays`` for ops that write recorded states at later layers) and never asks which op it holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from layerscope.engine.batch import Batch
from layerscope.engine.interventions import Intervention, Op, OpContext, resolve_layers
from layerscope.engine.shapes import Hidden, Index, Mask
from layerscope.errors import InterventionError, SiteError


@dataclass
class CompiledOp:
    """An op bound to concrete ``rows``/``positions`` (``[N]`` each) of the current forward."""

    op: Op
    rows: Index
    positions: Index
    loop: int | None

    def apply(self, hidden: Hidden, mask: Mask, layer: int, iteration: int) -> Hidden:
        """``hidden: [B, T, D]`` -> new ``[B, T, D]`` (never in place)."""
        if self.loop is not None and self.loop != iteration:
            return hidden
        selected = hidden[self.rows, self.positions]
        context = OpContext(hidden, self.rows, self.positions, mask, layer, iteration)
        new = self.op.transform(selected, context)
        return hidden.index_put((self.rows, self.positions), new.to(hidden.dtype))


@dataclass
class Plan:
    """Compiled ops per ``(site, layer)``, in the order given."""

    ops: dict[tuple[str, int], list[CompiledOp]] = field(default_factory=lambda: defaultdict(list))

    def at(self, site: str, layer: int) -> list[CompiledOp]:
        return self.ops.get((site, layer), [])

    def layers(self) -> set[int]:
        return {layer for _, layer in self.ops}


def compile_plan(
    interventions: Sequence[Intervention],
    batch: Batch,
    n_layers: int,
    d_model: int,
    offset: int = 0,
    available_sites: set[str] | None = None,
    drop_prefix: bool = False,
    loop=None,
) -> Plan:
    """Resolve every intervention against ``batch``.

    Args:
        offset: positions ``< offset`` are already in a KV cache (prefix reuse / generation); an
            intervention there cannot apply and raises, and indices are shifted by ``-offset``.
        available_sites: site kinds the model supports (attn_out/mlp_out need found sub-blocks).
        drop_prefix: silently skip positions inside the cache instead of raising (generation steps,
            where those positions were handled when they were computed).
        loop: the run's :class:`~layerscope.engine.session.Loop` (or None): a freeze inside a looped
            block replays on the block's later iterations too.
    """
    plan = Plan()
    device = batch.input_ids.device
    for iv in interventions:
        if available_sites is not None and iv.site not in available_sites:
            raise SiteError(f"site {iv.site!r} is not available for this model (found: {sorted(available_sites)})")
        layers = resolve_layers(iv.layers, n_layers)
        if iv.loop is not None and not op_replays(iv):
            _check_iteration(iv, layers, loop)
        rows = range(batch.size) if iv.rows is None else iv.rows
        pairs = [(r, p) for r in rows for p in batch.positions(iv.positions, r)]
        if drop_prefix:
            pairs = [(r, p) for r, p in pairs if p >= offset]
        if not pairs:
            continue
        in_prefix = [p for _, p in pairs if p < offset]
        if in_prefix:
            raise InterventionError(
                f"intervention at {iv.site} positions {sorted(set(in_prefix))} falls in the reused KV prefix "
                f"(first {offset} positions); reuse a shorter prefix or none"
            )
        row_idx = torch.tensor([r for r, _ in pairs], device=device)
        pos_idx = torch.tensor([p - offset for _, p in pairs], device=device)
        op = _bind_value(iv, len(pairs), len(set(r for r, _ in pairs)), d_model).fresh()
        if op.replays:
            if iv.site != "resid_pre" or len(layers) != 1:
                name = type(op).__name__
                raise InterventionError(f"{name} records at one resid_pre layer: e.g. freeze(layer, positions)")
            record = iv.loop or 0
            plan.ops[("resid_pre", layers[0])].append(CompiledOp(op, row_idx, pos_idx, record))
            for later, first in _freeze_replays(layers[0], record, n_layers, loop):
                plan.ops[("resid_pre", later)].append(CompiledOp(op.replay(first), row_idx, pos_idx, None))
            continue
        for layer in layers:
            plan.ops[(iv.site, layer)].append(CompiledOp(op, row_idx, pos_idx, iv.loop))
    for key, ops in plan.ops.items():
        plan.ops[key] = _fuse_sets(ops)
    return plan


def op_replays(iv: Intervention) -> bool:
    return bool(getattr(iv.op, "replays", False))


def _check_iteration(iv: Intervention, layers: list[int], loop) -> None:
    """An intervention at iteration ``iv.loop`` must name an iteration that runs at each of its layers:
    iteration 0 runs everywhere, later ones only inside the looped block and below its count."""
    if iv.loop == 0:
        return
    never = [l for l in layers if loop is None or not (loop.start <= l < loop.stop and iv.loop < loop.times)]
    if never:
        where = f"block [{loop.start}, {loop.stop}) x {loop.times}" if loop is not None else "no loop in this run"
        raise InterventionError(
            f"{iv.site} at layer(s) {never}, iteration {iv.loop} never runs ({where}): only the layers of a looped "
            "block run more than once; use an iteration below the loop count"
        )


def _freeze_replays(layer: int, record: int, n_layers: int, loop) -> list[tuple[int, int]]:
    """``(block j, first iteration)`` of every block call after ``resid_pre[layer]`` at iteration ``record``.

    Without a loop (or with ``layer`` outside it) that is every block j > layer. With ``layer`` in a
    looped block [a, b): blocks layer+1..b-1 from iteration ``record`` on, blocks a..layer from
    ``record + 1`` on (they run again after ``layer``), and the blocks above the loop (iteration 0).
    """
    inside = loop is not None and loop.start <= layer < loop.stop
    if record and not (inside and record < loop.times):
        where = f"block [{loop.start}, {loop.stop}) x {loop.times}" if loop is not None else "no loop"
        raise InterventionError(
            f"freeze at layer {layer}, iteration {record} never runs ({where}): only layers of a looped block "
            "run more than once; use an iteration below the loop count"
        )
    replays = []
    for j in range(n_layers):
        if inside and loop.start <= j < loop.stop:
            first = record if j > layer else record + 1
            if first < loop.times:
                replays.append((j, first))
        elif j > layer:
            replays.append((j, 0))
    return replays


def _bind_value(iv: Intervention, n_pairs: int, n_rows: int, d_model: int) -> Op:
    """Check the op's declared value against the model and the selection; bind ``per_state`` values to ``[N, D]``."""
    op = iv.op
    vector = op.value_of()
    if vector is None:
        return op
    if not isinstance(vector, torch.Tensor) or vector.dim() == 0:
        raise InterventionError(
            f"{type(op).__name__} at {iv.site} needs a [D] vector or [P, D] / [N, D] states, got {vector!r}"
        )
    if vector.shape[-1] != d_model:
        raise InterventionError(
            f"hidden-size mismatch at {iv.site}: the value has {vector.shape[-1]} dims but the model has "
            f"d_model={d_model}; pass mapping=... (e.g. an affine map fitted between the two models)"
        )
    if op.value_shape != "per_state":
        if vector.dim() != 1:
            raise InterventionError(f"{type(op).__name__} needs a [D] vector, got shape {tuple(vector.shape)}")
        return op
    per_row = n_pairs // max(n_rows, 1)
    if vector.dim() == 1:
        value = vector.expand(n_pairs, -1)
    elif vector.dim() == 2 and vector.shape[0] == n_pairs:
        value = vector
    elif vector.dim() == 2 and vector.shape[0] == per_row and per_row * n_rows == n_pairs:
        value = vector.repeat(n_rows, 1)
    else:
        raise InterventionError(
            f"patch value of shape {tuple(vector.shape)} does not fit {n_pairs} selected states "
            f"({n_rows} rows x {per_row} positions): give [D], [{per_row}, D] or [{n_pairs}, D]"
        )
    return op.with_value(value)


def _fuse_sets(ops: list[CompiledOp]) -> list[CompiledOp]:
    """Merge consecutive ``fusable`` ops of one kind on disjoint rows into one indexed write.

    Linear in the number of ops: the rows already in the current fused write are kept in a set
    (a sweep of V variants at one site used to cost O(V^2) here), and the values and indices are
    concatenated once per run of fusable ops rather than once per op.
    """
    fused: list[CompiledOp] = []
    group: list[CompiledOp] = []
    rows_seen: set[int] = set()

    def flush() -> None:
        if len(group) == 1:
            fused.append(group[0])
        elif group:
            fused.append(
                CompiledOp(
                    type(group[0].op).fuse([g.op for g in group]),
                    torch.cat([g.rows for g in group]),
                    torch.cat([g.positions for g in group]),
                    group[-1].loop,
                )
            )
        group.clear()
        rows_seen.clear()

    for op in ops:
        if not op.op.fusable:
            flush()
            fused.append(op)
            continue
        rows = set(op.rows.tolist())
        if group and (group[-1].loop != op.loop or type(group[-1].op) is not type(op.op) or rows & rows_seen):
            flush()
        group.append(op)
        rows_seen |= rows
    flush()
    return fused
