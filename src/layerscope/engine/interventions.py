"""Interventions: what to do to the states at a set of sites.

An :class:`Intervention` names a site kind (``resid_pre``, ``resid_post``, ``attn_out``, ``mlp_out``),
the layers, the positions, and an :class:`Op` that maps the selected states ``[N, D]`` to new states
``[N, D]``. The constructors at the bottom (:func:`patch`, :func:`add`, :func:`freeze`, ...) are the
public API; the engine compiles them against a batch (see ``engine/plan.py``).

Ops never modify a tensor in place, so a state captured earlier in the pass is never altered by a
later intervention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

from layerscope.engine.layers import LayerSpec, is_int, resolve_layers  # noqa: F401 (re-exported: its old home)
from layerscope.engine.positions import PositionSpec
from layerscope.engine.seeding import (  # noqa: F401 (check_seed, INT64 re-exported: their old home)
    INT64,
    authors_random,
    authors_shuffle,
    check_seed,
    check_seeding,
    draw_per_row,
    token_index,
)
from layerscope.engine.shapes import Hidden, Index, Mask, Selected, Vector
from layerscope.errors import InterventionError, SiteError

SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out")


class Op:
    """Maps the selected states to new ones, and declares what the planner must do for it.

    ``transform(states, context)`` gets ``states: [N, D]`` (one row per selected (row, position)
    pair) and returns ``[N, D]``. The class attributes below are read by ``engine/plan.py``, which
    never asks which op it holds; a new op sets them and works with shape checks, fusion and
    replay like the built-in ones (README, "Write your own op").
    """

    #: the dataclass field holding a tensor the op carries (``"value"``, ``"vector"``), or None
    value_field: ClassVar[str | None] = None
    #: the value's shape: ``"vector"``: ``[D]``; ``"per_state"``: ``[D]``, ``[P, D]`` or ``[N, D]``,
    #: bound to one ``[N, D]`` row per selected state when the plan is compiled
    value_shape: ClassVar[str] = "vector"
    #: ops of this kind on disjoint rows at one site may merge into one indexed write (:meth:`fuse`);
    #: only for ops whose result depends on nothing but their own bound value
    fusable: ClassVar[bool] = False
    #: the op records the states entering one ``resid_pre`` layer and :meth:`replay` writes them at
    #: every later block call (freeze); the planner compiles the replays
    replays: ClassVar[bool] = False

    def transform(self, states: Selected, context: OpContext) -> Selected:
        raise NotImplementedError(
            f"{type(self).__name__}.transform(states [N, D], context) must return the new states [N, D]"
        )

    def value_of(self) -> torch.Tensor | None:
        """The tensor named by :attr:`value_field` (None when there is none)."""
        return None if self.value_field is None else getattr(self, self.value_field)

    def with_value(self, value: torch.Tensor) -> Op:
        """A copy carrying ``value`` (the planner binds a checked ``[N, D]`` value this way)."""
        return replace(self, **{self.value_field: value})

    @classmethod
    def fuse(cls, ops: Sequence[Op]) -> Op:
        """One op for ``ops`` (consecutive, on disjoint rows): their bound values concatenated."""
        device = ops[-1].value_of().device
        return ops[-1].with_value(torch.cat([op.value_of().to(device) for op in ops]))

    def fresh(self) -> Op:
        """The op for one compiled intervention (ops with per-call state return a copy)."""
        return self

    def replay(self, first_iteration: int) -> Op:
        """For ``replays`` ops: the op applied at the later block calls, from ``first_iteration`` on."""
        raise NotImplementedError(f"{type(self).__name__} declares replays=True: return the op that replays it")


@dataclass
class OpContext:
    """What an op may need besides the selected states.

    Attributes:
        hidden: the full ``[B, T, D]`` tensor at the site.
        rows: ``[N]`` batch rows of the selected states; ``positions``: ``[N]`` their indices into T.
        mask: ``[B, T]`` attention mask of the current forward (1 = real token).
        layer, iteration: where we are (iteration > 0 only inside a looped block).
    """

    hidden: Hidden
    rows: Index
    positions: Index
    mask: Mask
    layer: int
    iteration: int


@dataclass
class SetOp(Op):
    """Replace the states by ``value`` (``[N, D]`` once compiled)."""

    value: torch.Tensor
    value_field = "value"
    value_shape = "per_state"
    fusable = True

    def transform(self, states, context):
        return self.value.to(states.device, states.dtype).expand_as(states)


@dataclass
class AddOp(Op):
    """Add ``scale * vector`` (steering)."""

    vector: Vector
    scale: float = 1.0
    value_field = "vector"

    def transform(self, states, context):
        return states + self.scale * self.vector.to(states.device, states.dtype)


class ZeroOp(Op):
    def transform(self, states, context):
        return torch.zeros_like(states)


@dataclass
class MeanOp(Op):
    """Replace by a given ``[D]`` mean (e.g. over a dataset), or else by the mean over the same
    prompt's real tokens at that site (per row, so a variant never depends on its batch-mates)."""

    value: torch.Tensor | None = None
    value_field = "value"

    def transform(self, states, context):
        if self.value is not None:
            return self.value.to(states.device, states.dtype).expand_as(states)
        mask = context.mask.to(states.dtype).unsqueeze(-1)  # [B, T, 1]
        row_means = (context.hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, D]
        return row_means[context.rows]


@dataclass
class RandomOp(Op):
    """Gaussian vectors rescaled to each replaced state's L2 norm (seeded, so reproducible).

    ``seeding``: ``"layerscope"`` (per row, one draw) or ``"authors"`` (their calls, see ``engine/seeding.py``).
    """

    seed: int = 0
    seeding: str = "layerscope"

    def __post_init__(self):
        check_seed(self.seed)
        check_seeding(self.seeding)

    def transform(self, states, context):
        if self.seeding == "authors":
            tokens = token_index(context.rows, context.positions, context.mask)
            return authors_random(states, context.rows, tokens, self.seed)
        noise = draw_per_row(
            states.shape,
            context.rows,
            self.seed,
            states.device,
            lambda shape, g: torch.randn(shape, generator=g, device=states.device),
        ).to(states.dtype)
        return noise * (states.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True))


@dataclass
class ShuffleOp(Op):
    """Permute the hidden dimensions of each state with its own seeded random permutation.

    ``seeding="authors"``: their permutation, seeded by (layer x token index), see ``engine/seeding.py``.
    """

    seed: int = 0
    seeding: str = "layerscope"

    def __post_init__(self):
        check_seed(self.seed)
        check_seeding(self.seeding)

    def transform(self, states, context):
        if self.seeding == "authors":
            return authors_shuffle(states, token_index(context.rows, context.positions, context.mask), context.layer)
        keys = draw_per_row(
            states.shape,
            context.rows,
            self.seed,
            states.device,
            lambda shape, g: torch.rand(shape, generator=g, device=states.device),
        )
        return states.gather(-1, keys.argsort(dim=-1))


@dataclass
class FunctionOp(Op):
    """Any user function ``fn(states [N, D], context) -> [N, D]``."""

    fn: Callable[[torch.Tensor, OpContext], torch.Tensor]

    def transform(self, states, context):
        out = self.fn(states, context)
        if not isinstance(out, torch.Tensor) or out.shape != states.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise SiteError(f"intervention function must return a tensor of shape {tuple(states.shape)}, got {got}")
        return out


@dataclass
class FreezeOp(Op):
    """Freeze: the states entering block k are fed unchanged to every block >= k.

    Compiled into a *record* at ``resid_pre[k]`` (at one iteration: the intervention's ``loop``, or
    0) and a *replay* at every later block call in execution order: ``resid_pre[j]`` for j > k and,
    when k is inside a looped block, blocks ``a..k`` on the later iterations too (so block k itself
    also gets the frozen states when it runs again).
    """

    slot: dict = field(default_factory=dict)
    replays = True

    def fresh(self) -> FreezeOp:
        # a private slot per compiled intervention: one freeze object shared by several
        # variants must not hand one variant's recorded states to another
        return replace(self, slot={})

    def replay(self, first_iteration: int) -> FreezeReplayOp:
        return FreezeReplayOp(self, first_iteration)

    def transform(self, states, context):  # the record half (compiled for one iteration); replay is FreezeReplayOp
        self.slot["states"] = states
        return states


@dataclass
class FreezeReplayOp(Op):
    """Write the recorded states back, from iteration ``first_iteration`` of this block on."""

    source: FreezeOp
    first_iteration: int = 0

    def transform(self, states, context):
        if context.iteration < self.first_iteration:
            return states
        return self.source.slot.get("states", states)


@dataclass(frozen=True)
class Intervention:
    """An op at ``site`` for ``layers`` and ``positions``.

    Attributes:
        site: one of :data:`SITES`.
        layers: int (negative from the end), slice, list, ``"all"`` or ``"k:"`` style string.
        positions: a position spec (see ``engine/positions.py``).
        op: what to do.
        rows: batch rows it applies to (None = all; set by batched variants).
        loop: iteration of a looped block it applies to (None = every iteration).
    """

    site: str
    layers: LayerSpec
    positions: PositionSpec
    op: Op
    rows: tuple[int, ...] | None = None
    loop: int | None = None

    def __post_init__(self):
        if not isinstance(self.site, str) or self.site not in SITES:
            raise SiteError(f"unknown site {self.site!r}: use one of {', '.join(SITES)}")
        if self.loop is not None and (not is_int(self.loop) or self.loop < 0):
            raise InterventionError(f"loop (the iteration of a looped block) must be an int >= 0, got {self.loop!r}")

    def on_rows(self, rows: Sequence[int]) -> Intervention:
        return Intervention(self.site, self.layers, self.positions, self.op, tuple(rows), self.loop)


# ---- public constructors -------------------------------------------------------------------


def patch(
    site: str,
    layer: LayerSpec,
    positions: PositionSpec,
    value: torch.Tensor,
    mapping: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Intervention:
    """Set the states at ``site``/``layer``/``positions`` to ``value`` (or ``mapping(value)``).

    ``value`` is ``[D]`` (broadcast), ``[P, D]`` (one per resolved position, same for every row),
    or ``[N, D]`` (one per selected (row, position) pair). To patch from another run, pass
    ``other_run.state(site, layer, positions)``; from another model with another hidden size, pass a
    ``mapping`` (e.g. a fitted affine map) that takes ``[..., D_source]`` to ``[..., D]``.
    """
    value = _as_value(value, "patch value")
    if mapping is not None:
        value = _as_value(mapping(value), "patch value after mapping")
    return Intervention(site, layer, positions, SetOp(value))


def _as_value(value, what: str) -> torch.Tensor:
    """``value`` as a float tensor (not a scalar), or an :class:`InterventionError` that says what it is;
    its shape is checked against the selection when the plan is compiled."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise InterventionError(f"{what} must be a tensor of states, got {type(value).__name__}") from None
    if tensor.dim() == 0:
        raise InterventionError(f"{what} is a scalar ({float(tensor):g}): give a [D] vector, or [P, D] / [N, D] states")
    if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
        tensor = tensor.float()
    return tensor


def add(site: str, layer: LayerSpec, positions: PositionSpec, vector: torch.Tensor, scale: float = 1.0) -> Intervention:
    """Add ``scale * vector`` (``[D]``) to the states (steering)."""
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise InterventionError(f"scale must be a number, got {scale!r}")
    return Intervention(site, layer, positions, AddOp(_as_value(vector, "steering vector"), float(scale)))


def zero(site: str, layer: LayerSpec, positions: PositionSpec = "all") -> Intervention:
    return Intervention(site, layer, positions, ZeroOp())


def mean(
    site: str, layer: LayerSpec, positions: PositionSpec = "all", value: torch.Tensor | None = None
) -> Intervention:
    """Mean ablation: a given ``[D]`` mean, or else the mean over each prompt's own real tokens."""
    return Intervention(site, layer, positions, MeanOp(None if value is None else _as_value(value, "mean value")))


def random(
    site: str, layer: LayerSpec, positions: PositionSpec = "previous", seed: int = 0, seeding: str = "layerscope"
) -> Intervention:
    """Replace by Gaussian noise rescaled to each state's norm (``seeding``: see ``engine/seeding.py``)."""
    return Intervention(site, layer, positions, RandomOp(seed, seeding))


def shuffle(
    site: str, layer: LayerSpec, positions: PositionSpec = "previous", seed: int = 0, seeding: str = "layerscope"
) -> Intervention:
    """Permute each state's dimensions (``seeding``: see ``engine/seeding.py``)."""
    return Intervention(site, layer, positions, ShuffleOp(seed, seeding))


def freeze(layer: int, positions: PositionSpec = "previous") -> Intervention:
    """Feed the states entering block ``layer`` unchanged to every later block (at ``positions``)."""
    if not is_int(layer):
        raise SiteError(f"freeze needs one int layer, got {layer!r}")
    return Intervention("resid_pre", layer, positions, FreezeOp())


def skip_attention(from_layer: int, positions: PositionSpec = "all") -> Intervention:
    """Drop the attention sub-block (its output is zero) in blocks ``from_layer..L-1``."""
    if not is_int(from_layer):
        raise SiteError(f"skip_attention needs an int layer, got {from_layer!r}")
    return Intervention("attn_out", f"{from_layer}:", positions, ZeroOp())


def apply(site: str, layer: LayerSpec, positions: PositionSpec, fn: Callable) -> Intervention:
    """Apply any ``fn(states [N, D], context) -> [N, D]``."""
    if not callable(fn):
        raise InterventionError(f"apply needs a function fn(states, context), got {type(fn).__name__}")
    return Intervention(site, layer, positions, FunctionOp(fn))
