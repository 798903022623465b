"""Sweeps over layers: one clean run, then each layer's variants started at that layer.

A sweep asks "what if I intervene from layer k on?" for many k (activation patching over
(layer, position), past-token manipulations from layer k, Patchscopes over target layers).
Below k nothing differs from the clean run, so the clean run is done once, its ``resid_pre[k]``
states are kept, and the variants of layer k run blocks ``k..L-1`` only (``run(start_layer=k)``),
stacked in the batch dimension and chunked to a memory budget. With ``prefix_length`` the
unchanged leading tokens come from the clean run's KV cache as well (one unpadded prompt).

With one unpadded prompt the layers are not run one after the other but **staggered**: one
forward per chunk in which each row joins the batch at its own start layer
(:mod:`layerscope.engine.stagger`), so the weights are read once per chunk rather than once per
layer. Several prompts (padded, with masks of their own) run one batch per layer.

Every method's sweep goes through :func:`sweep_layers`; it yields chunks so that a caller can
reduce each chunk's logits to the few numbers it needs before the next chunk runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from layerscope.engine.batch import Batch, tokenize
from layerscope.engine.chunking import chunks, row_bytes, rows_per_chunk
from layerscope.engine.interventions import Intervention, resolve_layers
from layerscope.engine.result import RunResult
from layerscope.engine.run import run
from layerscope.errors import InterventionError


@dataclass
class SweepChunk:
    """One chunk of a sweep.

    Attributes:
        layer: the start layer k of these variants.
        prompts: which prompts of the sweep (a slice of the prompt batch).
        variants: which of layer k's variants (a slice of ``layer_variants[k]``).
        result: the run; row ``p * V' + v`` = prompt ``prompts.start + p``, variant ``variants.start + v``
            (V' = the number of variants in this chunk).
    """

    layer: int
    prompts: slice
    variants: slice
    result: RunResult

    @property
    def n_variants(self) -> int:
        return self.variants.stop - self.variants.start

    def last_logits(self) -> torch.Tensor:
        """``[P', V', vocab]`` next-token logits per prompt and variant of this chunk."""
        logits = self.result.last_logits
        return logits.view(-1, self.n_variants, logits.shape[-1])


def clean_run(model, prompts: Batch, layers: Sequence[int], *, keep_cache: bool = False) -> RunResult:
    """The unmodified run with ``resid_pre`` captured at ``layers`` (the start states of a sweep)."""
    capture = [("resid_pre", sorted(set(layers)))] if layers else None
    return run(model, prompts, capture=capture, logits="last", keep_cache=keep_cache)


def sweep_layers(
    model,
    prompts: str | Sequence[str] | Batch,
    layer_variants: Mapping[int, Sequence[Sequence[Intervention]]],
    *,
    clean: RunResult | None = None,
    prefix: RunResult | None = None,
    prefix_length: int = 0,
    logits: str | None = "last",
    capture=None,
    capture_positions=None,
    batch_budget: str | int | None = None,
    progress: bool = True,
    desc: str = "sweep",
    stagger: bool = True,
    grad: bool = False,
) -> Iterator[SweepChunk]:
    """Run each layer's variants from that layer on, reusing the clean run below it.

    Args:
        prompts: the prompts every variant runs on (P of them).
        layer_variants: ``{k: [variant, ...]}``; a variant is a list of interventions, all of
            which must act at layers ``>= k`` (they start from the clean ``resid_pre[k]``).
        clean: a clean run of the same prompts with ``resid_pre`` captured at every k
            (made here when not given; see :func:`clean_run`).
        prefix_length: the first N tokens are unchanged in every variant (no intervention
            touches them): reuse the clean run's KV cache for them. Needs one unpadded prompt.
        prefix: the run whose KV cache holds those N tokens (``keep_cache=True``; default: ``clean``),
            e.g. a run of the first N tokens alone, whose cache needs no cutting back.
        logits, capture, capture_positions: as in :func:`layerscope.engine.run.run`.
        batch_budget: memory budget per chunk (e.g. ``"512MB"``); None = one chunk per layer
            (one chunk in all when staggered).
        stagger: with one unpadded prompt, run every layer's variants in one forward per chunk,
            each row joining the batch at its layer (:mod:`layerscope.engine.stagger`): the same
            arithmetic as one run per layer, but one pass over the weights. False = one run per layer.
        grad: run every chunk with autograd (see ``run(grad=True)``).
    Yields:
        :class:`SweepChunk` per (layer, chunk of prompts, chunk of variants), layers in order.
    """
    batch = prompts if isinstance(prompts, Batch) else tokenize(model.tokenizer, prompts, model.device)
    layers = sorted(resolve_layers(k, model.n_layers)[0] for k in layer_variants)
    variants_of = {resolve_layers(k, model.n_layers)[0]: list(v) for k, v in layer_variants.items()}
    for k in layers:
        _check_variants(variants_of[k], k, model.n_layers)
    if prefix_length and batch.size != 1:
        raise InterventionError("prefix_length reuse needs exactly one prompt (variants of one prompt)")
    caps = model.caps
    if not caps.prefix_reuse:  # an SSM / recurrent cache cannot be cut back: compute the prefix too
        prefix_length, prefix = 0, None
    # where skipping the lower blocks is not exact, every variant runs from the embedding (the
    # clean states it would start from are what those blocks compute anyway)
    from_layer = (lambda k: k) if caps.start_layer else (lambda k: 0)
    starts = [k for k in layers if from_layer(k) > 0]
    if clean is None and (starts or (prefix_length and prefix is None)):
        clean = clean_run(model, batch, starts, keep_cache=bool(prefix_length) and prefix is None)
    prefix = prefix if prefix is not None else clean
    if prefix_length and prefix.past_key_values is None:
        raise InterventionError("prefix_length needs a clean run (or prefix=) with keep_cache=True")

    total_rows = sum(batch.size * len(variants_of[k]) for k in layers)
    stagger = stagger and caps.staggered and batch.size == 1 and not any(batch.pad)
    per_row = row_bytes(
        model,
        batch.length - prefix_length,
        logits_positions=batch.length if logits == "all" else 1 if logits else 0,
        captured_states=_count_captures(capture, model.n_layers),
        cached_positions=batch.length if prefix_length else 0,  # the repeated prefix cache grows to T
        cached_layers=1 if stagger else None,  # staggered: one block's widened cache at a time
    )
    from layerscope.progress import bar

    bar = bar(progress=progress, total=total_rows, desc=desc, unit="run")
    run_kwargs = {
        "logits": logits,
        "capture": capture,
        "capture_positions": capture_positions,
        "prefix": prefix if prefix_length else None,
        "prefix_length": prefix_length,
        "grad": grad,
    }
    try:
        if stagger:
            yield from _staggered(model, batch, layers, variants_of, clean, per_row, batch_budget, bar, run_kwargs)
            return
        for k in layers:
            variants = variants_of[k]
            if not variants:
                continue
            n_variants = len(variants)
            rows = rows_per_chunk(batch_budget, per_row, batch.size * n_variants)
            variant_step = max(1, min(n_variants, rows))
            prompt_step = max(1, rows // variant_step)
            for prompt_part in chunks(batch.size, prompt_step, progress=False):
                sub = batch.select(prompt_part)
                states = None
                if from_layer(k) > 0:
                    states = clean.get("resid_pre", k)[prompt_part, prefix_length:]
                for variant_part in chunks(n_variants, variant_step, progress=False):
                    chosen = variants[variant_part]
                    start = states
                    if states is not None and len(chosen) > 1:
                        start = states.repeat_interleave(len(chosen), dim=0)
                    result = run(
                        model, sub, variants=chosen, start_layer=from_layer(k), start_states=start, **run_kwargs
                    )
                    bar.update(sub.size * len(chosen))
                    yield SweepChunk(k, prompt_part, variant_part, result)
    finally:
        bar.close()


def _staggered(model, batch, layers, variants_of, clean, per_row, batch_budget, bar, run_kwargs):
    """One prompt: every layer's variants in one forward per chunk, rows joining at their layer."""
    rows = [(k, v) for k in layers for v in range(len(variants_of[k]))]
    prefix_length = run_kwargs["prefix_length"]
    for part in chunks(len(rows), rows_per_chunk(batch_budget, per_row, len(rows)), progress=False):
        chosen = rows[part]
        starts = [k for k, _ in chosen]
        states = {k: clean.get("resid_pre", k)[:, prefix_length:] for k in set(starts) if k > 0}
        variants = [variants_of[k][v] for k, v in chosen]
        result = run(model, batch, variants=variants, start_layer=starts, start_states=states, **run_kwargs)
        bar.update(len(chosen))
        first = 0
        while first < len(chosen):
            k = chosen[first][0]
            last = first
            while last < len(chosen) and chosen[last][0] == k:
                last += 1
            variant_slice = slice(chosen[first][1], chosen[last - 1][1] + 1)
            yield SweepChunk(k, slice(0, 1), variant_slice, result.select_rows(slice(first, last), from_layer=k))
            first = last


def _check_variants(variants: Sequence[Sequence[Intervention]], start: int, n_layers: int) -> None:
    for variant in variants:
        for iv in variant:
            low = min(resolve_layers(iv.layers, n_layers))
            if low < start:
                raise InterventionError(
                    f"an intervention at {iv.site}[{low}] is listed under start layer {start}: a sweep "
                    f"variant of layer k may only act at layers >= k (list it under layer {low} or lower)"
                )


def _count_captures(capture, n_layers: int) -> int:
    from layerscope.engine.run import parse_capture

    return sum(len(layers) for layers in parse_capture(capture, n_layers).values())
