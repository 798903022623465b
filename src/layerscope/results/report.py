"""A self-contained HTML report: sections of text, tables and embedded PNG plots."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from layerscope.results.io import write_text


def shorten(text: str, width: int = 70) -> str:
    """``text`` as a one-line repr (newlines shown as ``\\n``), cut to ``width`` characters."""
    shown = repr(text)[1:-1]
    return shown if len(shown) <= width else shown[: width - 3] + "..."


@dataclass
class Report:
    title: str
    parts: list[str] = field(default_factory=list)
    charts: bool = False  # a chart was added: write() inlines the chart script and its CSS

    def section(self, heading: str, text: str = "") -> None:
        self.parts.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            self.parts.append(f"<p>{html.escape(text)}</p>")

    def image(self, path: str | os.PathLike, caption: str = "") -> None:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        self.parts.append(
            f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def caveat(self, text: str) -> None:
        """A visible warning under the current section (e.g. a demo setting too small to mean much)."""
        self.parts.append(f'<p class="caveat"><strong>Caveat:</strong> {html.escape(text)}</p>')

    def chart(self, spec: dict, caption: str = "") -> None:
        """An interactive chart (hover values) of :mod:`layerscope.results.charts`, drawn by the same
        script as ``layerscope explore``'s; the script is inlined once, so the file stays self-contained."""
        from layerscope.results.charts import embed

        self.charts = True
        self.parts.append(f"<figure>{embed(spec)}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def table(self, table: pd.DataFrame, max_rows: int = 60) -> None:
        # in a scrolling box, so that a wide table never pushes the page wider than the screen
        shown = table.head(max_rows).copy()
        for column in [c for c in shown.columns if "token" in str(c)]:  # ' of', never a blank cell
            shown[column] = [repr(t) if isinstance(t, str) else t for t in shown[column].tolist()]
        shown = shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")
        self.parts.append(f'<div class="table">{shown}</div>')

    def write(self, path: str | os.PathLike) -> Path:
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
            "figcaption{color:#555;font-size:13px}div.table{max-width:100%;overflow-x:auto}"
            ".caveat{background:#fff4e5;border-left:4px solid #e8a33d;padding:6px 10px}"
        )
        body = "\n".join(self.parts)
        if self.charts:
            from layerscope.results.charts import chart_css, chart_js

            style += chart_css()
            script = chart_js().replace("</", "<\\/")
            body += f"\n<script>{script}</script>\n<script>LayerscopeCharts.renderAll(document)</script>"
        doc = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )
        return write_text(path, doc)
