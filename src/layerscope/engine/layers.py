"""Layer specs: the one parser of layerscope's layers (every method and CLI option reads them here).

A spec is an int (negative from the end), a slice or range, a list of ints, or a string: ``"all"``,
``"5"``, ``"a:b"``, ``"a:b:step"``, ``"a,b,c"``. Every bound is checked against the model like a
single layer, so ``25:40`` of a 30-layer model is an error (as ``30`` is) instead of a silent clip,
and anything else (floats, bools, an empty list, step 0) is a :class:`SiteError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from layerscope.errors import SiteError

LayerSpec = int | slice | range | Sequence[int] | str

__all__ = ["LayerSpec", "is_int", "resolve_layers"]


def resolve_layers(spec: LayerSpec, n_layers: int, *, sorted_unique: bool = False) -> list[int]:
    """Resolve a layer spec to indices ``0..n_layers-1``; errors name the valid range.

    The one layer parser of layerscope (every method and CLI option reads layers through it).
    ``sorted_unique``: ascending and without repeats (the k values of a sweep), else as given.
    """
    layers = _resolve_layers(spec, n_layers)
    return sorted(set(layers)) if sorted_unique else layers


def _resolve_layers(spec: LayerSpec, n_layers: int) -> list[int]:
    valid = f"valid layers are 0..{n_layers - 1} (or -{n_layers}..-1 from the end)"
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return list(range(n_layers))
        try:
            parts = [int(t) if t.strip() else None for t in text.split(":")] if ":" in text else None
            numbers = [int(t) for t in text.split(",")] if parts is None else []
            if parts is not None and len(parts) > 3:
                raise ValueError(text)
        except ValueError:
            raise SiteError(
                f"cannot read layers {spec!r}: use 'all', an int, 'a:b', 'a:b:step' or 'a,b,c'; {valid}"
            ) from None
        if parts is not None:
            return _slice_layers(slice(*parts), n_layers, spec)
        return [_check_layer(i, n_layers) for i in numbers]
    if isinstance(spec, slice):
        return _slice_layers(spec, n_layers, spec)
    if isinstance(spec, range):
        if not spec:
            raise SiteError(f"layers {spec!r} select no layer; {valid}")
        return [_check_layer(i, n_layers) for i in spec]
    if is_int(spec):
        return [_check_layer(spec, n_layers)]
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) == 0:
            raise SiteError(f"the layer list is empty: give at least one layer; {valid}")
        return [_check_layer(i, n_layers) for i in spec]
    raise SiteError(f"cannot read layers {spec!r}: use an int, a slice, a list of ints, 'all', 'a:b' or 'a,b,c'")


def is_int(value) -> bool:
    """An int (numpy and torch integer scalars too), never a bool or a float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, *_np_integer())):
        return True
    return isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_floating_point


def _np_integer() -> tuple[type, ...]:
    try:
        import numpy as np
    except ImportError:
        return ()
    return (np.integer,)


def _slice_layers(spec: slice, n_layers: int, shown) -> list[int]:
    """A layer slice, its bounds checked like single layers: ``25:40`` of 30 layers is an error
    (as ``30`` is), not silently ``25:30``; ``a:`` and ``:b`` stay open-ended."""
    valid = f"valid layers are 0..{n_layers - 1} (or -{n_layers}..-1 from the end)"
    for name, bound in (("start", spec.start), ("stop", spec.stop), ("step", spec.step)):
        if bound is not None and not is_int(bound):
            raise SiteError(f"the layer {name} in {shown!r} must be an int, got {bound!r}")
    if spec.step is not None and spec.step < 1:
        raise SiteError(f"the layer step in {shown!r} must be >= 1")
    for name, bound in (("start", spec.start), ("stop", spec.stop)):
        if bound is not None and not -n_layers <= bound <= n_layers:
            raise SiteError(f"the layer {name} in {shown!r} is beyond the model: it has {n_layers} layers; {valid}")
    layers = list(range(n_layers))[spec]
    if not layers:
        raise SiteError(f"layers {shown!r} select no layer; {valid}")
    return layers


def _check_layer(layer: int, n_layers: int) -> int:
    if not is_int(layer):
        raise SiteError(f"layer must be an int, got {layer!r}")
    layer = int(layer)
    if not -n_layers <= layer < n_layers:
        raise SiteError(
            f"layer {layer} does not exist: the model has {n_layers} layers; valid layers are "
            f"0..{n_layers - 1} (or -{n_layers}..-1 from the end)"
        )
    return layer % n_layers
