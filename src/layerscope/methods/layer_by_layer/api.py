"""Layer by Layer (Skean et al., ICML 2025): representation metrics and linear probes per depth.

*Depth* ``d = 0..L`` indexes the residual stream of an ``L``-layer model: ``d = 0`` is the
embedding output (``resid_pre[0]``) and ``d = l + 1`` is ``resid_post[l]``, the output of block
``l`` -- *before* the final norm (so depth ``L`` differs from HF's last ``hidden_states`` entry on
decoders, which is after the final norm; for BERT there is no final norm and they agree).

Memory and time: the states of all prompts at all depths are never held at once.  Texts are
run in chunks sorted by token count (little padding), each as large as ``batch_budget`` allows
and at most ``batch_size`` (:func:`plan_chunks`); per-prompt metrics (prompt entropy, curvature)
are accumulated as sums over prompts, and dataset-level metrics (dataset entropy, effective rank,
InfoNCE, LiDAR, DiME, probes) keep only the pooled vectors ``[L + 1, N, D]``.  The forward
passes dominate the cost: the metric math on ``[L + 1, N, D]`` takes seconds (see
:mod:`layerscope.metrics`).

LiDAR runs ``n_augmentations`` augmented copies of every prompt, so by default it uses only the
first ``lidar_limit = 64`` texts (64 x 16 = 1024 forward rows, the most expensive metric).

Several models side by side: :func:`compare_models` and :func:`compare_probes` return one tidy
table with a ``model`` column and ``relative_depth = depth / L`` (0 to 1), as in the paper's
figures; :func:`top_dimensions` finds massive-activation dimensions and ``drop_dims`` ablates them.
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
from layerscope.engine.chunking import DEFAULT_BUDGET, parse_budget, row_bytes
from layerscope.engine.grouping import length_groups
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
from layerscope.readout.probes import probe_accuracy
from layerscope.results.contract import tidy
from layerscope.results.io import Checkpoint

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

DEFAULT_BATCH_SIZE = 32
"""Default cap on prompts per forward chunk (the memory budget may make chunks smaller)."""


def _progress(progress: bool) -> bool:
    return bool(progress) and sys.stderr.isatty()


def token_lengths(model, texts: Sequence[str]) -> list[int]:
    """Tokens per text, special tokens included (as :meth:`Model.run` tokenises them)."""
    return [len(model.tokenizer(text)["input_ids"]) for text in texts]


def plan_chunks(
    model,
    texts: Sequence[str],
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> list[list[int]]:
    """Indices of ``texts`` per forward chunk: longest first, sized to the memory budget.

    Texts are sorted by token count (descending, stable), so each chunk pads little and the
    largest chunk runs first (a budget that is too large fails at once, not at the end).  A
    chunk holds as many rows as ``batch_budget`` allows for its longest text with every depth
    captured (:func:`layerscope.engine.chunking.row_bytes` with ``captured_states = L + 1``),
    and at most ``batch_size`` (None = no cap).
    """
    if batch_size is not None and batch_size < 1:
        raise LayerscopeError(f"batch_size must be >= 1, got {batch_size}")
    parse_budget(batch_budget)  # a bad budget fails before any work
    return length_groups(
        token_lengths(model, texts),
        lambda length: row_bytes(model, length, captured_states=model.n_layers + 1),
        batch_budget,
        max_rows=batch_size,
        longest_first=True,
    )


def iter_depth_batches(
    model,
    texts: Sequence[str],
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "depths",
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    drop_dims: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Yield ``(indices, states [L + 1, B, T, D], mask [B, T] bool)`` per chunk (see :func:`plan_chunks`).

    ``indices`` are the positions in ``texts`` of the chunk's rows (chunks come longest
    first, not in text order).  Each chunk is tokenised on its own, left-padded to its longest
    prompt.  ``states[0]`` is the embedding output, ``states[l + 1]`` is ``resid_post[l]``
    (before the final norm).  States stay on the model's device.  ``drop_dims``: hidden
    dimensions set to zero at every depth (an ablation, e.g. of massive-activation dimensions).
    """
    texts = list(texts)
    if not texts:
        raise LayerscopeError("no texts given")
    dims = _check_dims(drop_dims, model.d_model)
    plan = plan_chunks(model, texts, batch_size, batch_budget)
    for index in tqdm(plan, desc=desc, disable=not _progress(progress) or len(plan) <= 1, leave=False):
        result = model.run([texts[i] for i in index], capture=[("resid_pre", [0]), "resid_post"], logits=None)
        states = torch.cat([result.get("resid_pre", 0)[None], result.stack("resid_post")], dim=0)
        if dims:
            states[..., dims] = 0.0
        yield index, states, result.batch.attention_mask.bool()


def _check_dims(dims: Sequence[int] | None, d_model: int) -> list[int]:
    dims = sorted({int(d) for d in dims or ()})
    bad = [d for d in dims if not 0 <= d < d_model]
    if bad:
        raise LayerscopeError(f"drop_dims {bad} out of range: hidden dimensions are 0..{d_model - 1}")
    return dims


def iter_depth_states(
    model,
    texts: Sequence[str],
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "depths",
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> Iterator[tuple[Tensor, Tensor]]:
    """:func:`iter_depth_batches` without the indices: for order-free sums over prompts."""
    for _, states, mask in iter_depth_batches(model, texts, batch_size, progress, desc, batch_budget=batch_budget):
        yield states, mask


def depth_states(
    model,
    texts: Sequence[str],
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> tuple[Tensor, Tensor]:
    """All states at once, in text order: ``(states [L + 1, N, T, D] on CPU, mask [N, T] bool)``, left-padded.

    Convenient for small inputs; for many prompts use :func:`iter_depth_batches` (memory grows as
    ``(L + 1) N T D``).  Padding positions are zero.
    """
    parts = [
        (i, s.cpu(), m.cpu())
        for i, s, m in iter_depth_batches(model, texts, batch_size, progress, batch_budget=batch_budget)
    ]
    length = max(m.shape[1] for _, _, m in parts)
    index, states, masks = [], [], []
    for i, s, m in parts:
        pad = length - m.shape[1]
        index += i
        states.append(torch.nn.functional.pad(s, (0, 0, pad, 0)))
        masks.append(torch.nn.functional.pad(m, (pad, 0), value=False))
    inverse = torch.argsort(torch.tensor(index))
    return torch.cat(states, dim=1)[:, inverse], torch.cat(masks, dim=0)[inverse]


def pooled_states(
    model,
    texts: Sequence[str],
    pooling: str = "mean",
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    drop_dims: Sequence[int] | None = None,
) -> Tensor:
    """Pooled embeddings ``[L + 1, N, D]`` (float32, CPU) of ``texts`` at every depth, in text order."""
    index, pooled = [], []
    for i, s, m in iter_depth_batches(
        model, texts, batch_size, progress, batch_budget=batch_budget, drop_dims=drop_dims
    ):
        index += i
        pooled.append(pool(s, m, pooling).float().cpu())
    return torch.cat(pooled, dim=1)[:, torch.argsort(torch.tensor(index))]


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
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    drop_dims: Sequence[int] | None = None,
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
        batch_size, batch_budget: at most ``batch_size`` prompts per forward chunk, and no more
            than fit ``batch_budget`` (e.g. ``"512MB"``) of activations; see :func:`plan_chunks`.
        drop_dims: hidden dimensions zeroed at every depth before any metric (an ablation:
            see :func:`top_dimensions` for the massive-activation dimensions).

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
        for _, states, mask in iter_depth_batches(
            model, texts, batch_size, progress, desc="metrics", batch_budget=batch_budget, drop_dims=drop_dims
        ):
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

    if {"infonce", "infonce_cosine", "dime"} & set(names):
        view_texts = augment_views(texts, 2, seed=seed)
        view_a, view_b = (
            pooled_states(model, v, pooling, batch_size, progress, batch_budget=batch_budget, drop_dims=drop_dims)
            for v in view_texts
        )
        if "infonce" in names:
            values["infonce"] = infonce(view_a, view_b)
        if "infonce_cosine" in names:  # readable where state norms are huge (decoders): cosine similarity
            values["infonce_cosine"] = infonce(view_a, view_b, normalize=True)
        if "dime" in names:
            values["dime"] = dime(view_a, view_b, seed=seed, alpha=alpha)

    if "lidar" in names:
        subset = texts if lidar_limit is None else texts[:lidar_limit]
        if len(subset) < 2:
            raise LayerscopeError("lidar needs at least 2 texts")
        views = augment_views(subset, n_augmentations, seed=seed + 1)
        # one run over prompt-major rows: row n * K + k = view k of prompt n
        flat = [views[k][n] for n in range(len(subset)) for k in range(n_augmentations)]
        P = pooled_states(
            model, flat, pooling, batch_size, progress, batch_budget=batch_budget, drop_dims=drop_dims
        )  # [L + 1, N K, D]
        P = P.reshape(P.shape[0], len(subset), n_augmentations, P.shape[-1])
        values["lidar"] = lidar(P, normalization=normalization, alpha=alpha)

    n_layers = model.n_layers
    rows = [
        {"depth": d, "relative_depth": d / n_layers, "metric": n, "value": float(values[n][d])}
        for n in names
        for d in range(n_layers + 1)
    ]
    table = pd.DataFrame(rows, columns=["depth", "relative_depth", "metric", "value"])
    return tidy(table, model=model, method="layer_by_layer")


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
    Z = pooled_states(model, texts, pooling, batch_size, progress, batch_budget=batch_budget).double().numpy()
    rows = []
    for d in range(Z.shape[0]):
        mean, std = probe_accuracy(Z[d], labels, folds, seed)
        rows.append(
            {"depth": d, "relative_depth": d / model.n_layers, "accuracy": mean, "accuracy_std": std, "n": len(texts)}
        )
    return tidy(pd.DataFrame(rows), model=model, method="layer_by_layer")


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


# ---- several models side by side -------------------------------------------------------------


def _key(entry) -> str:
    return entry if isinstance(entry, str) else entry.name


def _load(entry, load_options: dict | None):
    """A name or path is loaded now (one model is held at a time); a loaded model is used as is."""
    if not isinstance(entry, str):
        return entry
    from layerscope.models.model import load

    return load(entry, **(load_options or {}))


def _check_names(models: Sequence) -> list:
    models = list(models)
    if not models:
        raise LayerscopeError("no model given")
    keys = [_key(m) for m in models]
    if len(set(keys)) != len(keys):
        raise LayerscopeError(f"a model is listed twice: {keys}")
    return models


def compare_models(
    models: Sequence,
    texts: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    checkpoint: Checkpoint | None = None,
    load_options: dict | None = None,
    progress: bool = True,
    **options,
) -> pd.DataFrame:
    """The same Layer-by-Layer metrics on several models, against relative depth.

    Args:
        models: loaded :class:`~layerscope.models.model.Model` objects and/or names or paths for
            :func:`layerscope.load` (loaded one at a time, with ``load_options``, and released
            before the next).
        texts, metrics, options: as in :func:`representation_metrics` (same texts, same
            augmentations and seeds for every model).
        checkpoint: an :class:`layerscope.results.io.Checkpoint`; a model already in it is not run
            (nor loaded) again, and each finished model is added to it.

    Returns:
        DataFrame ``model, depth, relative_depth, metric, value``: ``relative_depth = depth / L``
        runs from 0 (embeddings) to 1 (last block) whatever the model's depth, so models of
        different depths share an axis, as in the paper's figures.
    """
    models = _check_names(models)
    names = [canonical_metric(m) for m in metrics]  # fail on a bad name before loading anything
    tables = []
    for entry in models:
        key = _key(entry)
        if checkpoint is not None and checkpoint.done(key):
            tables.append(pd.DataFrame(checkpoint.rows_of(key)))
            continue
        model = _load(entry, load_options)
        if progress:
            print(f"metrics on {model.name} ({model.n_layers} layers) ...", file=sys.stderr, flush=True)
        table = representation_metrics(model, texts, names, progress=progress, **options)  # rows name the model
        if checkpoint is not None:
            checkpoint.add(key, table.to_dict(orient="records"))
        tables.append(table)
        del model
    table = pd.concat(tables, ignore_index=True)[["model", "depth", "relative_depth", "metric", "value"]]
    return tidy(table, model=None, method="layer_by_layer")


def compare_probes(
    models: Sequence,
    tasks: dict[str, tuple[Sequence[str], Sequence]],
    *,
    checkpoint: Checkpoint | None = None,
    load_options: dict | None = None,
    progress: bool = True,
    **options,
) -> pd.DataFrame:
    """:func:`probe_layers` for every (model, task): ``model, task, depth, relative_depth, accuracy, accuracy_std, n``.

    Args:
        models: as in :func:`compare_models`.
        tasks: ``{name: (texts, labels)}``.
        checkpoint: units are ``[model, task]``; finished ones are skipped.
        options: passed to :func:`probe_layers` (pooling, folds, seed, batch_size, batch_budget).
    """
    models = _check_names(models)
    if not tasks:
        raise LayerscopeError("no task given")
    tables = []
    for entry in models:
        key = _key(entry)
        todo = [t for t in tasks if checkpoint is None or not checkpoint.done([key, t])]
        model = _load(entry, load_options) if todo else None
        for task, (texts, labels) in tasks.items():
            if task not in todo:
                tables.append(pd.DataFrame(checkpoint.rows_of([key, task])))
                continue
            if progress:
                print(f"probe {task} on {model.name} ...", file=sys.stderr, flush=True)
            table = probe_layers(model, texts, labels, progress=progress, **options)
            table.insert(2, "task", task)  # after model, method
            if checkpoint is not None:
                checkpoint.add([key, task], table.to_dict(orient="records"))
            tables.append(table)
        del model
    columns = ["model", "task", "depth", "relative_depth", "accuracy", "accuracy_std", "n"]
    return tidy(pd.concat(tables, ignore_index=True)[columns], model=None, method="layer_by_layer")


def probe_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_vs_last` per ``model`` and ``task`` (whichever of the two columns exist)."""
    keys = [k for k in ("model", "task") if k in table.columns]
    if not keys:
        return pd.DataFrame([best_vs_last(table)])
    rows = []
    for values, group in table.groupby(keys, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        n_layers = int(group["depth"].max())
        summary = best_vs_last(group.reset_index(drop=True))
        rows.append(
            {**dict(zip(keys, values, strict=True)), **summary, "best_relative_depth": summary["best_depth"] / n_layers}
        )
    return pd.DataFrame(rows)


# ---- massive activations ---------------------------------------------------------------------


def top_dimensions(
    model,
    texts: Sequence[str],
    top: int = 3,
    *,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = True,
) -> pd.DataFrame:
    """The hidden dimensions of largest magnitude at every depth (massive activations).

    Over all real tokens of ``texts``: for each depth and dimension ``j`` the mean ``|z_j|``;
    the ``top`` dimensions by that mean are reported with ``mean_abs``, ``max_abs`` (largest
    ``|z_j|`` of any token), ``ratio`` (``mean_abs`` over the median of the per-dimension
    means at that depth) and ``norm_share`` (mean over tokens of ``z_j^2 / |z|^2``: the share
    of the token's squared norm that one dimension carries).

    Returns:
        DataFrame ``depth, relative_depth, rank, dim, mean_abs, max_abs, ratio, norm_share``
        (``rank`` 0 = the largest).
    """
    if top < 1:
        raise LayerscopeError(f"top must be >= 1, got {top}")
    top = min(top, model.d_model)
    abs_sum = max_abs = share_sum = None
    tokens = 0
    for _, states, mask in iter_depth_batches(
        model, texts, batch_size, progress, desc="dimensions", batch_budget=batch_budget
    ):
        z = states.double()[:, mask]  # [L + 1, n_tokens, D] real tokens only
        sq = z.square()
        share = sq / sq.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        a, m, sh = z.abs().sum(dim=1).cpu(), z.abs().amax(dim=1).cpu(), share.sum(dim=1).cpu()
        abs_sum = a if abs_sum is None else abs_sum + a
        max_abs = m if max_abs is None else torch.maximum(max_abs, m)
        share_sum = sh if share_sum is None else share_sum + sh
        tokens += z.shape[1]
    mean_abs = abs_sum / tokens  # [L + 1, D]
    median = mean_abs.quantile(0.5, dim=-1)  # [L + 1] (the mean of the middle two for even D)
    order = mean_abs.argsort(dim=-1, descending=True)[:, :top]
    rows = []
    for depth in range(mean_abs.shape[0]):
        for rank, dim in enumerate(order[depth].tolist()):
            rows.append(
                {
                    "depth": depth,
                    "relative_depth": depth / model.n_layers,
                    "rank": rank,
                    "dim": dim,
                    "mean_abs": float(mean_abs[depth, dim]),
                    "max_abs": float(max_abs[depth, dim]),
                    "ratio": float(mean_abs[depth, dim] / median[depth]),
                    "norm_share": float(share_sum[depth, dim] / tokens),
                }
            )
    return pd.DataFrame(rows)
