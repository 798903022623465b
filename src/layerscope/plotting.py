"""Plots (matplotlib, headless). Each function takes a tidy table and writes one PNG."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from layerscope.io import atomic_write  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


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
                repr(tops.values[i, j])[1:-1][:10],
                ha="center",
                va="center",
                fontsize=6,
                color="white" if probs.values[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(n_pos), [repr(t)[1:-1] for t in tokens], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), probs.index.tolist(), fontsize=7)
    ax.set_xlabel("input token (position)")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="probability of the top token")
    return _save(fig, path)


def metric_curves(table: pd.DataFrame, path: str | os.PathLike, title: str = "Layer by Layer metrics") -> Path:
    """One panel per metric: ``value`` vs ``depth`` (a tidy ``depth, metric, value`` table)."""
    metrics = list(dict.fromkeys(table["metric"]))
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, metrics, strict=False):
        rows = table[table["metric"] == name].sort_values("depth")
        ax.plot(rows["depth"], rows["value"], marker="o", markersize=3)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("depth (0 = embeddings)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def probe_curve(table: pd.DataFrame, path: str | os.PathLike, title: str = "Linear probe per depth") -> Path:
    """Probe ``accuracy`` (+- ``accuracy_std``) vs ``depth``, the best depth marked."""
    table = table.sort_values("depth")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(table["depth"], table["accuracy"], yerr=table["accuracy_std"], marker="o", markersize=3, capsize=2)
    best = table.loc[table["accuracy"].idxmax()]
    ax.axvline(best["depth"], color="tab:red", linestyle="--", label=f"best depth {int(best['depth'])}")
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("accuracy (CV)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
