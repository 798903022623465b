"""Layer by Layer's headline claims (Skean et al., ICML 2025), measured through this package's API."""

from __future__ import annotations

from functools import partial

from layerscope.results.claims import Claim

PAPER = "Layer by Layer"
PROBE_TASKS = ("sentiment", "topic", "fact_opinion")
"""The shipped classification tasks the "intermediate layer beats the last" claim is measured on."""
KINDS = ("causal", "encoder")
"""Both claims are measured on decoders and encoders alike (the valley claim contrasts the two)."""

__all__ = ["CLAIMS", "PROBE_TASKS", "entropy_curve", "measure_entropy_valley", "measure_intermediate_beats_last",
           "probe_texts"]
VALLEY_MARGIN = 0.05
"""A valley: the interior minimum of prompt entropy is at least 5% below the lower of its two ends."""


def probe_texts(scale: str, per_class: int | None = None, task: str = "sentiment") -> tuple[list[str], list[str]]:
    """Balanced examples of a shipped task: the first 20 of each class (quick) or all (full), class by class."""
    from layerscope.datasets import load_dataset

    rows = load_dataset(task)
    n = per_class if per_class is not None else (20 if scale == "quick" else len(rows))
    classes = list(dict.fromkeys(str(r["label"]) for r in rows))
    chosen = [r for c in classes for r in [r for r in rows if str(r["label"]) == c][:n]]
    return [r["text"] for r in chosen], [str(r["label"]) for r in chosen]


def measure_intermediate_beats_last(model, scale: str, task: str = "sentiment") -> dict:
    from layerscope.methods.layer_by_layer import best_vs_last, probe_layers

    texts, labels = probe_texts(scale, task=task)
    summary = best_vs_last(probe_layers(model, texts, labels, folds=3 if scale == "quick" else 5, progress=False))
    return {
        "measured": f"{task} probe: best depth {summary['best_depth']} ({summary['best_accuracy']:.3f}) vs "
        f"last depth {summary['last_depth']} ({summary['last_accuracy']:.3f})",
        "holds": summary["best_depth"] != summary["last_depth"] and summary["gain"] > 0,
        "value": summary["gain"],
    }


def entropy_curve(model, scale: str):
    from layerscope.datasets import load_corpus
    from layerscope.methods.layer_by_layer import representation_metrics

    texts = load_corpus()[: 16 if scale == "quick" else 200]
    table = representation_metrics(model, texts, ["prompt_entropy"], progress=False)
    return table.sort_values("depth")["value"].to_numpy()


def measure_entropy_valley(model, scale: str) -> dict:
    values = entropy_curve(model, scale)
    interior = values[1:-1]
    depth = int(interior.argmin()) + 1
    drop = 1.0 - float(interior.min()) / float(min(values[0], values[-1]))
    valley = drop >= VALLEY_MARGIN
    decoder = model.kind == "causal"
    return {
        "measured": f"{'decoder' if decoder else 'encoder'}: prompt entropy minimum at depth {depth} of "
        f"{len(values) - 1}, {drop:+.1%} below the lower end ({'a valley' if valley else 'flat'})",
        "holds": valley if decoder else not valley,
        "value": drop,
    }


CLAIMS = [
    *(
        Claim(
            PAPER,
            f"an intermediate layer beats the last (2-16% on average over 32 MTEB tasks): {task}",
            f"layerscope probe --task {task}",
            partial(measure_intermediate_beats_last, task=task),
            KINDS,
        )
        for task in PROBE_TASKS
    ),
    Claim(
        PAPER,
        "decoders show a mid-depth entropy valley, encoders stay flat",
        "layerscope claims --methods layer_by_layer --models smollm2-135m,gemma3-270m,minilm-l6",
        measure_entropy_valley,
        KINDS,
    ),
]
