"""The public ``sweep_task``: :func:`layerscope.methods.attend.sweep.sweep_task` with the ``seeding`` knob.

``seeding`` (``--seeding``; ``recipe="authors"`` sets ``"authors"``) says how random and shuffle draw:
``"layerscope"`` (one draw per row from ``seed``) or ``"authors"`` (the authors' generator calls,
``engine/seeding.py``). ``sweep.py`` builds its variants through
:func:`layerscope.methods.attend.manipulations.manipulation`, which reads the seeding of the enclosing
:func:`~layerscope.methods.attend.manipulations.seeding` block; once ``sweep.py`` takes the knob itself,
this module reduces to that one argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from layerscope.methods.attend import sweep
from layerscope.methods.attend.manipulations import seeding as seeding_block
from layerscope.methods.attend.recipes import knobs
from layerscope.methods.attend.tasks import Item

__all__ = ["sweep_task"]


def sweep_task(
    model,
    items: Sequence[Item],
    manipulations: Sequence[str] = ("random",),
    layers="all",
    *,
    recipe: str = "paper",
    seeding: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Accuracy and mean answer probability per (k, manipulation), manipulating from k on.

    Every argument but ``seeding`` is :func:`layerscope.methods.attend.sweep.sweep_task`'s (its doc
    lists them and the rows); ``seeding`` (None = the recipe's) is recorded in a ``seeding`` column.
    """
    used = knobs(recipe, seeding=seeding)
    with seeding_block(used["seeding"]):
        table = sweep.sweep_task(model, items, manipulations, layers, recipe=recipe, **options)
    table["seeding"] = used["seeding"]
    return table
