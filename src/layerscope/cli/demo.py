"""``layerscope demo``: the main job on the default model, written as an HTML report.

The demo is a list of sections; each registered method's ``report`` module lists its own in
``DEMO_SECTIONS`` (a list of ``(name, function(model, report, out_dir) -> rows)``), read through
:func:`layerscope.methods.demo_sections`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from layerscope.cli.common import emit, load_model, status

if TYPE_CHECKING:  # the report imports pandas: only when the demo runs
    from layerscope.results.report import Report


def sections() -> list[tuple[str, Callable]]:
    """The demo's sections in order: every registered method's ``DEMO_SECTIONS``, then the claims."""
    from layerscope.methods import demo_sections

    return [*demo_sections(), ("claims", section_claims)]


def cmd_demo(args: argparse.Namespace) -> None:
    import pandas as pd

    from layerscope.results.report import Report

    out_dir = Path(args.out_dir)
    model = load_model(args)
    report = Report(f"layerscope demo: {model.name}")
    info = model.info()
    report.section(
        "Model",
        f"{info.name}: {info.architecture}, {info.n_layers} layers, d_model {info.d_model}, "
        f"vocabulary {info.vocab_size}; source {info.source}",
    )
    rows: list[dict] = []
    for name, section in sections():
        start = time.perf_counter()
        status(f"demo: {name} ...")
        rows += section(model, report, out_dir)
        status(f"demo: {name} done in {time.perf_counter() - start:.1f}s")
    path = report.write(out_dir / "index.html")
    status(f"report written to {path.resolve()}")
    emit(pd.DataFrame(rows), args, "\n".join([*summary_lines(rows), f"report: {path.resolve()}"]))


def summary_lines(rows: list[dict]) -> list[str]:
    """One line per section, in order: its ``headline`` (a row's field, set by the section), else its
    first row's fields; then its ``caveat`` if it has one. What the demo prints instead of a wide table
    of every section's rows (those are ``--json``'s)."""
    lines, width = [], max((len(str(r.get("section", ""))) for r in rows), default=0)
    for section in dict.fromkeys(r.get("section", "") for r in rows):
        own = [r for r in rows if r.get("section", "") == section]
        headline = next((r["headline"] for r in own if r.get("headline")), None) or _describe(own[0])
        caveat = next((r["caveat"] for r in own if r.get("caveat")), None)
        lines.append(f"{section:<{width}}  {headline}" + (f"  [caveat: {caveat}]" if caveat else ""))
    return lines


def _describe(row: dict) -> str:
    """``layer 29, top_token ' Paris', prob 0.431``: a row's fields, tokens quoted, floats to 3 places."""
    parts = []
    for key, value in row.items():
        if key in ("section", "model", "method", "headline", "caveat") or value is None:
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.3f}")
        elif isinstance(value, str) and "token" in key:
            parts.append(f"{key} {value!r}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def section_claims(model, report: Report, out_dir: Path) -> list[dict]:
    """The "Claims" section: each paper's headline claim beside what we measure (quick scale)."""
    from layerscope.cli.claims import claims_rows

    table = claims_rows(model)
    report.section(
        "Claims",
        "Each paper's headline claim beside what we measure on this model (`layerscope claims`; small "
        "samples and a layer stride, `--scale full` for the whole data).",
    )
    report.table(table[["paper", "claim", "measured", "holds"]])
    return [
        {"section": "claims", "metric": row.claim, "value": row.value, "note": row.measured}
        for row in table.itertuples()
    ]


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command("demo", cmd_demo, "the main job on the default model, written as an HTML report")
    p.add_argument("--out-dir", default="layerscope-report", help="report folder (default: ./layerscope-report)")
