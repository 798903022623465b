"""Figures: matplotlib without a display, and one atomic PNG writer every method's plots use."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from layerscope.results.io import atomic_write  # noqa: E402

__all__ = ["UNIT", "chance_line", "clipped_errors", "integer_ticks", "plt", "save_figure", "unit_interval"]

#: the colour scale of every heatmap of accuracies or probabilities: fixed, so that two plots compare
UNIT = {"vmin": 0.0, "vmax": 1.0}


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks at whole numbers only (layers, depths, loop counts: never ``2.5``)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def unit_interval(ax) -> None:
    """A y axis from 0 to 1 (accuracies, probabilities), with a little room for markers."""
    ax.set_ylim(-0.02, 1.02)


def clipped_errors(mean, std):
    """``yerr`` for ``errorbar``: ``mean +- std`` cut to [0, 1] (an accuracy above 1 is no result)."""
    import numpy as np

    mean, std = np.asarray(mean, dtype=float), np.nan_to_num(np.asarray(std, dtype=float))
    return np.stack([mean - np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1) - mean])


def chance_line(ax, level: float | None, label: str = "chance") -> None:
    """A dashed horizontal line at the score of always answering the most frequent class."""
    if level is not None and level == level:  # not None, not NaN
        ax.axhline(level, color="grey", linestyle=":", linewidth=1.2, label=f"{label} ({level:.2f})")


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
