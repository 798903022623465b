"""A linear probe at every depth, and the best depth against the last."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer.recipes import probe_knobs
from layerscope.methods.layer_by_layer.states import DEFAULT_BATCH_SIZE, pooled_states
from layerscope.readout.probes import probe_accuracy
from layerscope.results.contract import tidy

__all__ = ["best_vs_last", "probe_layers"]


def probe_layers(
    model,
    texts: Sequence[str],
    labels: Sequence,
    pooling: str = "mean",
    folds: int = 5,
    seed: int = 0,
    *,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    recipe: str = "paper",
    final_norm: str | None = None,
) -> pd.DataFrame:
    """Linear-probe accuracy at every depth.

    Each text is embedded at every depth by ``pooling`` (``mean`` over real tokens or the
    ``last`` real token); per depth a ``StandardScaler + LogisticRegression(max_iter=1000)``
    is scored by ``folds``-fold ``StratifiedKFold(shuffle=True, random_state=seed)``
    (``folds`` is lowered to the smallest class size when that is smaller).

    ``recipe``: ``"paper"`` (the residual stream at every depth) or ``"authors"`` (their MTEB
    wrapper: every depth through the final norm); ``final_norm`` (``none|last|every``, None = the
    recipe's) sets that knob on its own (:data:`~layerscope.methods.layer_by_layer.recipes.PROBE_KNOBS`).

    Returns:
        DataFrame with rows ``depth``, ``relative_depth``, ``accuracy`` (mean over folds),
        ``accuracy_std``, ``n`` (number of texts), ``chance`` (the share of the most frequent
        class: what always answering it scores, the line a probe must clear), and the ``recipe``,
        ``pooling`` and ``final_norm`` used.
    """
    used = probe_knobs(recipe, final_norm=final_norm)
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise LayerscopeError(f"{len(texts)} texts but {len(labels)} labels")
    _, class_counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    if len(class_counts) < 2:
        raise LayerscopeError("probing needs at least 2 classes")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise LayerscopeError(f"folds must be an int >= 2 (each fold is held out once), got {folds!r}")
    folds = min(folds, int(class_counts.min()))
    if folds < 2:
        raise LayerscopeError("every class needs at least 2 examples for cross-validation")
    Z = pooled_states(
        model, texts, pooling, batch_size, progress, batch_budget=batch_budget, final_norm=used["final_norm"]
    )
    Z = Z.double().numpy()
    chance = float(class_counts.max() / class_counts.sum())
    rows = []
    for d in range(Z.shape[0]):
        mean, std = probe_accuracy(Z[d], labels, folds, seed)
        rows.append(
            {
                "depth": d,
                "relative_depth": d / model.n_layers,
                "accuracy": mean,
                "accuracy_std": std,
                "n": len(texts),
                "chance": chance,
            }
        )
    recorded = {"recipe": used["recipe"], "pooling": pooling, "final_norm": used["final_norm"]}
    return tidy(pd.DataFrame(rows), model=model, method="layer_by_layer", **recorded)


def best_vs_last(table: pd.DataFrame) -> dict:
    """Best depth vs the last depth of a :func:`probe_layers` table.

    Returns ``best_depth``, ``best_accuracy``, ``last_depth``, ``last_accuracy``, ``gain``
    (best minus last; ties go to the shallowest depth).
    """
    best = table.loc[table["accuracy"].idxmax()]
    last = table.loc[table["depth"].idxmax()]
    return {
        "best_depth": int(best["depth"]),
        "best_accuracy": float(best["accuracy"]),
        "last_depth": int(last["depth"]),
        "last_accuracy": float(last["accuracy"]),
        "gain": float(best["accuracy"] - last["accuracy"]),
    }
