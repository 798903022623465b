"""The Patchscope knob of ``patchscope`` under each recipe: the paper's text vs the authors' ``patchscopes_utils.py``.

===============  ==================================  =======================================  =================
knob             ``paper`` (default)                 ``authors``                              CLI flag
===============  ==================================  =======================================  =================
``source_last``  ``pre-norm``: h = ``resid_post[l]``  ``post-norm``: h = HF's                  ``--source-last``
                 at every l, the last one too        ``hidden_states[l + 1]``, the last one
                                                     after the final norm
===============  ==================================  =======================================  =================

The authors' ``inspect`` reads ``output["hidden_states"][layer_source + 1]`` and patches it into the
output of block l*; when l = l* = the last layer (same model) they patch the output of the final norm
instead (``skip_final_ln``), which gives the same logits as patching ``resid_post[L-1]`` pre-norm (the
norm is per position), so only pairs (L-1, l*) with l* < L-1, or another target model, differ.
Everything else of their ``inspect`` (patch the output of block l*, in the prompt pass only, greedy
generation) is what :func:`~layerscope.methods.patchscopes.core.patchscope` does under both recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from layerscope.recipes import resolve

KNOBS: dict[str, dict[str, Any]] = {"source_last": {"paper": "pre-norm", "authors": "post-norm"}}
"""knob -> value under each recipe (see the module table)."""

SOURCE_LAST = ("pre-norm", "post-norm")

__all__ = ["KNOBS", "SOURCE_LAST", "knobs", "last_layer_mapping"]


def knobs(recipe: str = "paper", **overrides: Any) -> dict[str, Any]:
    """The knob values a run uses: ``recipe``'s, with every non-None override in its place."""
    return resolve(recipe, KNOBS, {"source_last": SOURCE_LAST}, **overrides)


def last_layer_mapping(
    model, target_model, pairs: Sequence[tuple[int, int]], mapping, source_last: str
) -> dict[tuple[int, int], Callable | None] | Callable | None:
    """``mapping`` with the source model's final norm in front of it for the pairs the authors read post-norm.

    ``pairs``: the (l, l*) pairs of the run; ``mapping``: None, a callable ``[N, D] -> [N, D*]`` or
    ``{(l, l*): callable}``. Under ``source_last="post-norm"`` every pair (L-1, l*) but (L-1, L-1)
    within one model gets ``mapping(final_norm(h))``; anything else is returned unchanged.
    """
    from layerscope.methods.patchscopes.core import _mapping_for

    last, norm = model.n_layers - 1, model.adapter.final_norm
    same = target_model is model
    normed = [p for p in pairs if p[0] == last and not (same and p[1] == last)]
    if source_last == "pre-norm" or norm is None or not normed:
        return mapping

    def through_norm(f: Callable | None) -> Callable:
        def read(h: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, D*]
            with torch.no_grad():
                h = norm(h)
            return h if f is None else f(h)

        return read

    return {p: through_norm(_mapping_for(mapping, p)) if p in normed else _mapping_for(mapping, p) for p in pairs}
