"""Peers at their best: every (layer, position) cell of the patching grid as one row of a batched forward.

``patching.py`` times the peers' ordinary idiom, one forward per cell. Here each peer batches: the
cells are sorted by layer and cut into chunks; a chunk is one forward of the corrupt prompt repeated
once per cell, in which the state of row r at ``resid_post[l_r]``, position ``p_r``, is overwritten with
the clean state (one hook per layer, writing all of that layer's rows at once):

- **hf-batched**: plain HF, one ``register_forward_hook`` per layer of the chunk, ``use_cache=False``
  and ``logits_to_keep=1`` (only the last position is unembedded, as in layerscope's sweep).
- **nnsight-batched**: one ``trace`` per chunk with one ``invoke`` per cell (nnsight batches the
  invokes into one forward), ``logits_to_keep=1``.
- **tl-batched**: TransformerLens ``run_with_hooks`` on the batch, one ``blocks.{l}.hook_resid_post``
  hook per layer acting on that layer's rows. A ``TransformerBridge`` returns every position's
  logits (``stop_at_layer`` at the last block returns the logits too), so its rows are larger.

Chunks are limited to the memory budget of layerscope's headline sweep (``memory.target_budget``):
what a peer holds throughout (the clean states, ``[L, T, D]``) comes off the top and the rest is
divided by the engine's estimate of one row of that forward (``row_bytes``; full logits for TL).

A batched peer's cost per cell is the same for every cell (a full forward row), so on the long
pairs each round times a random sample of whole chunks and scales to the grid; values are compared
on the sampled cells against layerscope's sweep of the whole grid (max abs diff, <= 1e-4 asserted).
layerscope's time includes its clean and corrupt runs; a peer's clean run (``prepare``) is not timed.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from patching import ANSWER, PAIRS, WRONG, HFHooks, _hidden, _ids, _token

from layerscope.engine.chunking import row_bytes
from layerscope.methods.patching import activation_patching

Cells = Sequence[tuple[int, int]]


def _chunks(cells: Cells, rows: int) -> list[list[tuple[int, int]]]:
    """Cells sorted by layer (fewer hooks per chunk), cut into chunks of ``rows``."""
    ordered = sorted(cells)
    return [ordered[i : i + rows] for i in range(0, len(ordered), rows)]


def _by_layer(chunk: Cells) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer: (rows [n], positions [n])}`` of one chunk."""
    found: dict[int, tuple[list[int], list[int]]] = {}
    for r, (l, p) in enumerate(chunk):
        rows, positions = found.setdefault(l, ([], []))
        rows.append(r)
        positions.append(p)
    return {l: (torch.tensor(r), torch.tensor(p)) for l, (r, p) in found.items()}


class HFBatched(HFHooks):
    """Plain HF, hand-batched: one forward per chunk, one forward hook per layer of the chunk."""

    name = "hf-batched"
    full_logits = False

    def prepare(self, clean: str, corrupt: str, budget: int) -> None:
        super().prepare(clean, corrupt)  # clean_states[l]: [1, T, D]
        self.rows = rows_for(self.model, self.ids_x.shape[1], budget, self.full_logits)

    def cells(self, cells: Cells) -> list[float]:
        values = []
        for chunk in _chunks(cells, self.rows):
            handles = []
            for l, (rows, positions) in _by_layer(chunk).items():
                clean = self.clean_states[l][0, positions]  # [n, D]

                def hook(module, args, output, rows=rows, positions=positions, clean=clean):
                    _hidden(output)[rows, positions] = clean  # no_grad: write the block's fresh output in place

                handles.append(self.blocks[l].register_forward_hook(hook))
            try:
                with torch.no_grad():
                    ids = self.ids_x.expand(len(chunk), -1)
                    logits = self.model.hf(ids, use_cache=False, logits_to_keep=1).logits[:, -1]  # [n, V]
            finally:
                for h in handles:
                    h.remove()
            values += (logits[:, self.a] - logits[:, self.w]).tolist()
        return [values[i] for i in _unsort(cells)]


def _unsort(cells: Cells) -> list[int]:
    """Index into the layer-sorted order of each cell in the given order."""
    order = sorted(range(len(cells)), key=lambda i: cells[i])
    where = {i: k for k, i in enumerate(order)}
    return [where[i] for i in range(len(cells))]


def rows_for(model, seq_len: int, budget: int | None, full_logits: bool) -> int:
    """Rows per chunk under ``budget``: minus the clean states held, over the estimate of one row."""
    if budget is None:
        return 1 << 30
    held = model.n_layers * seq_len * model.d_model * 4
    per_row = row_bytes(model, seq_len, logits_positions=seq_len if full_logits else 1)
    return max(1, (budget - held) // per_row)


class NNsightBatched:
    """nnsight: one ``trace`` per chunk, one ``invoke`` per cell (batched into one forward)."""

    name = "nnsight-batched"

    def __init__(self, model):
        from nnsight import LanguageModel

        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lm = LanguageModel(copy.deepcopy(model.hf), tokenizer=model.tokenizer)
        envoy = self.lm
        for part in model.adapter.blocks_path.split("."):
            envoy = getattr(envoy, part)
        self.blocks = envoy

    def prepare(self, clean: str, corrupt: str, budget: int) -> None:
        self.ids_x = _ids(self.model, corrupt)
        saved: list = []  # nnsight runs the trace's body itself: fill a list made outside it
        with torch.no_grad(), self.lm.trace(_ids(self.model, clean)):
            for l in range(self.model.n_layers):
                saved.append(self.blocks[l].output.save())
        self.clean_states = [_hidden(s) for s in saved]  # [1, T, D] each
        self.a, self.w = _token(self.model, ANSWER), _token(self.model, WRONG)
        self.rows = rows_for(self.model, self.ids_x.shape[1], budget, full_logits=False)

    def cells(self, cells: Cells) -> list[float]:
        values = []
        for chunk in _chunks(cells, self.rows):
            saved = []
            with torch.no_grad(), self.lm.trace(logits_to_keep=1, use_cache=False) as tracer:
                for l, p in chunk:
                    with tracer.invoke(self.ids_x):
                        _hidden(self.blocks[l].output)[:, p] = self.clean_states[l][:, p]
                        saved.append(self.lm.lm_head.output[0, -1].save())
            values += [float(s[self.a] - s[self.w]) for s in saved]
        return [values[i] for i in _unsort(cells)]


class TLBatched:
    """TransformerLens: ``run_with_hooks`` on a batch of cells, one resid_post hook per layer."""

    name = "tl-batched"

    def __init__(self, model):
        from patching import TransformerLens

        self.model = model
        self.bridge = TransformerLens(model).bridge

    def prepare(self, clean: str, corrupt: str, budget: int) -> None:
        self.ids_x = _ids(self.model, corrupt)
        with torch.no_grad():
            _, cache = self.bridge.run_with_cache(_ids(self.model, clean))
        self.clean_states = [cache[f"blocks.{l}.hook_resid_post"] for l in range(self.model.n_layers)]
        del cache
        self.a, self.w = _token(self.model, ANSWER), _token(self.model, WRONG)
        self.rows = rows_for(self.model, self.ids_x.shape[1], budget, full_logits=True)

    def cells(self, cells: Cells) -> list[float]:
        values = []
        for chunk in _chunks(cells, self.rows):
            hooks = []
            for l, (rows, positions) in _by_layer(chunk).items():
                clean = self.clean_states[l][0, positions]  # [n, D]

                def hook(resid, hook, rows=rows, positions=positions, clean=clean):
                    resid[rows, positions] = clean  # [B, T, D], in place
                    return resid

                hooks.append((f"blocks.{l}.hook_resid_post", hook))
            with torch.no_grad():
                logits = self.bridge.run_with_hooks(self.ids_x.expand(len(chunk), -1), fwd_hooks=hooks)[:, -1]
            values += (logits[:, self.a] - logits[:, self.w]).tolist()
        return [values[i] for i in _unsort(cells)]


def _sample(grid: list[tuple[int, int]], n: int | None, seed: int) -> list[tuple[int, int]]:
    if n is None or n >= len(grid):
        return grid
    rng = np.random.default_rng(seed)
    return [grid[i] for i in sorted(rng.choice(len(grid), size=n, replace=False))]


def bench_peers_batched(
    model,
    rounds: int = 3,
    pairs: dict[str, tuple[str, str]] = PAIRS,
    sample_chunks: int | None = 4,
    peers: tuple[str, ...] = ("hf-batched", "nnsight-batched", "tl-batched"),
    budget: str | int | None = "target",
    log=print,
) -> list[dict]:
    """One row per (pair, batched peer): full-grid times (interleaved rounds, medians), ratio, max abs diff.

    Args:
        sample_chunks: on pairs of more than 300 cells each peer runs this many of its chunks per
            round, at least 32 cells (random cells, scaled to the grid; None = the whole grid).
        budget: ``"target"`` = layerscope's headline budget (``memory.target_budget``) for every tool,
            or one budget (bytes or ``"256MB"``) for all.
    """
    from memory import target_budget

    from layerscope.engine.chunking import parse_budget

    made = {"hf-batched": HFBatched, "nnsight-batched": NNsightBatched, "tl-batched": TLBatched}
    tools = []
    for name in peers:
        try:
            tools.append(made[name](model))
        except ImportError as error:
            log(f"  {name} skipped: {error} (pip install -e '.[bench]')")
    rows = []
    for pair, (clean, corrupt) in pairs.items():
        seq_len = model.tokenize(corrupt).length
        grid = [(l, p) for l in range(model.n_layers) for p in range(seq_len)]
        limit = target_budget(model, corrupt) if budget == "target" else parse_budget(budget)
        for tool in tools:
            tool.prepare(clean, corrupt, limit)
        times: dict[str, list[float]] = {"layerscope": [], **{t.name: [] for t in tools}}
        diffs: dict[str, float] = {}
        sampled: dict[str, int] = {}
        for r in range(rounds):
            start = time.perf_counter()
            table = activation_patching(model, clean, corrupt, ANSWER, WRONG, progress=False, batch_budget=limit)
            times["layerscope"].append(time.perf_counter() - start)
            ours = table.set_index(["layer", "position"])["value"]
            for tool in tools:
                small = len(grid) <= 300 or sample_chunks is None
                cells = grid if small else _sample(grid, max(sample_chunks * tool.rows, 32), seed=r)
                start = time.perf_counter()
                values = tool.cells(cells)
                elapsed = time.perf_counter() - start
                times[tool.name].append(elapsed / len(cells) * len(grid))
                sampled[tool.name] = len(cells)
                diff = max(abs(v - ours[c]) for c, v in zip(cells, values, strict=True))
                diffs[tool.name] = max(diffs.get(tool.name, 0.0), diff)
                assert diff <= 1e-4, f"{tool.name} disagrees with layerscope on {pair}: {diff:.2e}"
            log(f"  {pair} round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        ours_s = statistics.median(times["layerscope"])
        for tool in tools:
            ts = times[tool.name]
            rows.append(
                {
                    "benchmark": f"patching, peers batched, {pair}",
                    "cells": len(grid),
                    "baseline": tool.name,
                    "budget_MB": limit / 1e6 if limit else None,
                    "chunk_rows": tool.rows,
                    "layerscope_s": ours_s,
                    "baseline_s": statistics.median(ts),
                    "speedup": statistics.median(ts) / ours_s,
                    "speedup_rounds": [round(t / o, 2) for t, o in zip(ts, times["layerscope"], strict=True)],
                    "max_abs_diff": diffs[tool.name],
                    "note": "full grid"
                    if sampled[tool.name] == len(grid)
                    else f"{sampled[tool.name]} sampled cells x{rounds} rounds, scaled to the grid",
                }
            )
            log(f"# {rows[-1]}")
    return rows
