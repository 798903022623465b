"""The chart module shared by ``layerscope explore`` and the demo's HTML report: ``static/charts.js``
(a cell grid and line charts with hover values, plain DOM/SVG, no dependency) and its CSS, plus
builders of the serialisable chart specs the report embeds (``{"kind": "grid" | "lines", ...}``)."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

__all__ = ["chart_css", "chart_js", "embed", "lens_grid", "lines", "patching_grid"]


def _static(name: str) -> str:
    return resources.files("layerscope.results").joinpath("static", name).read_text(encoding="utf-8")


def chart_js() -> str:
    return _static("charts.js")


def chart_css() -> str:
    return _static("charts.css")


def embed(spec: dict) -> str:
    """``spec`` as an inline ``<script type="application/json">`` the page's ``renderAll`` draws."""
    text = json.dumps(spec).replace("</", "<\\/")  # a token "</script>" cannot end the tag early
    return f'<script type="application/json" class="ls-chart">{text}</script>'


def _layers_and_positions(table: pd.DataFrame) -> tuple[list[int], list[int], list[str]]:
    layers = sorted(table["layer"].unique().tolist(), reverse=True)  # the last layer on top
    positions = sorted(table["position"].unique().tolist())
    tokens = table.drop_duplicates("position").set_index("position")["token"]
    return layers, positions, [str(tokens[p]) for p in positions]


def lens_grid(table: pd.DataFrame, title: str = "") -> dict:
    """A grid of :func:`layerscope.methods.lens.logit_lens` rows: top token per cell, coloured by
    probability; the tooltip lists the cell's ranks (all of them when ``top_k > 1``)."""
    layers, positions, tokens = _layers_and_positions(table)
    ranks = table.get("rank", pd.Series(0, index=table.index))
    cells = []
    for (layer, position), cell in table.assign(rank=ranks).groupby(["layer", "position"]):
        cell = cell.sort_values("rank")
        top = cell.iloc[0]
        tip = [f"layer {layer}, position {position} ({json.dumps(str(top['token']))})"]
        tip += [f"{json.dumps(str(t)):<16} {p:.4f}" for t, p in zip(cell["top_token"], cell["prob"], strict=True)]
        cells.append([layers.index(layer), positions.index(position), float(top["prob"]), str(top["top_token"]), tip])
    return {"kind": "grid", "title": title, "rows": [str(l) for l in layers], "cols": tokens, "cells": cells,
            "corner": "layer \\ token", "scale": "sequential"}  # fmt: skip


def patching_grid(table: pd.DataFrame, title: str = "") -> dict:
    """A heatmap of :func:`layerscope.methods.patching.activation_patching` rows, coloured by the value
    minus the corrupt baseline; the tooltip gives the value, the token and both baselines."""
    layers, positions, tokens = _layers_and_positions(table)
    clean, corrupt = float(table["clean_value"].iloc[0]), float(table["corrupt_value"].iloc[0])
    cells = [
        [layers.index(r.layer), positions.index(r.position), float(r.value) - corrupt, f"{r.value:.2f}",
         [f"layer {r.layer}, position {r.position} ({json.dumps(str(r.token))})", f"value   {r.value:.3f}",
          f"clean   {clean:.3f}", f"corrupt {corrupt:.3f}"]]
        for r in table.itertuples()
    ]  # fmt: skip
    return {"kind": "grid", "title": title, "rows": [str(l) for l in layers], "cols": tokens, "cells": cells,
            "corner": "layer \\ token", "scale": "diverging",
            "legend": "colour: value minus the corrupt baseline (blue: towards the clean answer)"}  # fmt: skip


def lines(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str = "", **extra) -> dict:
    """Line charts: ``series`` = ``{name: [(x, y), ...]}``; ``extra``: ``marks=[{"x", "label"}]``, ``yMin``, ..."""
    return {"kind": "lines", "title": title, "xLabel": x_label, "yLabel": y_label,
            "series": [{"name": n, "points": [[float(x), float(y)] for x, y in pts]} for n, pts in series.items()],
            **extra}  # fmt: skip
