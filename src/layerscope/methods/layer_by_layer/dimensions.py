"""The hidden dimensions with the largest activations per depth (massive activations)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer.states import DEFAULT_BATCH_SIZE, iter_depth_batches

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
