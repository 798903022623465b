"""``layerscope demo``: the main job on the default model, written as an HTML report.

The demo is a list of sections; each method's CLI module lists its own in ``DEMO_SECTIONS``
(a list of ``(name, function(model, report, out_dir) -> rows)``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from layerscope.cli.common import emit, load_model, status
from layerscope.report import Report

DEMO_PROMPTS = ["The capital of France is", "The Eiffel Tower is located in the city of"]


def section_logit_lens(model, report: Report, out_dir: Path) -> list[dict]:
    from layerscope.lens import logit_lens
    from layerscope.plotting import lens_heatmap

    rows = []
    report.section(
        "Logit lens",
        "Top next token at every (layer, position), read through the final norm and "
        "unembedding. The last layer is the model's own prediction.",
    )
    for i, prompt in enumerate(DEMO_PROMPTS):
        table = logit_lens(model, prompt)
        path = lens_heatmap(table, out_dir / f"lens_{i}.png", title=f"Logit lens: {prompt!r}")
        report.image(path, prompt)
        last = table[table["position"] == table["position"].max()][["layer", "top_token", "prob"]]
        report.table(last.sort_values("layer", ascending=False).head(12))
        final = last.sort_values("layer").iloc[-1]
        rows.append(
            {
                "section": "logit_lens",
                "prompt": prompt,
                "layer": int(final["layer"]),
                "top_token": final["top_token"],
                "prob": float(final["prob"]),
            }
        )
    return rows


def sections() -> list[tuple[str, Callable]]:
    """The demo's sections in order: the logit lens, then each method module's ``DEMO_SECTIONS``."""
    from layerscope.cli import attend, layers, loops, patchscope, sweep

    found: list[tuple[str, Callable]] = [("logit lens", section_logit_lens)]
    for module in (layers, patchscope, attend, loops, sweep):
        found += list(getattr(module, "DEMO_SECTIONS", []))
    return found


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
    path = report.write(out_dir / "index.html")
    status(f"report written to {path.resolve()}")
    emit(pd.DataFrame(rows), args)


def register(command) -> None:
    """Add this module's commands through ``command(name, func, help, description)``."""
    p = command("demo", cmd_demo, "the main job on the default model, written as an HTML report")
    p.add_argument("--out-dir", default="layerscope-report", help="report folder (default: ./layerscope-report)")
