"""Exact paths for models on which a batching shortcut does not hold (the self-check says which).

- **By start layer**: per-row start layers (one staggered batch) assume that what the model builds
  for one row (masks, ALiBi biases, extra inputs) broadcasts to many. Bloom's ``[batch*heads, 1, T]``
  ALiBi, XGLM's exact mask-shape check and Zamba's concatenation with the input embeddings do not:
  there, each group of rows with one start layer runs as its own batch.
- **By length**: left padding assumes the model honours the attention mask and the given
  positions. RWKV takes no mask at all: there, prompts of one length run as one unpadded batch
  and the results are put back into the left-padded layout (pad positions hold zeros).

Both give the rows the shortcut would give; they only cost more forward calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from layerscope.engine.batch import Batch
from layerscope.engine.interventions import Intervention
from layerscope.engine.result import RunResult


def _rows_of(ivs: Sequence[Intervention], rows: list[int]) -> list[Intervention]:
    """The interventions of batch rows ``rows``, renumbered to ``0..len(rows)-1``."""
    where = {r: i for i, r in enumerate(rows)}
    out = []
    for iv in ivs:
        if iv.rows is None:
            out.append(iv)
            continue
        mine = [where[r] for r in iv.rows if r in where]
        if mine:
            out.append(iv.on_rows(mine))
    return out


def _capture_from(capture, n_layers: int, low: int):
    from layerscope.engine.run import parse_capture

    spec = parse_capture(capture, n_layers)
    kept = [(site, sorted(l for l in layers if l >= low)) for site, layers in spec.items()]
    return [(site, layers) for site, layers in kept if layers] or None


def run_by_start(
    model, batch: Batch, ivs, n_variants: int, starts: list[int], start_states, capture, capture_positions,
    logits, prefix, prefix_length: int, grad: bool = False,
) -> RunResult:  # fmt: skip
    """A staggered run (rows of one prompt, sorted start layers) as one run per start layer."""
    from layerscope.engine.interventions import resolve_layers
    from layerscope.engine.run import run

    starts = [resolve_layers(s, model.n_layers)[0] for s in starts]
    groups: list[tuple[int, list[int]]] = []
    for row, k in enumerate(starts):
        if groups and groups[-1][0] == k:
            groups[-1][1].append(row)
        else:
            groups.append((k, [row]))
    lifted = 0  # index into a [n, T, D] tensor of the rows that start above 0
    results = []
    for k, rows in groups:
        states = None
        if k > 0:
            if isinstance(start_states, dict):
                states = start_states[k]
            else:
                states = start_states[lifted : lifted + len(rows)]
                lifted += len(rows)
            if states.shape[0] == 1 and len(rows) > 1:
                states = states.expand(len(rows), -1, -1)
        results.append(
            run(
                model, batch.select(rows), interventions=_rows_of(ivs, rows), start_layer=k, start_states=states,
                capture=_capture_from(capture, model.n_layers, k), capture_positions=capture_positions,
                logits=logits, prefix=prefix, prefix_length=prefix_length, grad=grad,
            )  # fmt: skip
        )
    cache: dict = {}
    for result in results:  # a layer holds the rows that had started by then (as a staggered run)
        for key, states in result.cache.items():
            cache.setdefault(key, []).append(states)
    return RunResult(
        n_layers=model.n_layers,
        batch=batch,
        logits=None if results[0].logits is None else torch.cat([r.logits for r in results]),
        cache={key: torch.cat(parts) for key, parts in cache.items()},
        offset=results[0].offset,
        n_variants=n_variants,
        capture_positions=capture_positions,
    )


def length_groups(batch: Batch) -> list[tuple[list[int], int, Batch]]:
    """``(rows, pad, the rows as one unpadded batch)`` for each prompt length of a left-padded batch."""
    by_pad: dict[int, list[int]] = {}
    for row, pad in enumerate(batch.pad):
        by_pad.setdefault(pad, []).append(row)
    groups = []
    for pad, rows in by_pad.items():
        sub = batch.select(rows)
        groups.append((rows, pad, Batch(sub.prompts, sub.input_ids[:, pad:], sub.attention_mask[:, pad:], None,
                                        [0] * len(rows))))  # fmt: skip
    return groups


def run_by_length(
    model, batch: Batch, ivs, n_variants: int, start_layer, start_states, loop, capture, capture_positions, logits,
    grad: bool = False,
) -> RunResult:  # fmt: skip
    """A left-padded run as one unpadded run per prompt length, put back into the padded layout."""
    from layerscope.engine.run import run

    out_logits, cache = None, {}
    for rows, pad, sub in length_groups(batch):
        states = start_states
        if isinstance(states, torch.Tensor):
            states = (states if states.shape[0] == 1 else states[rows])[:, pad:]
        result = run(
            model, sub, interventions=_rows_of(ivs, rows), start_layer=start_layer, start_states=states, loop=loop,
            capture=capture, capture_positions=capture_positions, logits=logits, grad=grad,
        )  # fmt: skip
        index = torch.tensor(rows, device=batch.input_ids.device)
        if result.logits is not None:
            if out_logits is None:
                width = batch.length if logits == "all" else 1
                out_logits = result.logits.new_zeros(batch.size, width, result.logits.shape[-1])
            out_logits[index, out_logits.shape[1] - result.logits.shape[1] :] = result.logits
        for key, part in result.cache.items():
            if key not in cache:
                width = part.shape[1] if capture_positions is not None else batch.length
                cache[key] = part.new_zeros(batch.size, width, part.shape[-1])
            cache[key][index, cache[key].shape[1] - part.shape[1] :] = part
    return RunResult(
        n_layers=model.n_layers,
        batch=batch, logits=out_logits, cache=cache, n_variants=n_variants, capture_positions=capture_positions
    )
