"""Recipes: which reading of a paper a method follows, ``paper`` (its text) or ``authors`` (their code).

Where a paper's text and its authors' published code disagree (METHODS.md's "decision" lines),
each method keeps one table of *knobs*: the knob's name and its value under each recipe.  A run
picks a recipe (``paper`` by default) and may still set any knob on its own; :func:`resolve`
returns the values the run uses, which the method writes into its rows (so a table always says
which experiment it is).  The README's fidelity table lists every knob with its flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from layerscope.errors import LayerscopeError
from layerscope.names import canonical_name

RECIPES = ("paper", "authors")
"""``paper``: the papers' text as METHODS.md states it (default); ``authors``: the authors' code."""

__all__ = ["RECIPES", "canonical_recipe", "resolve"]


def canonical_recipe(name: str) -> str:
    """``"paper"`` or ``"authors"``; anything else raises a :class:`LayerscopeError` naming both."""
    return canonical_name(name, RECIPES, what="recipe")


def resolve(
    recipe: str,
    knobs: Mapping[str, Mapping[str, Any]],
    choices: Mapping[str, Sequence[Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The knob values of ``recipe``, each replaced by its override where that is not None.

    ``knobs`` maps a knob to ``{"paper": value, "authors": value}``; an override for a name that is
    not a knob is a programming error (``KeyError``). ``choices`` maps a knob to the values it may
    take: any other value is a :class:`LayerscopeError` naming them.
    """
    recipe = canonical_recipe(recipe)
    unknown = set(overrides) - set(knobs)
    if unknown:
        raise KeyError(f"not a knob: {', '.join(sorted(unknown))}")
    values = {name: by_recipe[recipe] for name, by_recipe in knobs.items()}
    values.update({name: value for name, value in overrides.items() if value is not None})
    for name, allowed in (choices or {}).items():
        if values[name] not in allowed:
            raise LayerscopeError(f"{name} must be one of {', '.join(allowed)}, got {values[name]!r}")
    return {"recipe": recipe, **values}
