"""Figures: matplotlib without a display, and one atomic PNG writer every method's plots use."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from layerscope.results.io import atomic_write  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path: str | os.PathLike, suptitle: str | None = None) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically) and close it; ``suptitle``: the figure's title,
    laid out with ``tight_layout`` (the multi-panel plots)."""
    if suptitle is not None:
        fig.suptitle(suptitle)
        fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
