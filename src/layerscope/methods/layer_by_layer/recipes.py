"""The Layer-by-Layer knobs under each recipe: the paper's text vs the authors' ``metric_utils.py``.

=====================  ==========================  ==============================  ======================
knob                   ``paper`` (default)         ``authors``                     CLI flag
=====================  ==========================  ==============================  ======================
``pooling``            mean of raw states          mean of centred, row-normalised  ``--pooling``
                                                   tokens (``normalized-mean``)
``clamp_gram``         no clamp                    Gram clamped to >= 0             ``--clamp-gram``
``curvature``          angle of consecutive        angle of consecutive centred,    ``--curvature``
                       steps (``trajectory``)      normalised tokens (``token-angle``)
``curvature_k``        1                           1 (they also report 2 and 5)     ``--curvature-k``
``dime_normalization`` raw                         ``max`` (their plots' reading)   ``--dime-normalization``
``last_depth``         pre-norm ``resid_post[L-1]``  HF's post-norm last state      ``--last-depth``
=====================  ==========================  ==============================  ======================

``pooling`` applies to every dataset-level metric (dataset entropy, effective rank, InfoNCE, LiDAR,
DiME); ``clamp_gram`` to prompt entropy, dataset entropy and effective rank.

The per-layer probe (:func:`~layerscope.methods.layer_by_layer.probing.probe_layers`, ``layerscope probe``)
has its own table, :data:`PROBE_KNOBS`, read from the authors' MTEB wrapper
(``experiments/utils/model_definitions/text_automodel_wrapper.py``):

==============  ===============================  ==================================  ================
knob            ``paper`` (default)              ``authors``                         CLI flag
==============  ===============================  ==================================  ================
``final_norm``  ``none``: the residual stream    ``every``: each depth through the   ``--final-norm``
                at every depth (pre-norm)        final norm (their model is loaded
                                                 with ``num_hidden_layers = l`` and
                                                 read at its last hidden state)
==============  ===============================  ==================================  ================

Their pooling is the paper's (the mean of the raw states over real tokens), so ``pooling`` is no
probe knob; their MTEB classifiers and float16 weights are not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layerscope.errors import LayerscopeError
from layerscope.recipes import resolve

KNOBS: dict[str, dict[str, Any]] = {
    "pooling": {"paper": "mean", "authors": "normalized-mean"},
    "clamp_gram": {"paper": False, "authors": True},
    "curvature": {"paper": "trajectory", "authors": "token-angle"},
    "curvature_k": {"paper": (1,), "authors": (1,)},
    "dime_normalization": {"paper": "raw", "authors": "max"},
    "last_depth": {"paper": "pre-norm", "authors": "post-norm"},
}
"""knob -> value under each recipe (see the module table)."""

PROBE_KNOBS: dict[str, dict[str, Any]] = {"final_norm": {"paper": "none", "authors": "every"}}
"""The probe's knob -> value under each recipe (see the module's second table)."""

LAST_DEPTHS = ("pre-norm", "post-norm")
CURVATURES = ("trajectory", "token-angle")

__all__ = ["CURVATURES", "KNOBS", "LAST_DEPTHS", "PROBE_KNOBS", "knobs", "parse_ks", "probe_knobs"]


def parse_ks(ks: int | str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,2,5"`` / ``[1, 2, 5]`` / ``2`` -> ``(1, 2, 5)`` / ``(2,)``; None stays None."""
    if ks is None:
        return None
    if isinstance(ks, str):
        try:
            ks = [int(part) for part in ks.split(",") if part.strip()]
        except ValueError:
            raise LayerscopeError(f"curvature k must be comma-separated integers, got {ks!r}") from None
    elif isinstance(ks, int):
        ks = [ks]
    out = tuple(dict.fromkeys(int(k) for k in ks))
    if not out or any(k < 1 for k in out):
        raise LayerscopeError(f"curvature k must be integers >= 1, got {ks!r}")
    return out


def knobs(recipe: str = "paper", **overrides: Any) -> dict[str, Any]:
    """The knob values a run uses: ``recipe``'s, with every non-None override in its place."""
    if "curvature_k" in overrides:
        overrides["curvature_k"] = parse_ks(overrides["curvature_k"])
    return resolve(recipe, KNOBS, {"last_depth": LAST_DEPTHS, "curvature": CURVATURES}, **overrides)


def probe_knobs(recipe: str = "paper", **overrides: Any) -> dict[str, Any]:
    """The probe's knob values: ``recipe``'s from :data:`PROBE_KNOBS`, with every non-None override."""
    from layerscope.methods.layer_by_layer.states import FINAL_NORMS

    return resolve(recipe, PROBE_KNOBS, {"final_norm": FINAL_NORMS}, **overrides)
