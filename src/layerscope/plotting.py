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
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


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
        im = ax.imshow(grid.values, cmap="viridis", origin="lower", aspect="auto")
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
    fig.suptitle(f"{title} ({int(table['loops'].max())} loops)")
    fig.tight_layout()
    return _save(fig, path)


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
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def pair_heatmap(pairs: pd.DataFrame, path: str | os.PathLike, title: str = "Accuracy per (l, l*)") -> Path:
    """Heatmap of ``accuracy`` per (``source_layer``, ``target_layer``), averaged over ``relation``."""
    grid = pairs.groupby(["source_layer", "target_layer"])["accuracy"].mean().unstack("target_layer").sort_index()
    fig, ax = plt.subplots(figsize=(0.5 * grid.shape[1] + 3, 0.4 * grid.shape[0] + 2))
    im = ax.imshow(grid.values, origin="lower", cmap="viridis", vmin=0, vmax=max(float(grid.values.max()), 1e-9))
    ax.set_xticks(range(grid.shape[1]), grid.columns.tolist(), fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index.tolist(), fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid.values[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white")
    ax.set_xlabel("target layer l*")
    ax.set_ylabel("source layer l")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy (mean over relations)")
    return _save(fig, path)


def metric_curves_by_model(
    table: pd.DataFrame, path: str | os.PathLike, title: str = "Layer by Layer metrics by model"
) -> Path:
    """One panel per metric, one curve per ``model``: ``value`` vs ``relative_depth`` (0 to 1).

    ``table`` is tidy: ``model, relative_depth, metric, value`` (as from
    :func:`layerscope.layer_by_layer.compare_models`).
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
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


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
        ax.set_title(task)
        ax.set_xlabel("relative depth (star = best depth)")
        ax.set_ylabel("accuracy (CV)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


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
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


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
    return _save(fig, path)


def patching_heatmap(table: pd.DataFrame, path: str | os.PathLike, title: str = "Activation patching") -> Path:
    """Heatmap of ``value`` per (layer, position) of an activation-patching table (``layerscope.patching``),
    diverging around the corrupt run's value (``table.attrs['corrupt_value']`` when present)."""
    grid = table.pivot(index="layer", columns="position", values="value").sort_index()
    tokens = table.drop_duplicates("position").sort_values("position")["token"].tolist()
    center = float(table.attrs.get("corrupt_value", 0.0))
    span = max(float((grid.values - center).__abs__().max()), 1e-6)
    n_layers, n_pos = grid.shape
    fig, ax = plt.subplots(figsize=(0.45 * n_pos + 3, 0.22 * n_layers + 1.8))
    im = ax.imshow(grid.values, aspect="auto", cmap="RdBu", vmin=center - span, vmax=center + span, origin="lower")
    ax.set_xticks(range(n_pos), [repr(t)[1:-1] for t in tokens], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n_layers), grid.index.tolist(), fontsize=6)
    ax.set_xlabel("position (corrupt prompt's token)")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    label = "metric after patching"
    if "clean_value" in table.attrs:
        label += f" (clean {table.attrs['clean_value']:.2f}, corrupt {center:.2f})"
    fig.colorbar(im, ax=ax, label=label)
    return _save(fig, path)
