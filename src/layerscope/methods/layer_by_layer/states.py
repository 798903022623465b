"""States at every depth (0 = the embedding output, d = resid_post[d-1]), chunked by length to the budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from layerscope.engine.chunking import DEFAULT_BUDGET, parse_budget, row_bytes
from layerscope.engine.grouping import length_groups
from layerscope.errors import LayerscopeError
from layerscope.methods.layer_by_layer.defaults import DEFAULT_BATCH_SIZE  # cap on prompts per forward chunk
from layerscope.metrics import (
    pool,
)
from layerscope.progress import bar

FINAL_NORMS = ("none", "last", "every")
"""Depths read through the model's final norm: none (the residual stream as is), the last one (HF's
``hidden_states``), or every one (each depth as the last state of the model cut after that block)."""

__all__ = [
    "FINAL_NORMS",
    "depth_states",
    "iter_depth_batches",
    "iter_depth_states",
    "plan_chunks",
    "pooled_states",
    "token_lengths",
]


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
    last_depth: str = "pre-norm",
    final_norm: str | None = None,
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Yield ``(indices, states [L + 1, B, T, D], mask [B, T] bool)`` per chunk (see :func:`plan_chunks`).

    ``indices`` are the positions in ``texts`` of the chunk's rows (chunks come longest
    first, not in text order).  Each chunk is tokenised on its own, left-padded to its longest
    prompt.  ``states[0]`` is the embedding output, ``states[l + 1]`` is ``resid_post[l]``
    (before the final norm).  States stay on the model's device.  ``drop_dims``: hidden
    dimensions set to zero at every depth (an ablation, e.g. of massive-activation dimensions).
    ``last_depth="post-norm"``: ``states[L]`` is the final norm of ``resid_post[L-1]``, HF's last
    ``hidden_states`` entry, as the Layer-by-Layer authors read it (a model without a final norm,
    e.g. BERT, is unchanged).  ``final_norm`` (one of :data:`FINAL_NORMS`; None = from ``last_depth``:
    pre-norm -> ``"none"``, post-norm -> ``"last"``): ``"every"`` puts every depth through the final
    norm, each depth then being the last hidden state of the model cut after that block (the
    Layer-by-Layer authors' MTEB embeddings load the model with ``num_hidden_layers = l`` so).
    """
    if last_depth not in ("pre-norm", "post-norm"):
        raise LayerscopeError(f"last_depth must be 'pre-norm' or 'post-norm', got {last_depth!r}")
    if final_norm is None:
        final_norm = "last" if last_depth == "post-norm" else "none"
    if final_norm not in FINAL_NORMS:
        raise LayerscopeError(f"final_norm must be one of {', '.join(FINAL_NORMS)}, got {final_norm!r}")
    norm = model.adapter.final_norm if final_norm != "none" else None
    texts = list(texts)
    if not texts:
        raise LayerscopeError("no texts given")
    dims = _check_dims(drop_dims, model.d_model)
    plan = plan_chunks(model, texts, batch_size, batch_budget)
    for index in bar(plan, progress=progress, desc=desc, leave=False):
        result = model.run([texts[i] for i in index], capture=[("resid_pre", [0]), "resid_post"], logits=None)
        states = torch.cat([result.get("resid_pre", 0)[None], result.stack("resid_post")], dim=0)
        if norm is not None:
            with torch.no_grad():
                if final_norm == "every":
                    states = norm(states)
                else:
                    states[-1] = norm(states[-1])
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
    last_depth: str = "pre-norm",
    final_norm: str | None = None,
) -> Tensor:
    """Pooled embeddings ``[L + 1, N, D]`` (float32, CPU) of ``texts`` at every depth, in text order.

    ``last_depth``, ``final_norm``: which depths go through the final norm (:func:`iter_depth_batches`).
    """
    index, pooled = [], []
    for i, s, m in iter_depth_batches(
        model,
        texts,
        batch_size,
        progress,
        batch_budget=batch_budget,
        drop_dims=drop_dims,
        last_depth=last_depth,
        final_norm=final_norm,
    ):
        index += i
        pooled.append(pool(s, m, pooling).float().cpu())
    return torch.cat(pooled, dim=1)[:, torch.argsort(torch.tensor(index))]
