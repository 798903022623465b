"""The demo's section on the logit lens."""

from __future__ import annotations

from pathlib import Path

from layerscope.results.charts import lens_grid
from layerscope.results.report import Report

DEMO_PROMPTS = ["The capital of France is", "The Eiffel Tower is located in the city of"]


def section_logit_lens(model, report: Report, out_dir: Path) -> list[dict]:
    from layerscope.methods.lens.api import logit_lens
    from layerscope.methods.lens.plots import lens_heatmap

    rows: list[dict] = []
    report.section(
        "Logit lens",
        "Top next token at every (layer, position), read through the final norm and "
        "unembedding. The last layer is the model's own prediction.",
    )
    for i, prompt in enumerate(DEMO_PROMPTS):
        table = logit_lens(model, prompt, top_k=5)
        top = table[table["rank"] == 0]
        lens_heatmap(top, out_dir / f"lens_{i}.png", title=f"Logit lens: {prompt!r}")  # the PNG, for papers
        report.chart(lens_grid(table, title=f"Logit lens: {prompt!r}"), f"{prompt} (hover a cell for its top 5)")
        table = top
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
    rows[0]["headline"] = "; ".join(f"{r['prompt']!r} -> {r['top_token']!r} (p {r['prob']:.2f})" for r in rows)
    return rows


DEMO_SECTIONS = [("logit lens", section_logit_lens)]
