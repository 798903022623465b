"""Plots of the loop experiments: self-verification per loop count, injection heatmaps."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.results.figures import UNIT, plt, save_figure

PROBABILITIES = ("probe_detect", "p_yes", "p_word")  # in [0, 1]: one fixed colour scale


def loop_verification_plot(
    table: pd.DataFrame, path: str | os.PathLike, title: str = "Loops: P_TP, P_SV, P_RR"
) -> Path:
    """Left: probe accuracy P_RR per execution step, one curve per loop count. Right: P_TP, P_SV and
    sup P_RR vs the loop count (a tidy ``loops, metric, step, value`` table of ``loops.self_verification``)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    probes = table[table["metric"] == "P_RR"]
    for n, rows in probes.groupby("loops"):
        rows = rows.sort_values("step")
        left.plot(rows["step"].astype(int), rows["value"], marker="o", markersize=2, label=f"{n} loop(s)")
    left.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    left.set_xlabel("execution step (block call, in order)")
    left.set_ylabel("probe accuracy P_RR (CV)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    loops = sorted(table["loops"].unique())
    for metric in ("P_TP", "P_SV"):
        rows = table[table["metric"] == metric].set_index("loops").reindex(loops)
        right.plot(loops, rows["value"], marker="o", label=metric)
    if len(probes):
        right.plot(loops, probes.groupby("loops")["value"].max().reindex(loops), marker="o", label="sup P_RR")
    right.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    right.set_xticks(loops)
    right.set_xlabel("loop count")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return save_figure(fig, path, suptitle=title)


def loop_heatmaps(
    table: pd.DataFrame,
    path: str | os.PathLike,
    metrics: tuple[str, ...] = ("probe_detect", "p_yes", "p_word"),
    title: str = "Concept injection",
) -> Path:
    """One heatmap per metric over (extraction iteration, injection iteration) of the largest loop count."""
    table = table[table["loops"] == table["loops"].max()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        grid = table.pivot_table(index="extract_iteration", columns="inject_iteration", values=metric, aggfunc="mean")
        scale = UNIT if metric in PROBABILITIES else {}
        im = ax.imshow(grid.values, cmap="viridis", origin="lower", aspect="auto", **scale)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, f"{grid.values[i, j]:.3g}", ha="center", va="center", fontsize=8, color="white")
        ax.set_xticks(range(grid.shape[1]), grid.columns.tolist())
        ax.set_yticks(range(grid.shape[0]), grid.index.tolist())
        ax.set_xlabel("injection iteration")
        ax.set_ylabel("extraction iteration")
        clean = {"p_yes": "p_yes_clean", "p_word": "p_word_clean", "probe_detect": "probe_baseline"}.get(metric)
        note = f" (clean {table[clean].iloc[0]:.3g})" if clean in table and len(table) else ""
        ax.set_title(f"{metric}{note}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path, suptitle=f"{title} ({int(table['loops'].max())} loops)")
