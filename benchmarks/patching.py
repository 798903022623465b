"""Activation-patching sweep over (layer, position): layerscope vs nnsight, TransformerLens and a plain HF hook loop.

Workload (issue 6): patch the clean run's ``resid_post[l]`` at position p into the corrupt run for
every (l, p); metric ``logit(" Paris") - logit(" Rome")`` at the last position. Three pairs: the
short Eiffel Tower / Colosseum pair (10 tokens, 300 cells on SmolLM2; the prompts share their first
token), a ~64-token pair whose prompts differ near the end (63 tokens, 1890 cells; they share 49
tokens, so 1470 cells are no-op patches that layerscope answers without a forward pass), and the
same length with the entity first (63 tokens; they share 1 token: the worst case for layerscope,
almost nothing to skip).

layerscope is timed in several settings: the headline is the default planner at the memory budget
of ``benchmarks/memory.py`` (the engine's estimate of one forward with every state captured), so the
speed and the memory targets are measured at the same setting; the ablations switch off one kind of
reuse at a time.

Peers, each in its ordinary idiom, each on its own copy of the same HF model (same weights):

- **hf-hooks**: a Python loop, one plain forward per cell with a ``register_forward_hook`` on block l.
- **nnsight**: one ``model.trace`` per cell (the documented patching loop).
- **TransformerLens**: ``transformer_lens.patching.generic_activation_patch`` (the function behind
  ``get_act_patch_resid_pre``; with ``activation_name="resid_post"``) on a ``TransformerBridge``
  booted from the HF model (TransformerLens 4 loads SmolLM2 offline that way; it forces eager
  attention, so its numbers differ from sdpa by ~1e-5).

Every peer runs one full forward per cell, so its cost per cell is the same for every cell: peers
time a random sample of cells (``peer_cells``; ``None`` = the whole grid) and the full-grid time is
the per-cell median x cells. layerscope always runs the whole grid. Rounds are interleaved
(layerscope, hf-hooks, nnsight, TransformerLens, repeat) and the ratios are of medians over rounds.
All run under ``torch.no_grad()`` with the same thread count. Values are compared cell by cell on
the sampled cells (max abs diff).
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings

import numpy as np
import pandas as pd
import torch

import layerscope as ls
from layerscope.methods.patching import activation_patching

SHORT = ("The Eiffel Tower is located in the city of", "The Colosseum is located in the city of")
LONG_TEXT = (
    "During a long summer holiday, my grandmother and I travelled by train across Europe, visiting small "
    "villages, old churches, quiet museums and crowded markets full of fresh fruit and flowers. On the last "
    "morning of the trip we finally stood in front of {}, the famous monument that is located in the city of"
)
LONG = (LONG_TEXT.format("the Eiffel Tower"), LONG_TEXT.format("the Colosseum"))
EARLY_TEXT = (
    "{} was the first thing my grandmother wanted to see when we travelled by train across Europe during a "
    "long summer holiday, visiting small villages, old churches, quiet museums and crowded markets full of "
    "fresh fruit and flowers. After all these years she still says that the famous monument is located in the city of"
)
EARLY = (EARLY_TEXT.format("The Eiffel Tower"), EARLY_TEXT.format("The Colosseum"))
PAIRS = {"eiffel (10 tok)": SHORT, "long (63 tok)": LONG, "long, entity first (62 tok)": EARLY}
ANSWER, WRONG = " Paris", " Rome"


def _ids(model, text: str) -> torch.Tensor:
    return model.tokenize(text).input_ids


def _token(model, text: str) -> int:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"][0]


class HFHooks:
    """The straightforward loop: one forward per cell with a raw forward hook on block l."""

    name = "hf-hooks"

    def __init__(self, model: ls.Model):
        self.model = model
        self.blocks = model.adapter.blocks

    def prepare(self, clean: str, corrupt: str) -> None:
        self.ids_x = _ids(self.model, corrupt)
        self.clean_states = {}
        handles = [
            b.register_forward_hook(lambda m, a, o, l=l: self.clean_states.__setitem__(l, _hidden(o).clone()))
            for l, b in enumerate(self.blocks)
        ]
        try:
            with torch.no_grad():
                self.model.hf(_ids(self.model, clean))
        finally:
            for h in handles:
                h.remove()
        self.a, self.w = _token(self.model, ANSWER), _token(self.model, WRONG)

    def cell(self, layer: int, pos: int) -> float:
        value = self.clean_states[layer][:, pos]

        def hook(module, args, output):
            hidden = _hidden(output).clone()
            hidden[:, pos] = value
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handle = self.blocks[layer].register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = self.model.hf(self.ids_x).logits[0, -1]
        finally:
            handle.remove()
        return float(logits[self.a] - logits[self.w])


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


class NNsight:
    """nnsight's patching loop: one ``trace`` per cell."""

    name = "nnsight"

    def __init__(self, model: ls.Model):
        from nnsight import LanguageModel

        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lm = LanguageModel(copy.deepcopy(model.hf), tokenizer=model.tokenizer)
        self.path = model.adapter.blocks_path.split(".")

    def _blocks(self):
        envoy = self.lm
        for part in self.path:
            envoy = getattr(envoy, part)
        return envoy

    def prepare(self, clean: str, corrupt: str) -> None:
        self.ids_x = _ids(self.model, corrupt)
        saved: list = []
        blocks = self._blocks()
        with torch.no_grad(), self.lm.trace(_ids(self.model, clean)):
            for l in range(self.model.n_layers):
                saved.append(blocks[l].output.save())
        self.clean_states = [_hidden(s) for s in saved]
        self.a, self.w = _token(self.model, ANSWER), _token(self.model, WRONG)

    def cell(self, layer: int, pos: int) -> float:
        blocks = self._blocks()
        value = self.clean_states[layer][:, pos]
        with torch.no_grad(), self.lm.trace(self.ids_x):
            out = blocks[layer].output
            hidden = out[0] if isinstance(out, tuple) else out
            hidden[:, pos] = value
            logits = self.lm.lm_head.output[0, -1].save()
        return float(logits[self.a] - logits[self.w])


class TransformerLens:
    """TransformerLens's patching helper on a TransformerBridge of the same HF model."""

    name = "transformer-lens"

    def __init__(self, model: ls.Model):
        from transformer_lens.model_bridge import TransformerBridge

        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.bridge = TransformerBridge.boot_transformers(
                "HuggingFaceTB/SmolLM2-135M-Instruct" if model.name == "smollm2-135m" else model.name,
                hf_model=copy.deepcopy(model.hf),
                tokenizer=model.tokenizer,
                device=str(model.device),
            )
        self.bridge.eval()

    def prepare(self, clean: str, corrupt: str) -> None:
        self.ids_x = _ids(self.model, corrupt)
        with torch.no_grad():
            _, self.cache = self.bridge.run_with_cache(_ids(self.model, clean))
        a, w = _token(self.model, ANSWER), _token(self.model, WRONG)
        self.metric = lambda logits: logits[0, -1, a] - logits[0, -1, w]

    def cells(self, cells: list[tuple[int, int]]) -> list[float]:
        from transformer_lens.patching import generic_activation_patch, layer_pos_patch_setter

        index = pd.DataFrame(cells, columns=["layer", "pos"])
        with torch.no_grad():
            out = generic_activation_patch(
                self.bridge,
                self.ids_x,
                self.cache,
                self.metric,
                layer_pos_patch_setter,
                "resid_post",
                index_df=index,
            )
        return [float(v) for v in out]


def _sample(n_layers: int, n_pos: int, k: int | None, seed: int) -> list[tuple[int, int]]:
    cells = [(l, p) for l in range(n_layers) for p in range(n_pos)]
    if k is None or k >= len(cells):
        return cells
    rng = np.random.default_rng(seed)
    return [cells[i] for i in sorted(rng.choice(len(cells), size=k, replace=False))]


def layerscope_settings(model, corrupt: str, short: bool, ablations: bool = True) -> dict[str, dict]:
    """Named ``activation_patching`` settings: the headline first, then the ablations.

    The headline runs at the memory target as its budget (1.5x the measured peak of one forward with
    every state captured, ``memory.target_budget``), so speed and memory are measured at one setting.
    """
    from memory import target_budget

    budget = target_budget(model, corrupt)
    settings = {"layerscope": {"batch_budget": budget}}
    if not ablations:
        return settings
    settings["layerscope, 256MB budget"] = {"batch_budget": "256MB"}
    settings["layerscope, no shared-prefix skip"] = {"batch_budget": budget, "skip_shared_prefix": False}
    if short:  # the grouping ablation ("none" on a long pair is ~4x the work)
        settings.update(
            {
                f"layerscope, grouping={g}": {"batch_budget": "256MB", "grouping": g, "skip_shared_prefix": False}
                for g in ("position", "layer", "none")
            }
        )
    return settings


def bench_patching(
    model: ls.Model,
    peer_cells: dict[str, int | None] | None = None,
    rounds: int = 3,
    peers: tuple[str, ...] = ("hf-hooks", "nnsight", "transformer-lens"),
    pairs: dict[str, tuple[str, str]] = PAIRS,
    ablations: bool = True,
    log=print,
) -> list[dict]:
    """One row per (pair, peer or ablation) with the full-grid time ratio and the max abs diff."""
    peer_cells = peer_cells or {"eiffel (10 tok)": 30, "long (63 tok)": 12, "long, entity first (62 tok)": 12}
    made = {"hf-hooks": HFHooks, "nnsight": NNsight, "transformer-lens": TransformerLens}
    tools = []
    for name in peers:
        try:
            tools.append(made[name](model))
        except ImportError as error:
            log(f"  {name} not installed ({error}); pip install -e '.[bench]'")
    rows = []
    for pair, (clean, corrupt) in pairs.items():
        n_pos = model.tokenize(corrupt).length
        n_cells = model.n_layers * n_pos
        settings = layerscope_settings(model, corrupt, short=pair == next(iter(pairs)), ablations=ablations)
        times: dict[str, list[float]] = {name: [] for name in settings}
        diffs: dict[str, float] = {}
        for tool in tools:
            tool.prepare(clean, corrupt)
            times[tool.name] = []
        ours, skipped = None, 0
        for r in range(rounds):
            for name, kwargs in settings.items():
                start = time.perf_counter()
                table = activation_patching(model, clean, corrupt, ANSWER, WRONG, progress=False, **kwargs)
                times[name].append(time.perf_counter() - start)
                if name == "layerscope":
                    ours, skipped = table.set_index(["layer", "position"])["value"], int(table["skipped"].sum())
                else:
                    diff = float((table.set_index(["layer", "position"])["value"] - ours).abs().max())
                    diffs[name] = max(diffs.get(name, 0.0), diff)
            sample = _sample(model.n_layers, n_pos, peer_cells.get(pair), seed=r)
            for tool in tools:
                start = time.perf_counter()
                values = tool.cells(sample) if hasattr(tool, "cells") else [tool.cell(l, p) for l, p in sample]
                elapsed = time.perf_counter() - start
                times[tool.name].append(elapsed / len(sample) * n_cells)  # full-grid equivalent
                diff = max(abs(v - ours[(l, p)]) for (l, p), v in zip(sample, values, strict=True))
                diffs[tool.name] = max(diffs.get(tool.name, 0.0), diff)
            log(f"  {pair} round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        base = statistics.median(times["layerscope"])
        peer_names = {t.name for t in tools}
        for name, ts in times.items():
            if name == "layerscope":
                continue
            sampled = name in peer_names and peer_cells.get(pair) is not None
            rows.append(
                {
                    "benchmark": f"patching sweep {pair}",
                    "cells": n_cells,
                    "skipped": skipped,
                    "baseline": name,
                    "layerscope_s": base,
                    "baseline_s": statistics.median(ts),
                    "speedup": statistics.median(ts) / base,
                    "max_abs_diff": diffs.get(name, 0.0),
                    "note": f"peer timed on {peer_cells.get(pair)} sampled cells x{rounds}, scaled to the grid"
                    if sampled
                    else "full grid",
                    "target": ">= 10x, diff <= 1e-3" if name in peer_names else "",
                }
            )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-grid", action="store_true", help="peers run every cell (slow)")
    args = parser.parse_args()
    m = ls.load(device=args.device, progress=False)
    cells = {p: None for p in PAIRS} if args.full_grid else None
    table = pd.DataFrame(bench_patching(m, peer_cells=cells, rounds=args.rounds))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
