"""What a run returns: logits, captured states, and the batch they belong to."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from layerscope.engine.batch import Batch
from layerscope.engine.positions import PositionSpec
from layerscope.engine.shapes import Hidden, Logits, Stacked
from layerscope.errors import ResultError, SiteError


@dataclass
class RunResult:
    """The outcome of one forward pass.

    Attributes:
        batch: the (left-padded) batch; row ``p * V + v`` is prompt p, variant v.
        logits: ``[B, T', V]`` (T' = T, or 1 with ``logits="last"``), or None for encoders.
        cache: captured states ``{(site, layer, iteration): [B, T, D]}``.
        past_key_values: the KV cache when the run kept it (for prefix reuse / generation).
        offset: number of leading positions that came from a reused KV prefix (not in ``cache``).
        n_variants: V, the number of variants per prompt.
    """

    batch: Batch
    logits: Logits | None
    cache: dict[tuple[str, int, int], Hidden] = field(default_factory=dict)
    past_key_values: object | None = None
    offset: int = 0
    n_variants: int = 1
    capture_positions: PositionSpec | None = None
    #: the model's layer count (negative layers in :meth:`get` count back from it; None: not known)
    n_layers: int | None = None

    def __repr__(self) -> str:
        """Shapes and keys, never the tensors: ``RunResult(batch=[3, 7], logits=[3, 7, 49152], ...)``."""
        sites: dict[str, list[int]] = {}
        for site, layer, _ in self.cache:
            sites.setdefault(site, []).append(layer)
        captured = ", ".join(f"{site}[{_layers(layers)}]" for site, layers in sites.items())
        first = next(iter(self.cache.values()), None)
        parts = [
            f"batch=[{self.batch.size}, {self.batch.length}]",
            f"logits={_shape(self.logits)}",
            f"cache={{{captured}}}" + (f" of {_shape(first)}" if first is not None else ""),
        ]
        if self.n_variants != 1:
            parts.append(f"variants={self.n_variants}")
        if self.offset:
            parts.append(f"offset={self.offset}")
        if self.past_key_values is not None:
            parts.append("past_key_values=kept")
        return f"RunResult({', '.join(parts)})"

    def select_rows(self, rows: slice, from_layer: int = 0) -> RunResult:
        """The result of ``rows`` only (a staggered run's rows of one start layer).

        Captures below ``from_layer`` are dropped: in a staggered run they hold only the rows that
        had started by then.
        """
        return RunResult(
            batch=self.batch.select(rows),
            logits=None if self.logits is None else self.logits[rows],
            cache={key: states[rows] for key, states in self.cache.items() if key[1] >= from_layer},
            offset=self.offset,
            n_variants=rows.stop - rows.start,
            capture_positions=self.capture_positions,
            n_layers=self.n_layers,
        )

    def get(self, site: str, layer: int, iteration: int = 0) -> Hidden:
        """Captured ``[B, T, D]`` states at a site; a clear error if it was not captured.

        ``layer`` is an int; a negative one counts from the end, as everywhere in layerscope.
        """
        layer, iteration = self._check_key(site, layer, iteration)
        try:
            return self.cache[(site, layer, iteration)]
        except KeyError:
            have = sorted({(s, l) for s, l, _ in self.cache})
            raise SiteError(
                f"{site}[{layer}] (iteration {iteration}) was not captured; pass capture=[{site!r}] "
                f"(captured: {have[:6]}{' ...' if len(have) > 6 else ''})"
            ) from None

    def _check_key(self, site, layer, iteration) -> tuple[int, int]:
        """Refuse a key that cannot name a capture (a string layer, a negative one the result cannot
        place) with the reason, instead of a false "was not captured"."""
        from layerscope.engine.interventions import SITES
        from layerscope.engine.layers import is_int

        if not isinstance(site, str) or site not in SITES:
            raise SiteError(f"unknown site {site!r}: use one of {', '.join(SITES)}")
        if not is_int(layer):
            raise SiteError(f"layer must be an int, got {layer!r}" + (" (a string)" if isinstance(layer, str) else ""))
        if not is_int(iteration) or iteration < 0:
            raise SiteError(f"iteration must be an int >= 0, got {iteration!r}")
        layer = int(layer)
        if layer < 0:
            if self.n_layers is None:
                raise SiteError(
                    f"layer {layer} counts from the end, but this result does not know the model's layer count: "
                    "pass model.n_layers + layer"
                )
            if layer < -self.n_layers:
                raise SiteError(f"layer {layer} does not exist: the model has {self.n_layers} layers")
            layer += self.n_layers
        return layer, int(iteration)

    def stack(self, site: str, layers: list[int] | None = None, iteration: int = 0) -> Stacked:
        """``[L', B, T, D]`` states of ``site`` over ``layers`` (default: every captured layer)."""
        if layers is None:
            layers = sorted(l for s, l, i in self.cache if s == site and i == iteration)
        if not layers:
            raise SiteError(f"no {site} states were captured; pass capture=[{site!r}]")
        return torch.stack([self.get(site, l, iteration) for l in layers])

    def state(self, site: str, layer: int, positions: PositionSpec = "all", row: int = 0) -> torch.Tensor:
        """``[P, D]`` states of one row at positions given relative to its prompt (for patching)."""
        if self.capture_positions is not None or self.offset:
            raise SiteError("state() needs a full capture without prefix reuse; index result.cache directly")
        index = self.batch.positions(positions, row)
        return self.get(site, layer)[row, index]

    def grad(self, site: str, layer: int, iteration: int = 0) -> torch.Tensor:
        """``[B, T, D]`` gradient of a captured state after ``backward()`` (a run with ``grad=True``)."""
        states = self.get(site, layer, iteration)
        if states.grad is None:
            raise SiteError(
                f"{site}[{layer}] has no gradient: run with grad=True and call backward() on something that "
                "depends on it"
            )
        return states.grad

    @property
    def last_logits(self) -> Logits:
        """``[B, V]`` logits at each row's last real token (index T-1: the batch is left-padded)."""
        if self.logits is None:
            raise ResultError("this run has no logits (an encoder, or logits=None): run with logits='last' or 'all'")
        return self.logits[:, -1]

    def iterations(self, site: str) -> list[tuple[int, int]]:
        """(layer, iteration) pairs captured at ``site``, in execution order (for looped runs)."""
        keys = [(l, i) for s, l, i in self.cache if s == site]
        return keys  # dict insertion order is execution order


def _shape(tensor: torch.Tensor | None) -> str:
    return "None" if tensor is None else str(list(tensor.shape))


def _layers(layers: list[int]) -> str:
    """``[0, 1, 2, 3, 5]`` -> ``"0..3,5"`` (a repr stays one line for a 30-layer capture)."""
    runs, out = sorted(set(layers)), []
    start = prev = None
    for layer in [*runs, None]:
        if start is not None and (layer is None or layer != prev + 1):
            out.append(str(start) if start == prev else f"{start}..{prev}")
            start = None
        if layer is not None and start is None:
            start = layer
        prev = layer
    return ",".join(out)
