"""Representation metrics at every depth: entropies, effective rank, curvature, InfoNCE, LiDAR, DiME."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor

from layerscope.augment import augment_views
from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer.recipes import knobs
from layerscope.methods.layer_by_layer.states import (
    DEFAULT_BATCH_SIZE,
    iter_depth_batches,
    pooled_states,
    token_lengths,
)
from layerscope.metrics import (
    curvature as trajectory_curvature,
)
from layerscope.metrics import (
    dime,
    effective_rank,
    infonce,
    lidar,
    matrix_entropy,
    pool,
    prompt_entropy,
)
from layerscope.metrics.entropy import canonical_normalization
from layerscope.names import canonical_name
from layerscope.results.contract import tidy

METRIC_NAMES = (
    "prompt_entropy",
    "dataset_entropy",
    "curvature",
    "infonce",
    "infonce_cosine",
    "lidar",
    "dime",
    "effective_rank",
)
"""Metric names accepted by :func:`representation_metrics` (snake_case; the CLI uses kebab-case)."""

DEFAULT_METRICS = ("prompt_entropy", "dataset_entropy", "curvature", "infonce", "lidar", "dime")


def canonical_metric(name: str) -> str:
    """``"prompt-entropy"`` / ``"prompt_entropy"`` -> ``"prompt_entropy"``; unknown names raise."""
    return canonical_name(name, METRIC_NAMES, what="metric", shown=[n.replace("_", "-") for n in METRIC_NAMES])


def representation_metrics(
    model,
    texts: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    normalization: str = "max",
    alpha: float = 1.0,
    *,
    recipe: str = "paper",
    pooling: str | None = None,
    clamp_gram: bool | None = None,
    curvature: str | None = None,
    curvature_k: int | str | Sequence[int] | None = None,
    dime_normalization: str | None = None,
    last_depth: str | None = None,
    n_augmentations: int = 16,
    lidar_limit: int | None = 64,
    seed: int = 0,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    drop_dims: Sequence[int] | None = None,
    min_tokens: int = 0,
) -> pd.DataFrame:
    """Layer-by-Layer metrics at every depth, as a tidy table.

    Args:
        texts: the prompts (N).
        metrics: names from :data:`METRIC_NAMES` (``-`` or ``_``).
        normalization: entropy normaliser ``raw | n | d | nd | max`` for prompt entropy,
            dataset entropy and LiDAR (DiME and effective rank are always raw).
        alpha: Rényi order of the entropies (prompt/dataset entropy, LiDAR, DiME).
        recipe: ``"paper"`` (the paper's text, default) or ``"authors"`` (the authors' code); it
            sets the knobs below that are None (see :mod:`layerscope.methods.layer_by_layer.recipes`).
        pooling: token pooling for dataset-level metrics (``mean``, ``normalized-mean``, ``last``).
        clamp_gram: clamp the Gram matrices of the entropies (and effective rank) to >= 0.
        curvature: ``"trajectory"`` (the paper's angle between consecutive steps) or
            ``"token-angle"`` (the authors'), see :func:`layerscope.metrics.curvature`.
        curvature_k: k-step curvature, one or several k (``"1,2,5"``); k > 1 is the metric
            ``curvature_k{k}``.
        dime_normalization: normaliser of DiME (``raw`` or ``max``, ...).
        last_depth: ``"pre-norm"`` (``resid_post[L-1]``) or ``"post-norm"`` (HF's last hidden state).
        n_augmentations: augmented views per prompt for LiDAR (16 in the paper).
        lidar_limit: LiDAR uses only the first ``lidar_limit`` texts (None = all).
        seed: augmentation and DiME permutation seed.  InfoNCE and DiME compare two
            augmented views (:func:`layerscope.augment.augment_views`, seed ``seed``);
            LiDAR uses views with seed ``seed + 1``.
        batch_size, batch_budget: at most ``batch_size`` prompts per forward chunk, and no more
            than fit ``batch_budget`` (e.g. ``"512MB"``) of activations; see :func:`plan_chunks`.
        drop_dims: hidden dimensions zeroed at every depth before any metric (an ablation:
            see :func:`top_dimensions` for the massive-activation dimensions).
        min_tokens: drop the texts with fewer tokens (this model's tokenizer) before anything runs:
            the paper's length filter (30 on WikiText); 0 keeps every text.

    Returns:
        DataFrame with rows ``depth``, ``relative_depth`` (``depth / L``), ``metric``, ``value``, and
        the recipe and every knob as columns (``recipe``, ``pooling``, ``clamp_gram``, ``curvature``,
        ``curvature_k`` as text such as ``"1,2"``, ``dime_normalization``, ``last_depth``), and
        ``min_tokens`` with ``n_texts``, the texts left after the length filter.
    """
    used = knobs(
        recipe,
        pooling=pooling,
        clamp_gram=clamp_gram,
        curvature=curvature,
        curvature_k=curvature_k,
        dime_normalization=dime_normalization,
        last_depth=last_depth,
    )
    pooling, clamp_gram, last_depth = used["pooling"], bool(used["clamp_gram"]), used["last_depth"]
    ks = used["curvature_k"]
    variant = "paper" if used["curvature"] == "trajectory" else "token-angle"
    names = list(dict.fromkeys(canonical_metric(m) for m in metrics))
    if not names:
        raise LayerscopeError("no metric given")
    try:
        normalization = canonical_normalization(normalization)
    except ValueError as error:
        raise LayerscopeError(str(error)) from None
    texts = _long_enough(model, list(texts), min_tokens)
    values: dict[str, Tensor] = {}

    curvature_names = {("curvature" if k == 1 else f"curvature_k{k}"): k for k in ks}
    per_prompt = ["prompt_entropy"] if "prompt_entropy" in names else []
    per_prompt += list(curvature_names) if "curvature" in names else []
    dataset_level = [n for n in ("dataset_entropy", "effective_rank") if n in names]
    if per_prompt or dataset_level:
        sums = {n: None for n in per_prompt}
        counts = {n: None for n in per_prompt}
        pooled = []
        for _, states, mask in iter_depth_batches(
            model,
            texts,
            batch_size,
            progress,
            desc="metrics",
            batch_budget=batch_budget,
            drop_dims=drop_dims,
            last_depth=last_depth,
        ):
            batch_values = {}
            if "prompt_entropy" in per_prompt:
                batch_values["prompt_entropy"] = prompt_entropy(
                    states, mask, alpha=alpha, normalization=normalization, clamp_gram=clamp_gram, reduction="none"
                )
            for n, k in curvature_names.items() if "curvature" in names else ():
                batch_values[n] = trajectory_curvature(states, mask, variant, k=k, reduction="none")
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
                values["dataset_entropy"] = matrix_entropy(
                    Z, alpha=alpha, normalization=normalization, clamp_gram=clamp_gram
                )
            if "effective_rank" in names:
                values["effective_rank"] = effective_rank(Z, clamp_gram=clamp_gram)

    if {"infonce", "infonce_cosine", "dime"} & set(names):
        view_texts = augment_views(texts, 2, seed=seed)
        view_a, view_b = (
            pooled_states(
                model,
                v,
                pooling,
                batch_size,
                progress,
                batch_budget=batch_budget,
                drop_dims=drop_dims,
                last_depth=last_depth,
            )
            for v in view_texts
        )
        if "infonce" in names:
            values["infonce"] = infonce(view_a, view_b)
        if "infonce_cosine" in names:  # readable where state norms are huge (decoders): cosine similarity
            values["infonce_cosine"] = infonce(view_a, view_b, normalize=True)
        if "dime" in names:
            values["dime"] = dime(view_a, view_b, seed=seed, alpha=alpha, normalization=used["dime_normalization"])

    if "lidar" in names:
        subset = texts if lidar_limit is None else texts[:lidar_limit]
        if len(subset) < 2:
            raise LayerscopeError("lidar needs at least 2 texts")
        views = augment_views(subset, n_augmentations, seed=seed + 1)
        # one run over prompt-major rows: row n * K + k = view k of prompt n
        flat = [views[k][n] for n in range(len(subset)) for k in range(n_augmentations)]
        P = pooled_states(
            model,
            flat,
            pooling,
            batch_size,
            progress,
            batch_budget=batch_budget,
            drop_dims=drop_dims,
            last_depth=last_depth,
        )  # [L + 1, N K, D]
        P = P.reshape(P.shape[0], len(subset), n_augmentations, P.shape[-1])
        values["lidar"] = lidar(P, normalization=normalization, alpha=alpha)

    n_layers = model.n_layers
    out_names = [m for n in names for m in (curvature_names if n == "curvature" else [n])]
    rows = [
        {"depth": d, "relative_depth": d / n_layers, "metric": n, "value": float(values[n][d])}
        for n in out_names
        for d in range(n_layers + 1)
    ]
    table = pd.DataFrame(rows, columns=["depth", "relative_depth", "metric", "value"])
    recorded = {**used, "curvature_k": ",".join(map(str, ks)), "min_tokens": min_tokens, "n_texts": len(texts)}
    return tidy(table, model=model, method="layer_by_layer", **recorded)


def _long_enough(model, texts: list[str], min_tokens: int) -> list[str]:
    """``texts`` with at least ``min_tokens`` tokens; at least 2 must be left."""
    if min_tokens < 0:
        raise LayerscopeError(f"min_tokens must be 0 or more, got {min_tokens}")
    if not min_tokens:
        return texts
    lengths = token_lengths(model, texts)
    kept = [t for t, n in zip(texts, lengths, strict=True) if n >= min_tokens]
    if len(kept) < 2:
        longest = max(lengths, default=0)
        raise LayerscopeError(
            f"only {len(kept)} of {len(texts)} texts have >= {min_tokens} tokens (the longest has {longest}): "
            "lower --min-tokens or give longer texts"
        )
    return kept
