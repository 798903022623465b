"""The demo's section on Attend first, consolidate later."""

from __future__ import annotations

from pathlib import Path

MIN_CORRECT = 10  # fewer correctly answered items than this: the demo's curve gets a caveat


def section_attend(model, report, out_dir: Path) -> list[dict]:
    """The Spain/France/Italy switch and the random-manipulation curve on capitals (~1 min on CPU)."""
    import layerscope.methods.attend as attend
    from layerscope.methods.attend.plots import attend_curves, switch_curves

    example = attend.SWITCH_EXAMPLE
    report.section(
        "Attend first, consolidate later: the switch",
        f"The prompt {example['prompt']!r}, with the state of 'France' replaced, from layer k on (resid_pre at "
        f"every layer >= k), by the state of 'Italy' in {example['source']!r} at the same layer. Early k: the "
        "model follows the switch (Rome); from some layer on it has already read 'France' and ignores it (Paris).",
    )
    table = attend.switch(
        model,
        example["prompt"],
        example["position"],
        example["source"],
        example["source_position"],
        example["answers"],
    )
    keys = [attend.answer_key(a) for a in example["answers"]]
    from layerscope.results.charts import lines

    switch_curves(table, out_dir / "attend_switch.png", title="Spain/France/Italy switch")  # the PNG, for papers
    ignored = attend.ignored_from(table)
    curves = {key: list(zip(table["layer"], table[key], strict=True)) for key in keys}
    marks = [] if ignored is None else [{"x": ignored, "label": f"ignored from k = {ignored}"}]
    spec = lines(curves, "k", "probability", "Spain/France/Italy switch", marks=marks, yMin=0, yMax=1, xInteger=True)
    report.chart(spec, "p(answer) against k (hover a point)")
    report.table(table[["layer", "top_token", *keys, "ignored"]])
    rows = [
        {
            "section": "attend_switch",
            "layer": ignored,
            "note": "first layer from which the switch is ignored",
            "headline": f"the switch France -> Italy is ignored from layer {ignored} on"
            if ignored is not None
            else "the switch is followed at every layer",
            **{key: float(table.loc[table["layer"] == 0, key].iloc[0]) for key in keys},
        }
    ]
    limit = 24  # and every 5th k on the default model: well under a minute on an idle 2-core CPU
    report.section(
        "Attend first, consolidate later: random previous tokens",
        f"Capitals (one-shot Q/A, first {limit} items): every token but the last replaced, at resid_pre[k], by "
        "norm-matched Gaussian noise; first-token accuracy and the answer's probability per k. "
        "Run `layerscope attend sweep --task capitals --manipulation random,freeze,shuffle,skip-attention` "
        "for all items and manipulations with the exact greedy match.",
    )
    sweep = attend.sweep_task(
        model,
        attend.task_items("capitals", limit=limit),
        ["random"],
        f"0:{model.n_layers}:{max(1, model.n_layers // 6)}",
        match="first-token",
        progress=False,
        task="capitals",
    )
    report.image(attend_curves(sweep, out_dir / "attend_random.png", title="Capitals: random previous tokens"))
    report.table(sweep[["layer", "accuracy", "answer_prob", "n", "clean_accuracy"]])
    stable = attend.stable_from(sweep)["random"]
    clean, n = float(sweep["clean_accuracy"].iloc[0]), int(sweep["n"].iloc[0])
    correct = round(clean * n)
    caveat = None
    if correct < MIN_CORRECT:
        # the curve is a fraction of the items the model gets right unmanipulated: with a handful, one
        # item more or less moves it by a large step, and "stays within 10% of clean" means little
        caveat = (
            f"the clean run answers only {correct} of {n} items correctly, so each point rests on {correct} "
            f"item(s); run `layerscope attend sweep --task capitals` on every item for a curve that means something"
        )
        report.caveat(caveat)
    rows.append(
        {
            "section": "attend_random",
            "layer": stable,
            "note": f"first layer from which accuracy stays within 10% of clean ({clean:.3f})",
            "headline": f"accuracy stays within 10% of clean from layer {stable} on (clean: {correct}/{n} correct)",
            "caveat": caveat,
        }
    )
    return rows


DEMO_SECTIONS = [("attend first, consolidate later", section_attend)]
