"""The methods, one package each, and the one registry the CLI and the demo read.

A method package holds its API (re-exported by its ``__init__``), ``cli.py`` with
``register(command)`` (its commands), ``plots.py`` and ``report.py`` with ``DEMO_SECTIONS``
(``[(name, function(model, report, out_dir) -> rows)]``). A method imports the engine, ``readout``,
``metrics`` and ``results``, never another method (``tests/test_layout.py`` checks it).

Adding a method: write the package, then add its name to :data:`METHODS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

#: registered methods, in the order of ``layerscope --help`` and of the demo's sections
METHODS: tuple[str, ...] = ("lens", "layer_by_layer", "patchscopes", "attend", "loops", "patching")

__all__ = ["METHODS", "claims", "cli_module", "demo_sections", "method"]


def method(name: str) -> ModuleType:
    """The package of method ``name`` (imported on first use)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}: registered are {', '.join(METHODS)}")
    return importlib.import_module(f"layerscope.methods.{name}")


def cli_module(name: str) -> ModuleType:
    """Method ``name``'s ``cli`` module: its ``register(command)`` adds its commands."""
    method(name)  # an unknown name fails with the list of registered ones
    return importlib.import_module(f"layerscope.methods.{name}.cli")


def demo_sections() -> list[tuple[str, Callable]]:
    """Every registered method's demo sections, in registry order."""
    found: list[tuple[str, Callable]] = []
    for name in METHODS:
        report = importlib.import_module(f"layerscope.methods.{name}.report")
        found += list(report.DEMO_SECTIONS)
    return found


def claims(names: tuple[str, ...] | list[str] | None = None) -> list:
    """The headline claims (:class:`layerscope.results.claims.Claim`) of the methods ``names`` (default:
    every registered method with a ``claims`` module), in registry order."""
    found: list = []
    for name in METHODS if names is None else names:
        method(name)
        try:
            module = importlib.import_module(f"layerscope.methods.{name}.claims")
        except ModuleNotFoundError as error:
            if error.name != f"layerscope.methods.{name}.claims":
                raise
            continue
        found += list(module.CLAIMS)
    return found
