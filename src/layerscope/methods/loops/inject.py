"""Concept injection: a direction extracted at one iteration, injected at another, detected by probe and by asking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from layerscope.engine.chunking import chunks, row_bytes, rows_per_chunk
from layerscope.engine.interventions import Intervention, add
from layerscope.errors import LayerscopeError
from layerscope.methods.loops.prompts import chat_prompt
from layerscope.methods.loops.runner import loop_states
from layerscope.methods.loops.spec import Block, _check_site, at_iteration, parse_block, parse_loops
from layerscope.metrics import pool
from layerscope.progress import bar
from layerscope.readout.tokens import word_token_ids, yes_no_scorer
from layerscope.results.contract import tidy

# ---- concepts --------------------------------------------------------------------------------------

INTROSPECTION_DETECT = (
    "I am an interpretability researcher studying language models like you. I can inject thoughts "
    "into your mind. Do you detect an injected thought? Answer Yes or No."
)
INTROSPECTION_NAME = (
    "I am an interpretability researcher studying language models like you. I have injected a thought "
    "into your mind. What is the injected thought about? Answer with one word."
)
INJECT_COLUMNS = [
    "concept",
    "loops",
    "extract_iteration",
    "inject_iteration",
    "layer",
    "inject_layer",
    "scale",
    "probe_detect",
    "probe_baseline",
    "p_yes",
    "p_yes_clean",
    "p_word",
    "p_word_clean",
    "named",
    "answer",
    "probe_random",
    "p_yes_random",
    "p_word_random",
]


def variant_states(
    model,
    prompts: Sequence[str],
    variants: Sequence[Sequence[Intervention]],
    loop: tuple[int, int, int],
    layer: int,
    iteration: int,
    *,
    pooling: str = "mean",
    batch_budget: str | int | None = None,
) -> torch.Tensor:
    """``[V, P, D]`` pooled ``resid_post[layer]`` at ``iteration`` of every prompt under every variant.

    The prompts x variants rows run batched (row ``p * V + v``), chunked over variants to ``batch_budget``.
    """
    batch = model.tokenize(list(prompts))
    per_row = row_bytes(model, batch.length, captured_states=loop[2] * (loop[1] - loop[0]) + 1)
    step = max(1, rows_per_chunk(batch_budget, per_row, batch.size * len(variants)) // batch.size)
    out = []
    for part in chunks(len(variants), step, progress=False):
        chosen = list(variants[part])
        result = model.run(batch, variants=chosen, loop=loop, capture=[("resid_post", [layer])], logits=None)
        mask = result.batch.attention_mask.bool()
        pooled = pool(result.get("resid_post", layer, iteration), mask, pooling).float().cpu()  # [P * V', D]
        out.append(pooled.view(batch.size, len(chosen), -1).transpose(0, 1))
    return torch.cat(out)


def concept_directions(
    model,
    concept_texts: Sequence[str],
    neutral_texts: Sequence[str],
    block: Block,
    times: int,
    layer: int,
    *,
    pooling: str = "mean",
    batch_budget: str | int | None = None,
    progress: bool = False,
) -> dict[int, torch.Tensor]:
    """Difference of means at ``resid_post[layer]``: ``{iteration: [D]}`` (concept mean - neutral mean).

    Each text is pooled over its real tokens (``pooling``) first; outside the block only iteration 0.
    """
    layer = int(layer) % model.n_layers
    texts = list(concept_texts) + list(neutral_texts)
    got = loop_states(
        model, texts, block, [times], layers=[layer], pooling=pooling, batch_budget=batch_budget, progress=progress
    )[times]
    k = len(concept_texts)
    return {it: got.states[(l, it)][:k].mean(0) - got.states[(l, it)][k:].mean(0) for l, it in got.order}


def reference_norm(model, prompts: Sequence[str], block: Block, times: int, layer: int, iteration: int) -> float:
    """Median L2 norm of the real tokens' ``resid_post[layer]`` at ``iteration`` (for norm-relative scales).

    The median ignores the few tokens (often the first) whose norm is far above the rest.
    """
    layer = int(layer) % model.n_layers
    _check_site(layer, iteration, parse_block(block, model.n_layers), times, model.n_layers)
    result = model.run(list(prompts), loop=(*block, times), capture=[("resid_post", [layer])], logits=None)
    states = result.get("resid_post", layer, iteration)
    norms = states.norm(dim=-1)[result.batch.attention_mask.bool()]
    return float(norms.float().median())


def injection(
    direction: torch.Tensor, layer: int, iteration: int | None, scale: float, norm: float = 1.0, positions="all"
) -> Intervention:
    """Add ``scale * norm * direction / |direction|`` to ``resid_post[layer]`` at ``iteration``.

    With ``norm`` = a typical state norm at that site (:func:`reference_norm`), ``scale`` is relative:
    1.0 adds a vector as long as a typical state.
    """
    length = float(direction.norm())
    if not length > 0:
        raise LayerscopeError("the concept direction is zero: the concept and neutral texts give the same mean")
    return at_iteration(add("resid_post", layer, positions, direction / length * norm, scale), iteration)


def concept_injection(
    model,
    concept: str,
    block: Block | str | None = None,
    loops: Sequence[int] | str = (1, 2, 3, 4),
    *,
    layer: int | None = None,
    inject_layer: int | None = None,
    read_layer: int = -1,
    scale: float = 1.0,
    max_new_tokens: int = 6,
    chat: bool | str = "auto",
    concepts: dict[str, list[str]] | None = None,
    neutral: list[str] | None = None,
    batch_budget: str | int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Concept injection detected per (extraction iteration, injection iteration), for each loop count.

    For loop count n and every pair (i, j) in ``0..n-1``: the direction extracted at
    ``(layer, i)`` (concept sentences minus the first half of the neutral ones, mean-pooled) is added
    (norm-relative ``scale``, all positions) at ``(inject_layer, j)``. Detection:

    - ``probe_detect``: a logistic-regression probe trained on clean concept vs neutral sentences at
      the read-out (``read_layer``, its last iteration) flags the held-out neutral sentences as the
      concept when they carry the injection (``probe_baseline``: without it);
    - ``p_yes``: normalised P(Yes) of the introspection prompt :data:`INTROSPECTION_DETECT` under
      the injection (``p_yes_clean`` without it);
    - ``p_word``: probability that the answer to :data:`INTROSPECTION_NAME` starts with the concept
      word; ``named``: whether the greedy answer contains it; ``answer``: that answer;
    - ``probe_random``, ``p_yes_random``, ``p_word_random``: the same readings when a random
      direction (Gaussian, ``seed``) of the same norm is injected at the same site: the control that
      separates a concept-specific effect from any large push.

    Layers outside the block have only iteration 0, so with ``layer`` or ``inject_layer`` outside it
    the pairs collapse onto that iteration. Defaults: ``layer`` = the middle of the block,
    ``inject_layer`` = ``layer``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from layerscope.datasets import load_concepts

    if concepts is None or neutral is None:
        shipped, shipped_neutral = load_concepts()
        concepts = shipped if concepts is None else concepts
        neutral = shipped_neutral if neutral is None else neutral
    if concept not in concepts:
        raise LayerscopeError(f"unknown concept {concept!r}: use one of {', '.join(sorted(concepts))}")
    if len(neutral) < 4:
        raise LayerscopeError("need at least 4 neutral sentences (half to contrast, half to carry the injection)")
    n_layers = model.n_layers
    block = parse_block(block, n_layers)
    loops = parse_loops(loops)
    a, b = block
    layer = (a + b) // 2 if layer is None else int(layer) % n_layers
    inject_layer = layer if inject_layer is None else int(inject_layer) % n_layers
    read_layer = int(read_layer) % n_layers
    texts = concepts[concept]
    half = len(neutral) // 2
    contrast, carriers = neutral[:half], neutral[half:]
    tok = model.tokenizer
    detect = chat_prompt(tok, INTROSPECTION_DETECT, chat)
    name = chat_prompt(tok, INTROSPECTION_NAME, chat)
    yes_score = yes_no_scorer(tok)
    word_ids = word_token_ids(tok, concept)

    def word_score(logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)[:, word_ids].sum(-1, keepdim=True)

    rows = []
    for n in bar(loops, progress=progress, desc=f"inject {concept}"):
        it_of = lambda l, i: i if a <= l < b else 0  # noqa: E731
        extract_its = sorted({it_of(layer, i) for i in range(n)})
        inject_its = sorted({it_of(inject_layer, j) for j in range(n)})
        read_it = n - 1 if a <= read_layer < b else 0
        # one clean pass over concept + contrast sentences: the directions at `layer` and the
        # read-out probe's training states at `read_layer`
        clean = loop_states(
            model, list(texts) + contrast, block, [n], layers=[layer, read_layer], pooling="mean", progress=False
        )[n]
        k = len(texts)
        directions = {
            i: clean.states[(layer, i)][:k].mean(0) - clean.states[(layer, i)][k:].mean(0) for i in extract_its
        }
        features = clean.states[(read_layer, read_it)].double().numpy()
        target = np.array([1] * k + [0] * len(contrast))
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(features, target)
        pairs = [(i, j) for i in extract_its for j in inject_its]
        norms = {
            (kind, j): reference_norm(model, prompts, block, n, inject_layer, j)
            for kind, prompts in (("carriers", carriers), ("detect", [detect]), ("name", [name]))
            for j in inject_its
        }

        control = torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))
        control = control.to(device=model.device, dtype=directions[extract_its[0]].dtype)
        variants = {
            kind: [[]]
            + [[injection(directions[i], inject_layer, j, scale, norms[(kind, j)])] for i, j in pairs]
            + [[injection(control, inject_layer, j, scale, norms[(kind, j)])] for j in inject_its]
            for kind in ("carriers", "detect", "name")
        }
        random_of = {j: 1 + len(pairs) + k for k, j in enumerate(inject_its)}  # variant index of the control

        read_states = variant_states(
            model, carriers, variants["carriers"], (a, b, n), read_layer, read_it, batch_budget=batch_budget
        )
        read = [float(probe.predict(states.double().numpy()).mean()) for states in read_states]
        detect_run = model.run(detect, variants=variants["detect"], loop=(a, b, n), logits="last")
        yes = yes_score(detect_run.last_logits)
        p_yes = (yes[:, 0] / yes.sum(-1).clamp(min=1e-30)).tolist()
        name_gen = model.generate(name, variants=variants["name"], loop=(a, b, n), max_new_tokens=max_new_tokens)
        p_word = word_score(name_gen.first_logits)[:, 0].tolist()
        for v, (i, j) in enumerate(pairs, start=1):
            answer = name_gen.texts[v]
            rows.append(
                {
                    "concept": concept,
                    "loops": n,
                    "extract_iteration": i,
                    "inject_iteration": j,
                    "layer": layer,
                    "inject_layer": inject_layer,
                    "scale": scale,
                    "probe_detect": read[v],
                    "probe_baseline": read[0],
                    "p_yes": p_yes[v],
                    "p_yes_clean": p_yes[0],
                    "p_word": p_word[v],
                    "p_word_clean": p_word[0],
                    "named": concept.lower() in answer.lower(),
                    "answer": answer,
                    "probe_random": read[random_of[j]],
                    "p_yes_random": p_yes[random_of[j]],
                    "p_word_random": p_word[random_of[j]],
                }
            )
    return tidy(pd.DataFrame(rows, columns=INJECT_COLUMNS), model=model, method="loops")


def inject_unit(model, unit) -> list[dict]:
    """One (concept, loop count): its :func:`concept_injection` rows (a work unit: locally or on Ray)."""
    concept, n = unit.key
    table = concept_injection(model, concept, loops=[n], progress=False, **unit.payload)
    return table.drop(columns=["model", "method"]).to_dict(orient="records")


def concept_injections(
    model,
    names: Sequence[str],
    block: Block | str | None = None,
    loops: Sequence[int] | str = (1, 2, 3, 4),
    *,
    checkpoint=None,
    progress: bool = True,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    **options,
) -> pd.DataFrame:
    """:func:`concept_injection` for the concepts ``names``, one work unit per (concept, loop count).

    ``checkpoint`` (a :class:`layerscope.results.io.Checkpoint`) skips finished units on a rerun;
    ``workers`` / ``address`` run the units on Ray (:func:`layerscope.distributed.run_units`).
    ``options`` are :func:`concept_injection`'s (layer, inject_layer, read_layer, scale, ...).
    """
    from layerscope.distributed import Unit, run_units

    names = list(dict.fromkeys(names))
    if not names:
        raise LayerscopeError("no concept given")
    block = parse_block(block, model.n_layers)
    loops = parse_loops(loops)
    units = [Unit((c, n), {"block": block, **options}) for c in names for n in loops]
    results = run_units(
        units, inject_unit, model, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
        checkpoint=checkpoint, progress=progress, desc="concept x loops",
    )  # fmt: skip
    rows = [row for rows in results.values() for row in rows]
    return tidy(pd.DataFrame(rows, columns=INJECT_COLUMNS), model=model, method="loops")
