"""Capture hidden states of many texts to disk, one shard at a time (``layerscope capture --out DIR``).

Holding every state of a large text set in memory is what a capture must not need: the texts are
planned into shards up front (:func:`layerscope.results.shards.plan_shards`), the size of the whole
capture is known (and said) before anything runs, and each shard is computed and written before
the next starts, so memory holds one shard at most and an interrupted capture resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from layerscope.engine.batch import Batch
from layerscope.errors import LayerscopeError

__all__ = ["CapturePlan", "capture_batches", "capture_to_shards", "plan_capture"]


@dataclass(frozen=True)
class CapturePlan:
    """What a sharded capture will write: each text's token ids, prompt ranges per shard, the bytes in all."""

    token_ids: list[list[int]]
    ranges: list[tuple[int, int]]
    total_bytes: int
    bytes_per_token: int

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]


def capture_batches(model, batch: Batch, sites: Sequence[str], layers: Sequence[int], batch_size: int) -> dict:
    """``{site: [layer, prompt, position, hidden]}`` for ``batch``, ``batch_size`` prompts per forward."""
    chunks: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    for start in range(0, batch.size, batch_size):
        rows = slice(start, start + batch_size)
        sub = type(batch)(
            batch.prompts[rows],
            batch.input_ids[rows],
            batch.attention_mask[rows],
            None if batch.position_ids is None else batch.position_ids[rows],
            batch.pad[rows],
        )
        result = model.run(sub, capture=[(s, list(layers)) for s in sites], logits=None)
        for site in sites:
            chunks[site].append(result.stack(site, list(layers)).cpu())
    return {site: torch.cat(parts, dim=1).contiguous() for site, parts in chunks.items()}


def plan_capture(
    model, texts: Sequence[str], sites: Sequence[str], layers: Sequence[int], shard_size: int
) -> CapturePlan:
    """Shards of consecutive texts whose states stay under ``shard_size`` bytes each."""
    from layerscope.results.shards import plan_shards, shard_bytes

    token_ids = model.tokenizer(list(texts))["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    if any(n == 0 for n in lengths):
        raise LayerscopeError(f"text {lengths.index(0)} has no tokens: remove empty texts")
    per_token = len(sites) * len(layers) * model.d_model * model.dtype.itemsize
    ranges = plan_shards(lengths, per_token, shard_size)
    return CapturePlan(token_ids, ranges, shard_bytes(lengths, ranges, per_token), per_token)


def capture_to_shards(
    model,
    texts: Sequence[str],
    folder: str | os.PathLike,
    *,
    sites: Sequence[str] = ("resid_post",),
    layers: Sequence[int] | None = None,
    shard_size: int = 1 << 30,
    batch_size: int = 16,
    restart: bool = False,
    plan: CapturePlan | None = None,
    on_shard: Callable[[int, int], None] | None = None,
) -> dict:
    """Capture ``sites`` at ``layers`` for every text into shards in ``folder``; returns the index.

    Args:
        shard_size: bytes of states per shard (a target; a text longer than that gets a shard alone).
        restart: replace a capture of another config in ``folder`` (else an error).
        plan: from :func:`plan_capture` (to report its size first); made here when None.
        on_shard: ``(shards done, shards in all)`` after each shard (a progress bar).
    """
    from layerscope.readout.tokens import token_strings
    from layerscope.results.io import texts_hash
    from layerscope.results.shards import ShardWriter

    texts = list(texts)
    if not texts:
        raise LayerscopeError("no text to capture")
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    plan = plan or plan_capture(model, texts, sites, layers, shard_size)
    config = {"model": model.name, "source": model.source, "sites": list(sites), "layers": layers,
              "shard_size": shard_size, "n_texts": len(texts), "texts_hash": texts_hash(texts)}  # fmt: skip
    writer = ShardWriter(folder, config, restart=restart)
    for shard, (a, b) in enumerate(plan.ranges):
        if not writer.done(shard):
            batch = model.tokenize(texts[a:b])  # padded to this shard's longest text only
            tensors = capture_batches(model, batch, sites, layers, batch_size)
            tensors["input_ids"] = batch.input_ids.cpu()
            tensors["attention_mask"] = batch.attention_mask.cpu()
            writer.write(shard, (a, b), tensors)
        if on_shard is not None:
            on_shard(shard + 1, len(plan.ranges))
    tokens = [token_strings(model.tokenizer, ids) for ids in plan.token_ids]
    layout = {site: {"layers": layers, "dims": ["layer", "prompt", "position", "hidden"]} for site in sites}
    writer.finish(texts=texts, tokens=tokens, padding="left", layout=layout, total_bytes=plan.total_bytes,
                  note="resid_post[l] is the output of block l, before the final norm")  # fmt: skip
    return writer.index

