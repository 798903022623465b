"""Layer by Layer (Skean et al., ICML 2025): representation metrics and linear probes per depth.

*Depth* ``d = 0..L`` indexes the residual stream of an ``L``-layer model: ``d = 0`` is the
embedding output (``resid_pre[0]``) and ``d = l + 1`` is ``resid_post[l]``, the output of block
``l`` -- *before* the final norm (so depth ``L`` differs from HF's last ``hidden_states`` entry on
decoders, which is after the final norm; for BERT there is no final norm and they agree).

Memory: the states of all prompts at all depths are never held at once.  Texts are run in
batches (each tokenised on its own, left-padded); per-prompt metrics (prompt entropy, curvature)
are accumulated as sums over prompts, and dataset-level metrics (dataset entropy, effective rank,
InfoNCE, LiDAR, DiME, probes) keep only the pooled vectors ``[L + 1, N, D]``.

LiDAR runs ``n_augmentations`` augmented copies of every prompt, so by default it uses only the
first ``lidar_limit = 64`` texts (64 x 16 = 1024 forward rows).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from layerscope.augment import augment_views
from layerscope.errors import LayerscopeError
from layerscope.metrics import (
    curvature,
    dime,
    effective_rank,
    infonce,
    lidar,
    matrix_entropy,
    pool,
    prompt_entropy,
)
from layerscope.metrics.entropy import canonical_normalization

METRIC_NAMES = (
    "prompt_entropy",
    "dataset_entropy",
    "curvature",
    "infonce",
    "lidar",
    "dime",
    "effective_rank",
)
"""Metric names accepted by :func:`representation_metrics` (snake_case; the CLI uses kebab-case)."""

DEFAULT_METRICS = ("prompt_entropy", "dataset_entropy", "curvature", "infonce", "lidar", "dime")


def _progress(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


def iter_depth_states(
    model, texts: Sequence[str], batch_size: int = 16, progress: bool = True, desc: str = "depths"
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(states [L + 1, B, T, D], mask [B, T] bool)`` per batch of ``texts``, on the model's device.

    Each batch is tokenised on its own (left-padded to its longest prompt).  ``states[0]`` is
    the embedding output, ``states[l + 1]`` is ``resid_post[l]`` (before the final norm).
    """
    texts = list(texts)
    if not texts:
        raise LayerscopeError("no texts given")
    if batch_size < 1:
        raise LayerscopeError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc=desc, disable=not _progress(progress) or len(starts) <= 1):
        result = model.run(texts[start : start + batch_size], capture=[("resid_pre", [0]), "resid_post"], logits=None)
        states = torch.cat([result.get("resid_pre", 0)[None], result.stack("resid_post")], dim=0)
        yield states, result.batch.attention_mask.bool()


def depth_states(model, texts: Sequence[str], batch_size: int = 16, progress: bool = True) -> tuple[Tensor, Tensor]:
    """All states at once: ``(states [L + 1, N, T, D] on CPU, mask [N, T] bool)``, left-padded.

    Convenient for small inputs; for many prompts use :func:`iter_depth_states` (memory grows as
    ``(L + 1) N T D``).  Padding positions are zero.
    """
    parts = [(s.cpu(), m.cpu()) for s, m in iter_depth_states(model, texts, batch_size, progress)]
    length = max(m.shape[1] for _, m in parts)
    states, masks = [], []
    for s, m in parts:
        pad = length - m.shape[1]
        states.append(torch.nn.functional.pad(s, (0, 0, pad, 0)))
        masks.append(torch.nn.functional.pad(m, (pad, 0), value=False))
    return torch.cat(states, dim=1), torch.cat(masks, dim=0)


def pooled_states(
    model, texts: Sequence[str], pooling: str = "mean", batch_size: int = 16, progress: bool = True
) -> Tensor:
    """Pooled embeddings ``[L + 1, N, D]`` (float32, CPU) of ``texts`` at every depth."""
    return torch.cat(
        [pool(s, m, pooling).float().cpu() for s, m in iter_depth_states(model, texts, batch_size, progress)], dim=1
    )


def canonical_metric(name: str) -> str:
    """``"prompt-entropy"`` / ``"prompt_entropy"`` -> ``"prompt_entropy"``; unknown names raise."""
    key = name.strip().lower().replace("-", "_")
    if key not in METRIC_NAMES:
        valid = ", ".join(n.replace("_", "-") for n in METRIC_NAMES)
        raise LayerscopeError(f"unknown metric {name!r}: valid metrics are {valid}")
    return key


def representation_metrics(
    model,
    texts: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    normalization: str = "max",
    alpha: float = 1.0,
    *,
    pooling: str = "mean",
    n_augmentations: int = 16,
    lidar_limit: int | None = 64,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Layer-by-Layer metrics at every depth, as a tidy table.

    Args:
        texts: the prompts (N).
        metrics: names from :data:`METRIC_NAMES` (``-`` or ``_``).
        normalization: entropy normaliser ``raw | n | d | nd | max`` for prompt entropy,
            dataset entropy and LiDAR (DiME and effective rank are always raw).
        alpha: Rényi order of the entropies (prompt/dataset entropy, LiDAR, DiME).
        pooling: token pooling for dataset-level metrics (``mean``, ``normalized-mean``, ``last``).
        n_augmentations: augmented views per prompt for LiDAR (16 in the paper).
        lidar_limit: LiDAR uses only the first ``lidar_limit`` texts (None = all).
        seed: augmentation and DiME permutation seed.  InfoNCE and DiME compare two
            augmented views (:func:`layerscope.augment.augment_views`, seed ``seed``);
            LiDAR uses views with seed ``seed + 1``.

    Returns:
        DataFrame with rows ``depth``, ``relative_depth`` (``depth / L``), ``metric``, ``value``.
    """
    names = list(dict.fromkeys(canonical_metric(m) for m in metrics))
    if not names:
        raise LayerscopeError("no metric given")
    try:
        normalization = canonical_normalization(normalization)
    except ValueError as error:
        raise LayerscopeError(str(error)) from None
    texts = list(texts)
    values: dict[str, Tensor] = {}

    per_prompt = [n for n in ("prompt_entropy", "curvature") if n in names]
    dataset_level = [n for n in ("dataset_entropy", "effective_rank") if n in names]
    if per_prompt or dataset_level:
        sums = {n: None for n in per_prompt}
        counts = {n: None for n in per_prompt}
        pooled = []
        for states, mask in iter_depth_states(model, texts, batch_size, progress, desc="metrics"):
            batch_values = {}
            if "prompt_entropy" in per_prompt:
                batch_values["prompt_entropy"] = prompt_entropy(
                    states, mask, alpha=alpha, normalization=normalization, reduction="none"
                )
            if "curvature" in per_prompt:
                batch_values["curvature"] = curvature(states, mask, reduction="none")
            for n, v in batch_values.items():  # [L + 1, B], NaN = skipped prompt
                v = v.cpu()
                s, c = torch.nansum(v, dim=-1), (~torch.isnan(v)).sum(dim=-1)
                sums[n] = s if sums[n] is None else sums[n] + s
                counts[n] = c if counts[n] is None else counts[n] + c
            if dataset_level:
                pooled.append(pool(states, mask, pooling).float().cpu())
        for n in per_prompt:
            if not bool((counts[n] > 0).all()):
                raise LayerscopeError(f"{n}: no prompt has enough tokens")
            values[n] = sums[n] / counts[n]
        if dataset_level:
            Z = torch.cat(pooled, dim=1)
            if "dataset_entropy" in names:
                values["dataset_entropy"] = matrix_entropy(Z, alpha=alpha, normalization=normalization)
            if "effective_rank" in names:
                values["effective_rank"] = effective_rank(Z)

    if "infonce" in names or "dime" in names:
        view_texts = augment_views(texts, 2, seed=seed)
        view_a, view_b = (pooled_states(model, v, pooling, batch_size, progress) for v in view_texts)
        if "infonce" in names:
            values["infonce"] = infonce(view_a, view_b)
        if "dime" in names:
            values["dime"] = dime(view_a, view_b, seed=seed, alpha=alpha)

    if "lidar" in names:
        subset = texts if lidar_limit is None else texts[:lidar_limit]
        if len(subset) < 2:
            raise LayerscopeError("lidar needs at least 2 texts")
        views = augment_views(subset, n_augmentations, seed=seed + 1)
        # one run over prompt-major rows: row n * K + k = view k of prompt n
        flat = [views[k][n] for n in range(len(subset)) for k in range(n_augmentations)]
        P = pooled_states(model, flat, pooling, batch_size, progress)  # [L + 1, N K, D]
        P = P.reshape(P.shape[0], len(subset), n_augmentations, P.shape[-1])
        values["lidar"] = lidar(P, normalization=normalization, alpha=alpha)

    n_layers = model.n_layers
    rows = [
        {"depth": d, "relative_depth": d / n_layers, "metric": n, "value": float(values[n][d])}
        for n in names
        for d in range(n_layers + 1)
    ]
    return pd.DataFrame(rows, columns=["depth", "relative_depth", "metric", "value"])


def probe_accuracy(X: np.ndarray, y: Sequence, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean and std over stratified folds of a standardised logistic-regression probe on ``X [N, D]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(clf, X, np.asarray(y), cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def probe_layers(
    model,
    texts: Sequence[str],
    labels: Sequence,
    pooling: str = "mean",
    folds: int = 5,
    seed: int = 0,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Linear-probe accuracy at every depth.

    Each text is embedded at every depth by ``pooling`` (``mean`` over real tokens or the
    ``last`` real token); per depth a ``StandardScaler + LogisticRegression(max_iter=1000)``
    is scored by ``folds``-fold ``StratifiedKFold(shuffle=True, random_state=seed)``
    (``folds`` is lowered to the smallest class size when that is smaller).

    Returns:
        DataFrame with rows ``depth``, ``relative_depth``, ``accuracy`` (mean over folds),
        ``accuracy_std``, ``n`` (number of texts).
    """
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise LayerscopeError(f"{len(texts)} texts but {len(labels)} labels")
    _, class_counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    if len(class_counts) < 2:
        raise LayerscopeError("probing needs at least 2 classes")
    folds = min(folds, int(class_counts.min()))
    if folds < 2:
        raise LayerscopeError("every class needs at least 2 examples for cross-validation")
    Z = pooled_states(model, texts, pooling, batch_size, progress).double().numpy()
    rows = []
    for d in range(Z.shape[0]):
        mean, std = probe_accuracy(Z[d], labels, folds, seed)
        rows.append(
            {"depth": d, "relative_depth": d / model.n_layers, "accuracy": mean, "accuracy_std": std, "n": len(texts)}
        )
    return pd.DataFrame(rows)


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
