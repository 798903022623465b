"""The demo's section on activation patching."""

from __future__ import annotations

from pathlib import Path

#: clean, corrupt, answer, wrong
DEMO_PAIR = ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of", " Paris", " Rome")


def section_patching(model, report, out_dir: Path) -> list[dict]:
    """Demo: the resid_post patching grid of the Eiffel Tower / Colosseum pair, as a heatmap."""
    from layerscope.methods.patching.api import activation_patching
    from layerscope.methods.patching.plots import patching_heatmap

    clean, corrupt, answer, wrong = DEMO_PAIR
    table = activation_patching(model, clean, corrupt, answer, wrong, progress=False)
    report.section(
        "Activation patching",
        f"Clean {clean!r}, corrupt {corrupt!r}. Each cell writes the clean resid_post[l] at one position "
        f"into the corrupt run; the value is logit({answer!r}) - logit({wrong!r}) at the last position "
        f"(clean {table['clean_value'].iloc[0]:.2f}, corrupt {table['corrupt_value'].iloc[0]:.2f}).",
    )
    from layerscope.results.charts import patching_grid

    patching_heatmap(table, out_dir / "patching.png", title="Activation patching: resid_post")  # the PNG, for papers
    report.chart(patching_grid(table, title="Activation patching: resid_post"), "patching grid (hover a cell)")
    best = table.loc[table.groupby("layer")["value"].idxmax()].sort_values("layer", ascending=False)
    report.table(best[["layer", "position", "token", "value"]].head(12))
    return [
        {
            "section": "patching",
            "layer": int(row.layer),
            "position": int(row.position),
            "token": row.token,
            "value": float(row.value),
        }
        for row in best.itertuples()
    ]


DEMO_SECTIONS = [("activation patching", section_patching)]
