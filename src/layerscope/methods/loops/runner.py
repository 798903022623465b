"""Run prompts with a looped block for several loop counts (chunked by length); pool resid_post per step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from layerscope.engine.chunking import row_bytes
from layerscope.engine.grouping import in_order, iter_groups, length_groups
from layerscope.engine.interventions import Intervention
from layerscope.errors import LayerscopeError
from layerscope.methods.loops.spec import Block, execution_order, parse_block, parse_loops
from layerscope.metrics import pool

# ---- states per (layer, iteration) -----------------------------------------------------------


@dataclass
class LoopStates:
    """Pooled states of one loop count.

    Attributes:
        times: the loop count n.
        order: ``(layer, iteration)`` in execution order (see :func:`execution_order`).
        states: ``{(layer, iteration): [N, D]}`` pooled ``resid_post`` (float32, CPU), prompts in input order.
        scores: ``[N, K]`` what ``score(last_logits)`` returned, or None.
    """

    times: int
    order: list[tuple[int, int]]
    states: dict[tuple[int, int], torch.Tensor]
    scores: torch.Tensor | None


def loop_states(
    model,
    prompts: Sequence[str],
    block: Block,
    loops: Sequence[int],
    *,
    layers: Sequence[int] | None = None,
    pooling: str = "last",
    score: Callable[[torch.Tensor], torch.Tensor] | None = None,
    interventions: Callable[[int], Sequence[Intervention]] | None = None,
    batch_budget: str | int | None = None,
    progress: bool = True,
    desc: str = "loops",
) -> dict[int, LoopStates]:
    """Run ``prompts`` with block ``[a, b)`` looped n times for each n in ``loops``; pool ``resid_post``.

    Prompts are sorted by length and chunked to ``batch_budget`` (less padding). Per chunk the
    first loop count runs the whole model; the others start at block ``a`` from its ``resid_pre[a]``
    (layers below ``a`` are the same for every n and are copied), unless ``interventions`` act there.

    Args:
        layers: ``resid_post`` layers to keep (default all); inside the block, every iteration.
        pooling: ``last`` (the last real token), ``mean`` or ``normalized-mean`` over real tokens.
        score: ``last_logits [B, V] -> [B, K]`` reduced per chunk (so the vocabulary logits are not kept).
        interventions: ``n -> interventions`` for loop count n (e.g. an injection at some iteration).
    Returns:
        ``{n: LoopStates}``.
    """
    prompts = list(prompts)
    if not prompts:
        raise LayerscopeError("no prompts given")
    loops = parse_loops(list(loops))
    n_layers = model.n_layers
    a, b = parse_block(block, n_layers)
    keep = sorted(set(range(n_layers) if layers is None else (int(l) % n_layers for l in layers)))
    lengths = [len(ids) for ids in model.tokenizer(prompts)["input_ids"]]
    ivs_of = {n: list(interventions(n)) if interventions else [] for n in loops}
    reuse = a > 0 and len(loops) > 1 and not any(_lowest_layer(iv, n_layers) < a for v in ivs_of.values() for iv in v)
    per_row = row_bytes(model, max(lengths), captured_states=len(keep) + max(loops) * (b - a) + 1)
    groups = length_groups(lengths, lambda _: per_row, batch_budget)  # chunks sized for the longest prompt
    parts: dict[int, list[tuple[dict, torch.Tensor | None]]] = {n: [] for n in loops}
    for group in iter_groups(groups, desc=desc, progress=progress):
        batch = model.tokenize([prompts[i] for i in group])
        mask = batch.attention_mask.bool()
        start_states = None
        lower: dict[tuple[int, int], torch.Tensor] = {}
        for n in loops:
            capture = [("resid_post", [l for l in keep if start_states is None or l >= a])]
            if reuse and start_states is None:
                capture.append(("resid_pre", [a]))
            result = model.run(
                batch,
                loop=(a, b, n),
                interventions=ivs_of[n],
                capture=capture,
                logits="last" if score is not None else None,
                start_layer=a if start_states is not None else 0,
                start_states=start_states,
            )
            pooled = {
                (l, it): pool(state, mask, pooling).float().cpu()
                for (site, l, it), state in result.cache.items()
                if site == "resid_post"
            }
            if reuse and start_states is None:
                start_states = result.get("resid_pre", a)
                lower = {key: value for key, value in pooled.items() if key[0] < a}
            pooled.update(lower)
            scores = score(result.last_logits).float().cpu() if score is not None else None
            parts[n].append((pooled, scores))
    out = {}
    for n in loops:
        steps = [key for key in execution_order(n_layers, (a, b), n) if key[0] in keep]
        states = {key: in_order(groups, [p[key] for p, _ in parts[n]]) for key in steps}
        scores = None
        if score is not None:
            scores = in_order(groups, [s for _, s in parts[n]])
        out[n] = LoopStates(n, steps, states, scores)
    return out


def _lowest_layer(iv: Intervention, n_layers: int) -> int:
    from layerscope.engine.interventions import resolve_layers

    return min(resolve_layers(iv.layers, n_layers))


def loop_generate(
    model,
    prompts: Sequence[str],
    block: Block,
    times: int,
    *,
    max_new_tokens: int = 4,
    interventions: Sequence[Intervention] = (),
    mode: str = "prompt",
    batch_budget: str | int | None = None,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """Greedy continuations of ``prompts`` with block ``[a, b)`` looped ``times`` times (chunked)."""
    prompts = list(prompts)
    a, b = parse_block(block, model.n_layers)
    lengths = [len(ids) for ids in model.tokenizer(prompts)["input_ids"]]
    per_row = row_bytes(model, max(lengths) + max_new_tokens)
    texts: list[str] = [""] * len(prompts)
    for chosen in iter_groups(length_groups(lengths, lambda _: per_row, batch_budget), desc=desc, progress=progress):
        gen = model.generate(
            [prompts[i] for i in chosen],
            loop=(a, b, times),
            interventions=interventions,
            max_new_tokens=max_new_tokens,
            mode=mode,
        )
        for i, text in zip(chosen, gen.texts, strict=True):
            texts[i] = text
    return texts
