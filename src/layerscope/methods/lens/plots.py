"""Plots of the logit lens."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.readout.tokens import quoted
from layerscope.results.figures import plt, save_figure


def lens_heatmap(table: pd.DataFrame, path: str | os.PathLike, title: str = "Logit lens") -> Path:
    """Heatmap of top-token probability per (layer, position), annotated with the top token."""
    table = table[(table["prompt"] == table["prompt"].min()) & (table["rank"] == 0)]
    probs = table.pivot(index="layer", columns="position", values="prob").sort_index()
    tops = table.pivot(index="layer", columns="position", values="top_token").sort_index()
    tokens = table.drop_duplicates("position").sort_values("position")["token"].tolist()
    n_layers, n_pos = probs.shape
    fig, ax = plt.subplots(figsize=(1.1 * n_pos + 2, 0.32 * n_layers + 1.5))
    im = ax.imshow(probs.values, aspect="auto", cmap="Blues", vmin=0, vmax=1, origin="lower")
    for i in range(n_layers):
        for j in range(n_pos):
            ax.text(
                j,
                i,
                quoted(str(tops.values[i, j]))[:12],
                ha="center",
                va="center",
                fontsize=6,
                color="white" if probs.values[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(n_pos), [quoted(str(t)) for t in tokens], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), probs.index.tolist(), fontsize=7)
    ax.set_xlabel("input token (position)")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability of the top token")
    return save_figure(fig, path)
