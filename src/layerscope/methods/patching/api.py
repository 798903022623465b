"""Activation patching over (layer, position): how much of a clean run does one state restore?

Two prompts of the same length, e.g. clean "The Eiffel Tower is located in the city of" and corrupt
"The Colosseum is located in the city of". For every layer l and position p, the clean state at
``site[l]`` (position p) is written into the corrupt run, and the metric is
``logit(answer) - logit(wrong)`` at the last position (" Paris" vs " Rome"). The result is one tidy
row per (layer, position).

The straightforward way runs one full forward per cell (L x T forwards). Here a cell's work is
only what the patch can change:

- **Start at the layer.** Below layer l nothing differs from the corrupt run, so every variant
  starts from the corrupt run's ``resid_pre`` states (``engine.sweep.sweep_layers``). A
  ``resid_post[l]`` patch is the same as a ``resid_pre[l+1]`` patch, so it starts one block later.
- **Reuse the unchanged prefix.** A patch at position p leaves positions ``< p`` unchanged in
  every layer (causal attention), so their keys and values come from the corrupt run's KV cache
  and only positions ``p..T-1`` are computed.
- **Skip patches that write what is already there.** Where the two prompts share their first
  tokens, the clean and corrupt states at those positions are the same at every layer (each
  depends only on the tokens up to it), so patching them changes nothing: those cells get the
  corrupt run's metric without a forward pass (``skip_shared_prefix``).
- **Batch, staggered.** The cells that share a prefix run as one batch in which each cell's row
  joins at its start layer (``engine.stagger``): one pass over the weights for all of them,
  chunked to a memory budget.

The positions are split into runs that share a prefix (the run's first position). Short runs
waste no arithmetic but pay a fixed cost per forward call (the weights are read once per call);
long runs compute states that cannot have changed. ``grouping="auto"`` picks the split that
minimises a simple cost model (:func:`plan_tiles`); ``"position"``, ``"layer"`` and ``"none"``
force one scheme (for comparisons: ``benchmarks/patching.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from layerscope.engine.chunking import parse_budget, row_bytes
from layerscope.engine.interventions import Intervention, LayerSpec, patch, resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.engine.sweep import clean_run, sweep_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.patching.names import GROUPINGS, PATCH_SITES
from layerscope.readout.tokens import answer_token, single_token, token_strings
from layerscope.results.contract import tidy

#: the fixed cost of one forward call per block, in units of "one token through one block":
#: a call reads every weight once, which on a CPU costs about as much as computing a few dozen
#: tokens; on a GPU the launch overhead is worth far more tokens.
CALL_COST_TOKENS = {"cpu": 24.0, "cuda": 512.0}


@dataclass(frozen=True)
class Tile:
    """A group of cells that runs as one batch.

    Attributes:
        start: the start layer (blocks below it are not run: their states come from the corrupt run).
        prefix: positions ``< prefix`` come from the corrupt run's KV cache (0 = none).
        layers: the patched layers of the tile; ``positions``: the patched positions.
    """

    start: int
    prefix: int
    layers: tuple[int, ...]
    positions: tuple[int, ...]

    @property
    def n_cells(self) -> int:
        return len(self.layers) * len(self.positions)


def start_layer_of(site: str, layer: int, n_layers: int) -> int:
    """The first block a patch at ``site[layer]`` can change (``resid_post[l] == resid_pre[l+1]``)."""
    return layer + 1 if site == "resid_post" and layer < n_layers - 1 else layer


def patch_of(site: str, layer: int, position: int, value: torch.Tensor, n_layers: int) -> Intervention:
    """The intervention for one cell, at its start layer (a ``resid_post[l]`` patch becomes ``resid_pre[l+1]``)."""
    if site == "resid_post" and layer < n_layers - 1:
        return patch("resid_pre", layer + 1, position, value)
    return patch(site, layer, position, value)


def plan_tiles(
    site: str,
    layers: Sequence[int],
    positions: Sequence[int],
    n_layers: int,
    seq_len: int,
    grouping: str = "auto",
    call_cost: float = CALL_COST_TOKENS["cpu"],
    head_cost: float = 8.0,
    rows_fit=None,
    reuse_prefix: bool = True,
) -> list[Tile]:
    """Group the (layer, position) cells into tiles.

    Every tile but ``"none"``'s starts at its own layer; tiles that share a prefix run together as
    one staggered sweep (each row joins the batch at its start layer), so the only choice left is
    how to split the positions into runs that share a prefix (the run's first position).

    Cost model (units: one token through one block): a cell patched at layer l (start block k) in
    a run whose prefix is s costs ``(n_layers - k) * (seq_len - s)`` of arithmetic; each forward
    call of a run costs ``(n_layers - lowest start + head_cost) * call_cost`` more (``head_cost``:
    the unembedding's weight, in blocks). ``rows_fit(tokens)`` = rows per call under the memory
    budget (a run with more cells takes several calls). ``reuse_prefix=False`` keeps every prefix at
    0 (models whose KV cache cannot be cut back, e.g. sliding-window layers).

    Groupings: ``"auto"`` the cheapest split into runs of consecutive positions (dynamic
    programming); ``"position"`` one run per position; ``"layer"`` one run of every position with
    no prefix (start layers only); ``"none"`` no reuse at all (every cell from block 0, whole prompt).
    """
    layers, positions = sorted(set(layers)), sorted(set(positions))
    if grouping not in GROUPINGS:
        raise LayerscopeError(f"unknown grouping {grouping!r}: use one of {', '.join(GROUPINGS)}")
    if not layers or not positions:
        return []
    starts = {l: start_layer_of(site, l, n_layers) for l in layers}

    def prefix_of(position: int) -> int:
        return position if reuse_prefix else 0

    def run_of(first: int, stop: int, prefix: int) -> list[Tile]:
        return [Tile(starts[l], prefix, (l,), tuple(positions[first:stop])) for l in layers]

    if grouping == "none":
        return [Tile(0, 0, tuple(layers), tuple(positions))]
    if grouping == "layer":
        return run_of(0, len(positions), 0)
    if grouping == "position":
        return [t for i, p in enumerate(positions) for t in run_of(i, i + 1, prefix_of(p))]

    depth = sum(n_layers - k for k in starts.values())  # blocks run per patched position
    per_call = (n_layers - min(starts.values()) + head_cost) * call_cost

    def run_cost(first: int, stop: int) -> float:
        tokens = seq_len - prefix_of(positions[first])
        rows = len(layers) * (stop - first)
        calls = math.ceil(rows / max(1, rows_fit(tokens))) if rows_fit is not None else 1
        return depth * (stop - first) * tokens + per_call * calls

    best = [0.0] + [math.inf] * len(positions)
    back = [0] * (len(positions) + 1)
    for stop in range(1, len(positions) + 1):
        for first in range(stop):
            cost = best[first] + run_cost(first, stop)
            if cost < best[stop]:
                best[stop], back[stop] = cost, first
    tiles: list[Tile] = []
    stop = len(positions)
    while stop > 0:
        first = back[stop]
        tiles = run_of(first, stop, prefix_of(positions[first])) + tiles
        stop = first
    return tiles


def activation_patching(
    model,
    clean: str,
    corrupt: str,
    answer: str,
    wrong: str,
    *,
    site: str = "resid_post",
    layers: LayerSpec = "all",
    positions: PositionSpec = "all",
    grouping: str = "auto",
    batch_budget: str | int | None = None,
    progress: bool = True,
    call_cost: float | None = None,
    skip_shared_prefix: bool = True,
) -> pd.DataFrame:
    """Patch the clean run's ``site[l]`` at position p into the corrupt run, for every (l, p).

    Args:
        clean, corrupt: two prompts with the same number of tokens.
        answer, wrong: single tokens (mind the leading space: ``" Paris"``); the metric is
            ``logit(answer) - logit(wrong)`` at the last position of the patched corrupt run.
        site: ``resid_post`` (default), ``resid_pre``, ``attn_out`` or ``mlp_out``.
        layers, positions: the grid (positions index the prompt's tokens; default: all).
        grouping: how cells are batched (see the module docstring); the values do not depend on it.
        call_cost: the fixed cost of a forward call for ``grouping="auto"`` (tokens per block; default:
            :data:`CALL_COST_TOKENS` for the device).
        batch_budget: memory budget of the sweep (e.g. ``"256MB"``): the states it holds throughout
            plus one forward chunk, whose rows are limited to what is left; None = no limit.
        skip_shared_prefix: cells at positions inside the prompts' common leading tokens take the
            corrupt run's metric without running (the patch writes the state already there);
            False runs them like every other cell (the values agree to float rounding).
    Returns:
        One row per cell: ``model``, ``method``, ``layer``, ``position``, ``token`` (the corrupt
        prompt's token there), ``value`` (the metric after patching), ``skipped`` (the cell was
        answered without a forward pass: a no-op patch in the shared prefix), and the run's
        constants as columns: ``site``, ``answer``, ``wrong``, ``clean_value`` and ``corrupt_value``
        (the metric of the unpatched runs, the baselines of every cell).
    """
    answer_id, wrong_id, source, target = prepare_pair(model, clean, corrupt, answer, wrong, [site])
    n_layers, seq_len = model.n_layers, target.length
    layer_list = sorted(set(resolve_layers(layers, n_layers)))
    position_list = sorted(set(target.positions(positions, 0)))
    shared = _shared_prefix(source.input_ids[0], target.input_ids[0]) if skip_shared_prefix else 0
    run_positions = [p for p in position_list if p >= shared]
    # The budget bounds the whole sweep: what it holds throughout (the clean states, the corrupt
    # run's start states and KV cache) comes off the top, the rest is for one forward chunk.
    limit = parse_budget(batch_budget)  # fails on a bad budget before any work
    held = row_bytes(model, seq_len, logits_positions=0, captured_states=2 * len(layer_list), keep_cache=True)
    held -= row_bytes(model, seq_len, logits_positions=0)
    chunk_budget = None if limit is None else max(1, limit - held)

    def rows_fit(tokens: int) -> int:
        if limit is None:
            return 1 << 30
        cached = seq_len if tokens < seq_len else 0
        per_row = row_bytes(model, tokens, logits_positions=0, cached_positions=cached, cached_layers=1)
        return max(1, chunk_budget // per_row)

    device_kind = "cuda" if model.device.type == "cuda" else "cpu"
    tiles = plan_tiles(
        site,
        layer_list,
        run_positions,
        n_layers,
        seq_len,
        grouping,
        call_cost=CALL_COST_TOKENS[device_kind] if call_cost is None else call_cost,
        head_cost=_head_cost(model),
        rows_fit=rows_fit,
        reuse_prefix=model.can_reuse_prefix(seq_len),
    )

    with torch.no_grad():
        src = model.run(source, capture=(site, layer_list), logits="last")
        values = {l: src.get(site, l)[0] for l in layer_list}  # [T, D] each
        clean_value = _metric(src.last_logits[0], answer_id, wrong_id)
        del src  # its logits are a vocabulary-sized row the sweep does not need to hold
        starts = sorted({t.start for t in tiles} | {start_layer_of(site, l, n_layers) for l in layer_list} - {0})
        base = clean_run(model, target, starts, keep_cache=any(t.prefix for t in tiles))
        corrupt_value = _metric(base.last_logits[0], answer_id, wrong_id)
        base.logits = None

    # Only two logits are needed: skip the unembedding of the whole vocabulary (for a small model it
    # is several blocks' worth of arithmetic and most of a row's memory) and read the two tokens
    # from the last state instead.
    last = n_layers - 1
    sweep_output = {"logits": None, "capture": ("resid_post", last), "capture_positions": "last"}
    # the clean state at a shared-prefix position is the corrupt one: the patch is a no-op
    results = {(l, p): corrupt_value for l in layer_list for p in position_list if p < shared}
    from layerscope.progress import bar

    total = len(layer_list) * len(position_list)
    bar = bar(progress=progress, total=total, desc=f"patching {site}", unit="cell")
    bar.update(len(results))
    try:
        for prefix in sorted({t.prefix for t in tiles}):
            group = [t for t in tiles if t.prefix == prefix]
            cells: dict[int, list[tuple[int, int]]] = {}
            for t in group:  # two tiles may share a start (resid_post of the last two layers)
                cells.setdefault(t.start, []).extend((l, p) for l in t.layers for p in t.positions)
            grid = {
                k: [[patch_of(site, l, p, values[l][p], n_layers)] for l, p in cell_list]
                for k, cell_list in cells.items()
            }
            for chunk in sweep_layers(
                model,
                target,
                grid,
                clean=base,
                prefix_length=prefix,
                batch_budget=chunk_budget,
                progress=False,
                **sweep_output,
            ):
                final = chunk.result.get("resid_post", last)[:, -1]  # [V', D]
                logits = model.adapter.unembed_states(final, tokens=[answer_id, wrong_id])  # [V', 2]
                diff = (logits[:, 0] - logits[:, 1]).float().cpu().tolist()
                for cell, value in zip(cells[chunk.layer][chunk.variants], diff, strict=True):
                    results[cell] = value
                bar.update(len(diff))
                del chunk, logits  # free this chunk's activations before the next one runs
    finally:
        bar.close()

    tokens = token_strings(model.tokenizer, target.input_ids[0].tolist())  # ' of', not 'Ġof'
    rows = [
        {"layer": l, "position": p, "token": tokens[p], "value": results[(l, p)], "skipped": p < shared}
        for l in layer_list
        for p in position_list
    ]
    table = pd.DataFrame(rows, columns=["layer", "position", "token", "value", "skipped"])
    # the baselines are columns, not attrs: attrs do not survive --json, --save or a concat
    baselines = {"clean_value": clean_value, "corrupt_value": corrupt_value}
    return tidy(table, model=model, method="patching", site=site, answer=answer, wrong=wrong, **baselines)


def prepare_pair(model, clean: str, corrupt: str, answer: str, wrong: str, sites: Sequence[str]):
    """Check a patching pair and tokenise it: ``(answer_id, wrong_id, clean batch, corrupt batch)``."""
    for site in sites:
        if site not in PATCH_SITES:
            raise LayerscopeError(f"unknown site {site!r}: use one of {', '.join(PATCH_SITES)}")
        if site not in model.available_sites:
            found = sorted(model.available_sites)
            raise LayerscopeError(f"site {site!r} is not available for this model (found: {found})")
    if not model.is_causal:
        raise LayerscopeError("activation patching needs a causal LM (the metric is a next-token logit difference)")
    answer_id = answer_token(model.tokenizer, answer, "answer", corrupt)
    wrong_id = answer_token(model.tokenizer, wrong, "wrong", corrupt)
    if answer_id == wrong_id:
        raise LayerscopeError(
            f"answer {answer!r} and wrong {wrong!r} are the same token: logit(answer) - logit(wrong) is 0 at "
            "every cell; give the corrupt prompt's own answer as wrong"
        )
    source, target = model.tokenize(clean), model.tokenize(corrupt)
    if source.length != target.length:
        raise LayerscopeError(
            f"the clean and corrupt prompts must have the same number of tokens to patch position by position: "
            f"clean has {source.length} {source.prompts[0].tokens}, corrupt has {target.length} "
            f"{target.prompts[0].tokens}"
        )
    return answer_id, wrong_id, source, target


def _shared_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens two ``[T]`` id sequences have in common."""
    differ = (a != b).nonzero()
    return int(differ[0]) if len(differ) else len(a)


def _metric(logits: torch.Tensor, answer_id: int, wrong_id: int) -> float:
    return float(logits[answer_id] - logits[wrong_id])


def _head_cost(model) -> float:
    """The unembedding's weight in units of one block's weights (what a call reads besides the blocks)."""
    block = sum(p.numel() for p in model.adapter.blocks[0].parameters())
    return model.vocab_size * model.d_model / max(block, 1)


def grid_of(table: pd.DataFrame) -> torch.Tensor:
    """``[layers, positions]`` tensor of ``value`` from a patching table (rows sorted by layer, position)."""
    wide = table.pivot(index="layer", columns="position", values="value").sort_index()
    return torch.tensor(wide.values)


__all__ = ["activation_patching", "plan_tiles", "Tile", "single_token", "grid_of"]
