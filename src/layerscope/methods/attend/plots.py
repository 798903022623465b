"""Plots of Attend first, consolidate later: accuracy per k, the switch's answers per k."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.results.figures import plt, save_figure


def attend_curves(
    table: pd.DataFrame, path: str | os.PathLike, title: str = "Past-token manipulations from layer k on"
) -> Path:
    """Accuracy and answer probability vs the first manipulated layer k, one curve per manipulation.

    ``table``: rows ``layer, manipulation, accuracy, answer_prob, clean_accuracy, clean_answer_prob``.
    Dashed: the clean values; dotted: 90% of the clean accuracy.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, rows in table.groupby("manipulation", sort=False):
        rows = rows.sort_values("layer")
        axes[0].plot(rows["layer"], rows["accuracy"], marker="o", markersize=3, label=str(name))
        axes[1].plot(rows["layer"], rows["answer_prob"], marker="o", markersize=3, label=str(name))
    clean_acc, clean_prob = float(table["clean_accuracy"].iloc[0]), float(table["clean_answer_prob"].iloc[0])
    axes[0].axhline(clean_acc, color="black", linestyle="--", linewidth=1, label=f"clean ({clean_acc:.2f})")
    axes[0].axhline(0.9 * clean_acc, color="gray", linestyle=":", linewidth=1, label="90% of clean")
    axes[1].axhline(clean_prob, color="black", linestyle="--", linewidth=1, label=f"clean ({clean_prob:.2f})")
    for ax, label, column in zip(
        axes, ("accuracy", "answer probability (first token)"), ("accuracy", "answer_prob"), strict=True
    ):
        top = max(float(table[column].max()), float(table[f"clean_{column}"].iloc[0]))
        ax.set_xlabel("k (manipulated from block k on)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, min(1.02, 1.15 * top + 0.02))  # low-accuracy tasks stay readable
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path, suptitle=title)


def switch_curves(table: pd.DataFrame, path: str | os.PathLike, title: str = "Token switch from layer k on") -> Path:
    """The answers' probabilities (``p_*`` columns) vs k; the layers where the switch is ignored are shaded."""
    table = table.sort_values("layer")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for column in [c for c in table.columns if c.startswith("p_")]:
        ax.plot(table["layer"], table[column], marker="o", markersize=3, label=column)
    if "ignored" in table:
        for layer, ignored in zip(table["layer"], table["ignored"], strict=True):
            if ignored:
                ax.axvspan(layer - 0.5, layer + 0.5, color="tab:gray", alpha=0.12, linewidth=0)
    ax.set_xlabel("k (switched from layer k on; shaded: top token = the unswitched prompt's)")
    ax.set_ylabel("probability (first token)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)
