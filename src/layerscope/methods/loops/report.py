"""The demo's section on loops: a small self-verification sweep and one concept injection."""

from __future__ import annotations

from pathlib import Path


def section_loops(model, report, out_dir: Path) -> list[dict]:
    """Demo: a small self-verification sweep (arithmetic, 40 items, 1-2 loops) and one concept injection."""
    from layerscope.methods.loops import (
        arithmetic_task,
        concept_injection,
        default_block,
        self_verification,
        verification_summary,
    )
    from layerscope.methods.loops.plots import loop_heatmaps, loop_verification_plot

    a, b = default_block(model.n_layers)
    report.section(
        "Loops",
        f"Blocks [{a}, {b}) run n times (Loop as a Bridge). On 40 arithmetic items (a+b=c, half correct): "
        "P_TP = the model completes a+b= correctly, P_SV = its Yes/No verification agrees with the oracle, "
        "P_RR = a 5-fold logistic-regression probe on the verification prompt's last token at the last block "
        "of the loop and the last layer. Then the 'fire' direction (difference of means at the middle of the "
        "block) injected at each iteration and read out by a probe and by asking the model. Full runs: "
        "`layerscope loop verify` / `layerscope loop inject`.",
    )
    task = arithmetic_task(model, 40)
    table = self_verification(model, task, (a, b), [1, 2], probe_layers=[b - 1, model.n_layers - 1], progress=False)
    report.image(loop_verification_plot(table, out_dir / "loops_verify.png", title=f"arithmetic, {model.name}"))
    summary = verification_summary(table)
    report.table(summary)
    injected = concept_injection(model, "fire", (a, b), [2], progress=False)
    report.image(loop_heatmaps(injected, out_dir / "loops_inject.png", title=f"inject 'fire', {model.name}"))
    report.table(injected.drop(columns=["model", "method", "concept", "scale"]))
    rows = [
        {"section": "loops", "metric": metric, "loops": int(r["loops"]), "value": float(r[metric])}
        for _, r in summary.iterrows()
        for metric in ("P_TP", "P_SV", "sup_P_RR")
    ]
    rows += [
        {
            "section": "loops",
            "metric": f"inject_p_yes[{r.extract_iteration},{r.inject_iteration}]",
            "loops": int(r.loops),
            "value": float(r.p_yes),
        }
        for r in injected.itertuples()
    ]
    return rows


# 81 s on one thread at load ~3 on the 2-core development machine (verify 40 items x 1-2 loops + one injection)
DEMO_SECTIONS = [("loops", section_loops)]
