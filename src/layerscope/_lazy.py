"""Names a package exports, imported on first use (PEP 562).

``layerscope --help`` and ``layerscope models`` must answer in well under a second, so importing a
package (which Python does for every module below it, the CLI's included) must not import torch,
transformers, pandas or matplotlib; the names are imported when they are first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to ``"module"`` (the name is
    that module) or ``"module:attribute"``; a looked-up name is cached in the package."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        value = importlib.import_module(module)
        if attribute:
            value = getattr(value, attribute)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
