"""The general Patchscope (Ghandeharioun et al., ICML 2024).

A Patchscope reads a hidden state through an inspection prompt. The *source* ``(S, i, M, l)``
gives ``h = resid_post[l]`` of prompt S at position i in model M; the *target*
``(T, i*, M*, l*, f)`` runs M* on prompt T, replaces ``resid_post[l*]`` at position i* by ``f(h)``,
continues the forward pass and (usually) generates.

How the work is batched (the authors' recipe, and the engine's "batch, don't loop"):

- every source prompt runs once, capturing ``resid_post`` at the source layers;
- every (source item, l, l*, i*) combination is one *variant* of the single target prompt, so the
  whole sweep is one batch of identical-length rows (no padding), chunked to ``batch_budget``;
- with generation, the patch applies to the prompt pass only and decoding uses the KV cache
  (``model.generate(..., variants=..., mode="prompt")``);
- when only the next token is wanted (``max_new_tokens=0``) the target is cheaper still: the
  target tokens before the first patched position are computed once and reused as a KV prefix,
  and each group of variants with target layer l* starts at block l* from the clean target's
  cached ``resid_pre[l*]`` (blocks below l* are identical for every variant).

Positions: ints (negative from the end) or substrings (resolved to the last token of the
substring's last occurrence), as everywhere in layerscope. The target position defaults to the
placeholder word (``x``) when the target prompt has one, and to its last token otherwise.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from layerscope.engine.batch import from_ids
from layerscope.engine.chunking import DEFAULT_BUDGET, row_bytes, rows_per_chunk
from layerscope.engine.interventions import LayerSpec, patch, resolve_layers
from layerscope.engine.positions import PositionSpec, PromptTokens, resolve, token_at_char
from layerscope.engine.sweep import sweep_layers
from layerscope.errors import LayerscopeError
from layerscope.progress import bar
from layerscope.results.contract import tidy

PLACEHOLDER = "x"

#: a mapping f: one callable for every (l, l*) pair, or one per pair
MappingSpec = Callable[[torch.Tensor], torch.Tensor] | Mapping[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Source:
    """One source prompt S and the position(s) i read from it (int, substring, list or "all")."""

    prompt: str
    position: PositionSpec = "last"


def placeholder_position(prompt: PromptTokens, placeholder: str = PLACEHOLDER) -> int | None:
    """Token index of the last whole-word occurrence of ``placeholder`` in ``prompt`` (None if absent).

    A whole word, so the ``x`` of "The currency of x is" is found and the one in "next" is not.
    """
    matches = list(re.finditer(rf"(?<!\w){re.escape(placeholder)}(?!\w)", prompt.text))
    return token_at_char(prompt, matches[-1].end() - 1) if matches else None


def target_positions(prompt: PromptTokens, spec: PositionSpec | None, placeholder: str = PLACEHOLDER) -> list[int]:
    """Resolve the target position(s) i*: ``spec``, or by default the placeholder word, else the last token."""
    if spec is None:
        found = placeholder_position(prompt, placeholder)
        return [len(prompt) - 1 if found is None else found]
    return resolve(spec, prompt)


def layer_pairs(
    source_layers: LayerSpec,
    target_layers: LayerSpec,
    n_source_layers: int,
    n_target_layers: int,
) -> list[tuple[int, int]]:
    """(l, l*) pairs: ``target_layers="same"`` pairs each l with itself; explicit pairs (see
    :func:`explicit_pairs`) are taken as given; otherwise every combination."""
    sources = resolve_layers(source_layers, n_source_layers)
    given = explicit_pairs(target_layers, n_source_layers, n_target_layers)
    if given is not None:
        missing = sorted({l for l, _ in given} - set(sources))
        if missing:
            raise LayerscopeError(
                f"the pairs use source layer(s) {missing}, which are not among the source layers {sources}: "
                "leave the source layers at 'all' (the pairs pick them)"
            )
        return given
    if isinstance(target_layers, str) and target_layers.strip() == "same":
        if n_source_layers != n_target_layers:
            raise LayerscopeError(
                f"target_layers='same' needs models with the same depth (source {n_source_layers}, "
                f"target {n_target_layers} layers): give the target layers explicitly, e.g. 'all' or '0,6,12'"
            )
        return [(l, l) for l in sources]
    targets = resolve_layers(target_layers, n_target_layers)
    return list(itertools.product(sources, targets))


def explicit_pairs(target_layers, n_source_layers: int, n_target_layers: int) -> list[tuple[int, int]] | None:
    """``{l: l*}``, ``[(l, l*), ...]`` or ``"l->l*,..."`` -> the listed (l, l*) pairs; None for a layer spec.

    Negative layers count from the end of their model.
    """
    if isinstance(target_layers, str):
        if "->" not in target_layers:
            return None
        raw = []
        for part in target_layers.split(","):
            left, arrow, right = part.partition("->")
            try:
                raw.append((int(left), int(right)))
            except ValueError:
                raise LayerscopeError(
                    f"cannot read the layer pair {part.strip()!r}: write source->target, e.g. '6->3,12->6'"
                ) from None
    elif isinstance(target_layers, dict):
        raw = list(target_layers.items())
    elif (
        isinstance(target_layers, list | tuple)
        and target_layers
        and all(isinstance(p, tuple | list) and len(p) == 2 for p in target_layers)
    ):
        raw = [tuple(p) for p in target_layers]
    else:
        return None
    if not raw:
        raise LayerscopeError("no (source layer, target layer) pairs given")
    return [(resolve_layers(int(l), n_source_layers)[0], resolve_layers(int(t), n_target_layers)[0]) for l, t in raw]


def _mapping_for(mapping: MappingSpec | None, pair: tuple[int, int]) -> Callable | None:
    if mapping is None or callable(mapping):
        return mapping
    try:
        return mapping[pair]
    except KeyError:
        raise LayerscopeError(
            f"the mapping has no map for (source layer, target layer) = {pair}; it covers {sorted(mapping)[:8]}"
        ) from None


def capture_sources(
    model,
    sources: Sequence[Source],
    layers: Sequence[int],
    *,
    batch_budget: str | int | None = DEFAULT_BUDGET,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Run every source prompt once and keep ``resid_post`` at ``layers`` and the source positions.

    Returns:
        ``states [len(layers), N, D]`` (one column per (source, position) item, in order) and a
        table of the N items: ``source`` (index), ``source_position`` (token index in its prompt),
        ``source_token``.
    """
    if not sources:
        raise LayerscopeError("no source prompts given")
    layers = list(layers)
    lengths = [len(model.tokenizer(s.prompt)["input_ids"]) for s in sources]
    size = rows_per_chunk(
        batch_budget, row_bytes(model, max(lengths), logits_positions=0, captured_states=len(layers)), len(sources)
    )
    columns, items = [], []
    for start in range(0, len(sources), size):
        chunk = sources[start : start + size]
        out = model.run([s.prompt for s in chunk], capture=("resid_post", layers), logits=None)
        stacked = out.stack("resid_post", layers)  # [S, B, T, D]
        for b, source in enumerate(chunk):
            prompt = out.batch.prompts[b]
            for pos in resolve(source.position, prompt):
                columns.append(stacked[:, b, out.batch.pad[b] + pos])
                items.append({"source": start + b, "source_position": pos, "source_token": prompt.tokens[pos]})
    return torch.stack(columns, dim=1), pd.DataFrame(items)


def decode_states(
    model,
    states: torch.Tensor,
    source_layers: Sequence[int],
    target: str,
    target_layers: LayerSpec = "same",
    target_position: PositionSpec | None = None,
    *,
    mapping: MappingSpec | None = None,
    max_new_tokens: int = 20,
    placeholder: str = PLACEHOLDER,
    n_source_layers: int | None = None,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> pd.DataFrame:
    """The target half of a Patchscope: patch given states into ``target`` and read what it says.

    Args:
        model: the target model M*.
        states: ``[len(source_layers), N, D_source]``: N source items per source layer.
        source_layers: the layer of each row of ``states``.
        target: the target prompt T.
        target_layers: ``"same"`` (l* = l), ``"all"``, or a layer spec of M*.
        target_position: i* (default: the placeholder word, else the last token); a list gives one
            variant per position.
        mapping: f, applied to each state before patching (``[N, D_source] -> [N, D]``): one callable,
            or a dict ``{(l, l*): callable}`` (e.g. fitted affine maps between two models).
        max_new_tokens: tokens generated greedily after the patched prompt pass (0: next token only).
        n_source_layers: depth of the source model (default: the target's), to check the layers.
    Returns:
        one row per (item, l, l*, i*): ``item``, ``source_layer``, ``target_layer``, ``target_position``,
        ``text`` (the generation; "" with ``max_new_tokens=0``), ``top_token_id``, ``top_token``, ``prob``
        (the patched next-token distribution's top token and its probability).
    """
    if max_new_tokens < 0:
        raise LayerscopeError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    source_layers = list(source_layers)
    if states.dim() != 3 or states.shape[0] != len(source_layers):
        raise LayerscopeError(f"states must be [n_source_layers={len(source_layers)}, N, D], got {tuple(states.shape)}")
    n_src = n_source_layers if n_source_layers is not None else model.n_layers
    pairs = layer_pairs(source_layers, target_layers, n_src, model.n_layers)
    batch = model.tokenize(target)
    positions = target_positions(batch.prompts[0], target_position, placeholder)
    n_items = states.shape[1]
    row_of = {l: k for k, l in enumerate(source_layers)}

    # variants, grouped by target layer (the next-token path starts each group at block l*)
    groups: dict[int | None, list[tuple[dict, object]]] = {}
    with torch.no_grad():
        for l, l_star in pairs:
            values = states[row_of[l]]
            f = _mapping_for(mapping, (l, l_star))
            if f is not None:
                values = f(values)
            if values.shape[-1] != model.d_model:
                raise LayerscopeError(
                    f"the patched states have {values.shape[-1]} dims but the target model has d_model="
                    f"{model.d_model}: pass mapping=... (e.g. an affine map fitted between the two models)"
                )
            for n in range(n_items):
                for p in positions:
                    meta = {"item": n, "source_layer": l, "target_layer": l_star, "target_position": p}
                    groups.setdefault(l_star, []).append((meta, patch("resid_post", l_star, p, values[n])))

    rows = []

    def emit(chunk_rows, logits: torch.Tensor, texts: list[str]) -> None:  # logits: [V', vocab]
        top = logits.float().softmax(-1).max(-1)
        ids = top.indices.tolist()
        tokens = [model.tokenizer.decode([i]) for i in ids]
        for (meta, _), text, tid, tok, prob in zip(chunk_rows, texts, ids, tokens, top.values.tolist(), strict=True):
            rows.append({**meta, "text": text, "top_token_id": tid, "top_token": tok, "prob": prob})

    if max_new_tokens == 0:
        # next token only: one layer sweep (each l* group starts at block l*, the target's tokens
        # before the first patched position come from a KV prefix computed once)
        clean, prefix = _next_token_reuse(model, batch, min(positions), sorted(groups))
        layer_variants = {l_star: [[iv] for _, iv in group] for l_star, group in groups.items()}
        for chunk in sweep_layers(
            model,
            batch,
            layer_variants,
            clean=clean,
            prefix=prefix,
            prefix_length=min(positions),
            batch_budget=batch_budget,
            progress=progress,
            desc="patchscope",
        ):
            group = groups[chunk.layer][chunk.variants]
            emit(group, chunk.last_logits()[0], [""] * len(group))
    else:  # generation: one batch for every (l, l*, item, i*), chunked to the budget only
        flat = [v for group in groups.values() for v in group]
        size = rows_per_chunk(batch_budget, row_bytes(model, batch.length + max_new_tokens, keep_cache=True), len(flat))
        starts = range(0, len(flat), size)
        for start in bar(starts, progress=progress, desc="patchscope", leave=False):
            chunk = flat[start : start + size]
            gen = model.generate(
                target, variants=[[iv] for _, iv in chunk], max_new_tokens=max_new_tokens, mode="prompt"
            )
            emit(chunk, gen.first_logits, gen.texts)
    table = pd.DataFrame(rows)
    return table.sort_values(["item", "source_layer", "target_layer", "target_position"], kind="stable").reset_index(
        drop=True
    )


def _next_token_reuse(model, batch, first_position: int, target_layers: list[int]):
    """What every next-token variant shares: the clean target's ``resid_pre`` at each l* (the start
    states) and a KV cache of its tokens before ``first_position`` (a run of those tokens alone, so
    that no cache has to be cut back: sliding-window layers cannot be)."""
    needed = [l for l in target_layers if l > 0]
    clean = model.run(batch, capture=("resid_pre", needed), logits=None) if needed else None
    prefix = None
    if first_position > 0:
        prompt = batch.prompts[0]
        spans = None if prompt.spans is None else prompt.spans[:first_position]
        prefix_batch = from_ids(
            model.tokenizer, [batch.input_ids[0, :first_position].tolist()], [prompt.text], [spans], model.device
        )
        prefix = model.run(prefix_batch, keep_cache=True, logits=None)
    return clean, prefix


def _as_sources(source, position: PositionSpec) -> list[Source]:
    if isinstance(source, str | Source):
        source = [source]
    out = []
    for item in source:
        if isinstance(item, Source):
            out.append(item)
        elif isinstance(item, str):
            out.append(Source(item, position))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append(Source(item[0], item[1]))
        else:
            raise LayerscopeError(
                f"cannot read source {item!r}: give a prompt string, a (prompt, position) pair or a Source"
            )
    return out


def patchscope(
    model,
    source: str | Source | Sequence[str | Source | tuple[str, PositionSpec]],
    position: PositionSpec = "last",
    target: str | None = None,
    source_layers: LayerSpec = "all",
    target_layers: LayerSpec = "same",
    target_position: PositionSpec | None = None,
    *,
    target_model=None,
    mapping: MappingSpec | None = None,
    max_new_tokens: int = 20,
    placeholder: str = PLACEHOLDER,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
    recipe: str = "paper",
    source_last: str | None = None,
) -> pd.DataFrame:
    """Run a Patchscope: source (S, i, M=model, l) -> target (T, i*, M*=target_model, l*, f=mapping).

    Args:
        model: the source model M (also the target unless ``target_model`` is given).
        source: prompt(s) S; an item may be a ``(prompt, position)`` pair or a :class:`Source`.
        position: source position(s) i for plain prompt strings: int, substring, list, "last", "all".
        target: target prompt T (default: the token-identity prompt).
        source_layers: l: an int, a list, "a:b", "all".
        target_layers: l*: "same" (l* = l), "all", a layer spec of the target model (every (l, l*)
            combination is run), or explicit pairs: ``{6: 3, 12: 6}``, ``[(6, 3), (12, 6)]`` or
            ``"6->3,12->6"`` (then the pairs pick the source layers).
        target_position: i* (default: the placeholder word ``x`` if T has one, else T's last token).
        target_model: M* (default: ``model``); a different model needs ``mapping`` when sizes differ.
        mapping: f: a callable ``[N, D_M] -> [N, D_M*]`` or ``{(l, l*): callable}``.
        max_new_tokens: greedy tokens generated with the KV cache after the patched prompt pass
            (0 = next token only, which is much cheaper).
        batch_budget: activation memory per forward chunk, e.g. "512MB".
        recipe, source_last: ``source_last="post-norm"`` (``recipe="authors"``) reads the last layer's
            h after the final norm, as the authors' code does (:mod:`~layerscope.methods.patchscopes.recipes`).
    Returns:
        tidy rows: ``source``, ``source_position``, ``source_token``, ``source_layer``, ``target_layer``,
        ``target_position``, ``text``, ``top_token``, ``top_token_id``, ``prob``, ``recipe``, ``source_last``.

    Example:
        >>> patchscope(model, "Alexander the Great", "Great", DESCRIBE_PROMPT, source_layers="0:30:5")
    """
    from layerscope.methods.patchscopes.presets import IDENTITY_PROMPT
    from layerscope.methods.patchscopes.recipes import knobs, last_layer_mapping

    target_model = model if target_model is None else target_model
    target = IDENTITY_PROMPT if target is None else target
    sources = _as_sources(source, position)
    pairs = explicit_pairs(target_layers, model.n_layers, target_model.n_layers)
    layers = sorted({l for l, _ in pairs}) if pairs else resolve_layers(source_layers, model.n_layers)
    states, items = capture_sources(model, sources, layers, batch_budget=batch_budget)
    used = knobs(recipe, source_last=source_last)
    all_pairs = pairs or layer_pairs(layers, target_layers, model.n_layers, target_model.n_layers)
    mapping = last_layer_mapping(model, target_model, all_pairs, mapping, used["source_last"])
    table = decode_states(
        target_model,
        states,
        layers,
        target,
        target_layers,
        target_position,
        mapping=mapping,
        max_new_tokens=max_new_tokens,
        placeholder=placeholder,
        n_source_layers=model.n_layers,
        batch_budget=batch_budget,
        progress=progress,
    )
    table = items.reset_index(names="item").merge(table, on="item").drop(columns="item")
    columns = ["source", "source_position", "source_token", "source_layer", "target_layer", "target_position"]
    columns += ["text", "top_token", "top_token_id", "prob"]
    return tidy(table[columns], model=model, method="patchscopes", **used)
