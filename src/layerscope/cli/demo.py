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

import pandas as pd

from layerscope.cli.common import emit, load_model, status
from layerscope.results.report import Report


def sections() -> list[tuple[str, Callable]]:
    """The demo's sections in order: every registered method's ``DEMO_SECTIONS``."""
    from layerscope.methods import demo_sections

    return demo_sections()


def cmd_demo(args: argparse.Namespace) -> None:
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
    rows += section_claims(model, report)
    path = report.write(out_dir / "index.html")
    status(f"report written to {path.resolve()}")
    emit(pd.DataFrame(rows), args)


def section_claims(model, report: Report) -> list[dict]:
    """The "Claims" section: each paper's headline claim beside what we measure (quick scale)."""
    from layerscope.cli.claims import claims_rows

    start = time.perf_counter()
    status("demo: claims ...")
    table = claims_rows(model)
    report.section(
        "Claims",
        "Each paper's headline claim beside what we measure on this model (`layerscope claims`; small "
        "samples and a layer stride, `--scale full` for the whole data).",
    )
    report.table(table[["paper", "claim", "measured", "holds"]])
    status(f"demo: claims done in {time.perf_counter() - start:.1f}s")
    return [
        {"section": "claims", "metric": row.claim, "value": row.value, "note": row.measured}
        for row in table.itertuples()
    ]


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command("demo", cmd_demo, "the main job on the default model, written as an HTML report")
    p.add_argument("--out-dir", default="layerscope-report", help="report folder (default: ./layerscope-report)")
