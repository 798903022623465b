"""Plots of activation patching: the (layer, position) grid."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.readout.tokens import quoted
from layerscope.results.figures import plt, save_figure


def patching_heatmap(table: pd.DataFrame, path: str | os.PathLike, title: str = "Activation patching") -> Path:
    """Heatmap of ``value`` per (layer, position) of an activation-patching table (``layerscope.methods.patching.api``),
    diverging around the corrupt run's value (the ``corrupt_value`` column when present)."""
    grid = table.pivot(index="layer", columns="position", values="value").sort_index()
    tokens = table.drop_duplicates("position").sort_values("position")["token"].tolist()
    center = float(table["corrupt_value"].iloc[0]) if "corrupt_value" in table else 0.0
    span = max(float((grid.values - center).__abs__().max()), 1e-6)
    n_layers, n_pos = grid.shape
    fig, ax = plt.subplots(figsize=(0.45 * n_pos + 3, 0.22 * n_layers + 1.8))
    im = ax.imshow(grid.values, aspect="auto", cmap="RdBu", vmin=center - span, vmax=center + span, origin="lower")
    ax.set_xticks(range(n_pos), [quoted(str(t)) for t in tokens], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n_layers), grid.index.tolist(), fontsize=6)
    ax.set_xlabel("position (corrupt prompt's token)")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    label = "metric after patching"
    if "clean_value" in table:
        label += f" (clean {table['clean_value'].iloc[0]:.2f}, corrupt {center:.2f})"
    fig.colorbar(im, ax=ax, label=label)
    return save_figure(fig, path)
