"""Plots of the Patchscopes evaluations: curves per layer, accuracy per (l, l*)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.results.figures import UNIT, integer_ticks, plt, save_figure, unit_interval

BOUNDED = ("precision_at_1", "rouge_l", "accuracy")  # scores in [0, 1]: their axis is fixed to it


def layer_curves(
    table: pd.DataFrame, path: str | os.PathLike, value: str | None = None, title: str = "Per layer"
) -> Path:
    """One line per ``method`` of ``value`` vs ``layer`` (default: panels for ``precision_at_1`` and
    ``surprisal`` when present)."""
    values = [value] if value else [v for v in ("precision_at_1", "surprisal") if v in table.columns]
    fig, axes = plt.subplots(1, len(values), figsize=(5.2 * len(values), 3.6), squeeze=False)
    for ax, name in zip(axes.flat, values, strict=True):
        for method, rows in table.groupby("method", sort=False):
            rows = rows.sort_values("layer")
            ax.plot(rows["layer"], rows[name], marker="o", markersize=3, label=str(method).replace("_", " "))
        ax.set_xlabel("source layer l")
        integer_ticks(ax)
        if name in BOUNDED:
            unit_interval(ax)
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, suptitle=title)


def pair_heatmap(pairs: pd.DataFrame, path: str | os.PathLike, title: str = "Accuracy per (l, l*)") -> Path:
    """Heatmap of ``accuracy`` per (``source_layer``, ``target_layer``), averaged over ``relation``."""
    grid = pairs.groupby(["source_layer", "target_layer"])["accuracy"].mean().unstack("target_layer").sort_index()
    fig, ax = plt.subplots(figsize=(0.5 * grid.shape[1] + 3, 0.4 * grid.shape[0] + 2))
    im = ax.imshow(grid.values, origin="lower", cmap="viridis", **UNIT)  # accuracies: one fixed scale
    ax.set_xticks(range(grid.shape[1]), grid.columns.tolist(), fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index.tolist(), fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid.values[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white")
    ax.set_xlabel("target layer l*")
    ax.set_ylabel("source layer l")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy (mean over relations)")
    return save_figure(fig, path)


def token_grid(table: pd.DataFrame, path: str | os.PathLike, title: str = "Patchscope") -> Path:
    """The first generated token per (``source_layer``, ``target_layer``), coloured by its probability
    (one fixed [0, 1] scale); for several source positions, their mean probability and the first's token."""
    first = table.drop_duplicates(["source_layer", "target_layer"])
    prob = table.groupby(["source_layer", "target_layer"])["prob"].mean().unstack("target_layer").sort_index()
    token = first.set_index(["source_layer", "target_layer"])["top_token"].unstack("target_layer")
    token = token.reindex(index=prob.index, columns=prob.columns)
    fig, ax = plt.subplots(figsize=(0.9 * prob.shape[1] + 3, 0.45 * prob.shape[0] + 2))
    im = ax.imshow(prob.values, origin="lower", cmap="viridis", aspect="auto", **UNIT)
    ax.set_xticks(range(prob.shape[1]), prob.columns.tolist(), fontsize=8)
    ax.set_yticks(range(prob.shape[0]), prob.index.tolist(), fontsize=8)
    for i in range(prob.shape[0]):
        for j in range(prob.shape[1]):
            ax.text(j, i, repr(str(token.values[i, j]))[:12], ha="center", va="center", fontsize=7, color="white")
    ax.set_xlabel("target layer l*")
    ax.set_ylabel("source layer l")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability of the first generated token")
    return save_figure(fig, path)
