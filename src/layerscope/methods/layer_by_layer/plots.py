"""Plots of Layer by Layer: metric and probe curves per depth, one model or several."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from layerscope.results.figures import chance_line, clipped_errors, integer_ticks, plt, save_figure, unit_interval


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
        integer_ticks(ax)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    return save_figure(fig, path, suptitle=title)


def probe_curve(table: pd.DataFrame, path: str | os.PathLike, title: str = "Linear probe per depth") -> Path:
    """Probe ``accuracy`` (+- ``accuracy_std``, cut to [0, 1]) vs ``depth``, the best depth and chance
    (the ``chance`` column: the majority class's share) marked."""
    table = table.sort_values("depth")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    yerr = clipped_errors(table["accuracy"], table["accuracy_std"])
    ax.errorbar(table["depth"], table["accuracy"], yerr=yerr, marker="o", markersize=3, capsize=2)
    chance_line(ax, float(table["chance"].iloc[0]) if "chance" in table else None)
    unit_interval(ax)
    integer_ticks(ax)
    best = table.loc[table["accuracy"].idxmax()]
    ax.axvline(best["depth"], color="tab:red", linestyle="--", label=f"best depth {int(best['depth'])}")
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("accuracy (CV)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def metric_curves_by_model(
    table: pd.DataFrame, path: str | os.PathLike, title: str = "Layer by Layer metrics by model"
) -> Path:
    """One panel per metric, one curve per ``model``: ``value`` vs ``relative_depth`` (0 to 1).

    ``table`` is tidy: ``model, relative_depth, metric, value`` (as from
    :func:`layerscope.methods.layer_by_layer.compare_models`).
    """
    metrics = list(dict.fromkeys(table["metric"]))
    models = list(dict.fromkeys(table["model"]))
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, metrics, strict=False):
        for model in models:
            rows = table[(table["metric"] == name) & (table["model"] == model)].sort_values("relative_depth")
            if rows.empty:
                continue
            ax.plot(rows["relative_depth"], rows["value"], marker="o", markersize=2.5, label=model)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("relative depth (0 = embeddings, 1 = last block)")
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    return save_figure(fig, path, suptitle=title)


def probe_curves_by_model(
    table: pd.DataFrame, path: str | os.PathLike, title: str = "Linear probe per depth by model"
) -> Path:
    """One panel per ``task``, one curve per ``model``: ``accuracy`` vs ``relative_depth``, best marked."""
    tasks = list(dict.fromkeys(table["task"]))
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=True):
        for model in models:
            rows = table[(table["task"] == task) & (table["model"] == model)].sort_values("relative_depth")
            if rows.empty:  # this model has no rows for this task (e.g. a partial run)
                continue
            (line,) = ax.plot(rows["relative_depth"], rows["accuracy"], marker="o", markersize=2.5, label=model)
            best = rows.loc[rows["accuracy"].idxmax()]
            ax.plot([best["relative_depth"]], [best["accuracy"]], marker="*", markersize=11, color=line.get_color())
        if "chance" in table:
            chance_line(ax, float(table.loc[table["task"] == task, "chance"].iloc[0]))
        unit_interval(ax)
        ax.set_title(task)
        ax.set_xlabel("relative depth (star = best depth)")
        ax.set_ylabel("accuracy (CV)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path, suptitle=title)
