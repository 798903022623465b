"""The Attend-first knobs under each recipe: the paper's text vs the authors' ``llama_manipulate.py``.

==================  =================================  ====================================  ==================
knob                ``paper`` (default)                ``authors``                           CLI flag
==================  =================================  ====================================  ==================
``once``            switch patched at every layer >= k  switch patched at ``resid_pre[k]``    ``--once``
                                                       only
``freeze_index``    ``ours``: freeze ``resid_pre[k]``   ``authors``: their k saves the input   ``--freeze-index``
                                                       of block k-1 (= our freeze(k-1)); no
                                                       k = 0
``skip_positions``  ``previous`` (every token but the   ``all`` (the last token too)           ``--skip-positions``
                    last)
``seeding``         ``layerscope``: one draw per row     ``authors``: their generator calls     ``--seeding``
                    from ``seed``                       (random: per token from ``seed``;
                                                       shuffle: ``manual_seed(k * token)``)
==================  =================================  ====================================  ==================

``seeding`` is not a disagreement of the paper and the code (the paper does not say how it draws):
``paper`` keeps our per-row draws, ``authors`` reproduces their random vectors and permutations
draw for draw (``engine/seeding.py``) for each scored prompt.
"""

from __future__ import annotations

from typing import Any

from layerscope.recipes import resolve

KNOBS: dict[str, dict[str, Any]] = {
    "once": {"paper": False, "authors": True},
    "freeze_index": {"paper": "ours", "authors": "authors"},
    "skip_positions": {"paper": "previous", "authors": "all"},
    "seeding": {"paper": "layerscope", "authors": "authors"},
}
"""knob -> value under each recipe (see the module table)."""

FREEZE_INDICES = ("ours", "authors")
SKIP_POSITIONS = ("previous", "all")

__all__ = ["FREEZE_INDICES", "KNOBS", "SKIP_POSITIONS", "knobs"]


def knobs(recipe: str = "paper", **overrides: Any) -> dict[str, Any]:
    """The knob values a run uses: ``recipe``'s, with every non-None override in its place."""
    values = resolve(recipe, KNOBS, {"freeze_index": FREEZE_INDICES, "skip_positions": SKIP_POSITIONS}, **overrides)
    from layerscope.engine.seeding import check_seeding  # the engine owns the seedings (and imports torch)

    check_seeding(values["seeding"])
    return values
