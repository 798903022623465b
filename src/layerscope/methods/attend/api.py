"""Attend first, consolidate later (Ben Artzy & Schwartz, 2024; METHODS.md section 3).

What do later tokens read from earlier ones, layer by layer? Manipulate the states of the
*previous* tokens (every position but the last) from layer ``k`` on and measure the task accuracy
as a function of ``k``; switch one token's state for a token's state from another prompt and find
the layer from which the model ignores the switch.

What "from layer k on" means here (METHODS.md section 3: "applied to the residual-stream input of
block k for positions 0..n-2"), for ``positions="previous"``:

- **random** (default ``every_layer=False``): ``resid_pre[k]`` of each previous token is replaced
  once, at block k, by a seeded Gaussian vector rescaled to that state's L2 norm (the draw depends
  only on the seed and the row, see ``engine/interventions.py``). Because attention is causal, a
  previous token only attends to previous tokens, so every state of every previous token at every
  layer >= k is computed from noise alone: nothing of the clean states survives above k. The last
  token keeps its own clean residual stream and reads the noise-derived states through attention in
  blocks k..L-1. ``every_layer=True`` re-applies the replacement at ``resid_pre[j]`` for every
  ``j >= k`` (the same seeded draw, rescaled to each layer's state norm).
- **shuffle**: like random, with each previous state's dimensions permuted (a seeded permutation per
  state) instead of replaced; ``every_layer`` as for random.
- **freeze**: the previous tokens' ``resid_pre[k]`` is recorded and fed unchanged as their input to
  every block j >= k (so their attention keys and values in blocks >= k are computed from the layer-k
  states). Inherently every layer; ``every_layer`` does not apply.
- **skip-attention**: in every block j >= k the attention sub-block's output at the previous
  positions is zero (their update is ``h + MLP(norm(h))``); the last token still attends to them.
  Pass ``positions="all"`` to drop attention at the last token too (it then reads nothing from
  earlier tokens from k on). Inherently every layer.
- **switch**: one token's state is replaced by the state of a token of another prompt at the *same*
  layer. Default ``every_layer=True``: ``resid_pre[j]`` at the switched position is the source
  token's ``resid_pre[j]`` for every j >= k, so from k on that position carries the source token's
  states exactly (with ``every_layer=False`` it is patched at k only and its later states mix in the
  target prompt's context through attention).

Accuracy is an exact match on the greedy continuation *with the manipulation applied at every
generation step* (the authors disable the KV cache and recompute every step; so does
``model.generate(mode="every_step")``). It is computed without generating: greedy decoding emits an
answer's tokens ``a_1..a_m`` followed by a word boundary iff, for each ``t``, the next-token argmax
of ``prompt + a_1..a_t`` (the manipulation applied to all but its last token, exactly as at that
generation step) is ``a_{t+1}``, and the argmax after ``prompt + a_1..a_m`` does not continue the
word (its text does not start with a letter or digit). So every item becomes ``m + 1`` prompts that
all go through one layer sweep (:func:`layerscope.engine.sweep.sweep_layers`): the clean run once,
then each k's variants from ``resid_pre[k]`` on, batched and chunked to a memory budget. An item is
correct if any of its accepted answers (aliases) matches. ``match="first-token"`` only checks that
the argmax at the answer position is an accepted answer's first token (one prompt per item; cheaper).
``answer_prob`` is the probability of the canonical answer's first token at that position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import torch

from layerscope.engine import interventions as iv
from layerscope.engine.batch import Batch, from_ids
from layerscope.engine.chunking import DEFAULT_BUDGET, row_bytes, rows_per_chunk
from layerscope.engine.grouping import length_groups
from layerscope.engine.interventions import Intervention, resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.engine.sweep import clean_run, sweep_layers
from layerscope.errors import LayerscopeError
from layerscope.results.contract import tidy

MANIPULATIONS = ("random", "freeze", "shuffle", "skip-attention")
TASKS = ("capitals", "facts", "arithmetic", "copy")
MATCHES = ("greedy", "first-token")
_ALIASES = {"skip_attention": "skip-attention", "skip": "skip-attention", "skip-attn": "skip-attention"}

CAPITALS_SHOT = ("Spain", "Madrid")
FACTS_SHOT = ("Pride and Prejudice", "Jane Austen")
ARITHMETIC_SHOT = (2, 5)
SWITCH_EXAMPLE = {
    "prompt": "Q: What is the capital of Spain?\nA: Madrid\nQ: What is the capital of France?\nA:",
    "position": "France",
    "source": "The country Italy",
    "source_position": "Italy",
    "answers": (" Paris", " Rome"),
}


# ---- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One task item: a prompt and its accepted continuations (the first is the canonical answer).

    Answers carry their leading space where the prompt ends before a word (``" Paris"``).
    """

    prompt: str
    answers: tuple[str, ...]


def task_items(name: str, limit: int | None = None, seed: int = 0) -> list[Item]:
    """The items of a shipped task (``capitals``, ``facts``, ``arithmetic``, ``copy``), >= 100 each.

    - ``capitals``: one-shot ``"Q: What is the capital of Spain?\\nA: Madrid\\nQ: What is the capital
      of X?\\nA:"`` -> ``" <capital>"`` (capitals_qa, aliases accepted; Spain itself left out): 147.
    - ``facts``: one-shot ``"Q: Who wrote Pride and Prejudice?\\nA: Jane Austen\\nQ: Who wrote T?\\nA:"``
      -> ``" <author>"`` (facts_qa, aliases such as the surname accepted): 164.
    - ``arithmetic``: one-shot ``"2+5=7\\na+b="`` -> ``"<a+b>"`` for all 100 single-digit pairs (seeded
      order). (A "Q: What is a+b?\\nA:" format makes the first answer token a bare space on
      SmolLM2, whose tokenizer splits " 7" into " " + "7", and the model mostly copies the example.)
    - ``copy``: ``"w1 w2 w3 w4 w5\\nw1 w2 w3"`` -> ``" w4"`` (150 sequences of 5 random common words).

    ``limit`` keeps the first N items.
    """
    from layerscope import datasets

    if limit is not None and limit < 1:
        raise LayerscopeError(f"limit must be >= 1, got {limit}")
    if name == "capitals":
        shot = f"Q: What is the capital of {CAPITALS_SHOT[0]}?\nA: {CAPITALS_SHOT[1]}\n"
        items = [
            Item(
                f"{shot}Q: What is the capital of {row['country']}?\nA:",
                _answers(row["capital"], row["capital_aliases"]),
            )
            for row in datasets.load_dataset("capitals_qa")
            if row["country"] != CAPITALS_SHOT[0]
        ]
    elif name == "facts":
        shot = f"Q: Who wrote {FACTS_SHOT[0]}?\nA: {FACTS_SHOT[1]}\n"
        items = [
            Item(f"{shot}Q: {row['question']}\nA:", _answers(row["answer"], row["answer_aliases"]))
            for row in datasets.load_dataset("facts_qa")
            if row["title"] != FACTS_SHOT[0]
        ]
    elif name == "arithmetic":
        a, b = ARITHMETIC_SHOT
        items = [
            Item(f"{a}+{b}={a + b}\n{row['prompt']}", (row["answer"],))
            for row in datasets.arithmetic_items(100, seed=seed)
        ]
    elif name == "copy":
        items = [Item(row["prompt"], (row["answer"],)) for row in datasets.copy_items(150, length=5, seed=seed)]
    else:
        raise LayerscopeError(f"unknown task {name!r}: use one of {', '.join(TASKS)}")
    return items[:limit] if limit is not None else items


def _answers(main: str, aliases: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(" " + a for a in [main, *aliases]))


# ---- manipulations ---------------------------------------------------------------------------


def canonical_manipulation(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in MANIPULATIONS:
        raise LayerscopeError(f"unknown manipulation {name!r}: use one of {', '.join(MANIPULATIONS)}")
    return key


def manipulation(
    name: str, layer: int, *, positions: PositionSpec = "previous", seed: int = 0, every_layer: bool = False
) -> list[Intervention]:
    """The interventions of one past-token manipulation from block ``layer`` on (see the module doc).

    Returns a list (one sweep variant) whose interventions act only at layers >= ``layer``.
    """
    name = canonical_manipulation(name)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise LayerscopeError(f"layer must be an int, got {layer!r}")
    layers = f"{layer}:" if every_layer else layer
    if name == "random":
        return [iv.random("resid_pre", layers, positions, seed=seed)]
    if name == "shuffle":
        return [iv.shuffle("resid_pre", layers, positions, seed=seed)]
    if name == "freeze":
        return [iv.freeze(layer, positions)]
    return [iv.skip_attention(layer, positions)]


def switch_variant(
    layer: int, n_layers: int, position: PositionSpec, source_states: torch.Tensor, *, every_layer: bool = True
) -> list[Intervention]:
    """Set the state at ``position`` to the source token's state, at ``resid_pre[layer]`` (and above).

    ``source_states``: ``[L, D]``, the source token's ``resid_pre`` at every layer.
    """
    layers = range(layer, n_layers) if every_layer else [layer]
    return [iv.patch("resid_pre", j, position, source_states[j]) for j in layers]


# ---- scoring -----------------------------------------------------------------------------------


@dataclass
class Rows:
    """The prompts an item set is scored on: each item's prompt extended by answer prefixes.

    Attributes:
        batch: ``R`` left-padded rows (token ids; the prompts' texts are only for display).
        prob_token: ``[R]`` the canonical answer's first token (its probability is read at row ``first[i]``).
        first: ``[I]`` row of each item's bare prompt.
        checks: per item, per accepted answer, ``[(row, expected id | None)]``; ``None`` = the
            boundary check (the argmax must not continue the answer's last word).
        answer_ids: per item, per accepted answer, its token ids (for the boundary check).
    """

    batch: Batch
    prob_token: torch.Tensor
    first: torch.Tensor
    checks: list[list[list[tuple[int, int | None]]]]
    answer_ids: list[list[tuple[int, ...]]]

    @property
    def n_items(self) -> int:
        return len(self.checks)


def answer_token_ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """``(prompt ids, answer ids)`` with the answer tokenised as it continues the prompt."""
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + answer)["input_ids"])
    if len(full) > len(prompt_ids) and full[: len(prompt_ids)] == prompt_ids:
        return prompt_ids, full[len(prompt_ids) :]
    alone = list(tokenizer(answer, add_special_tokens=False)["input_ids"])  # merged across the boundary
    if not alone:
        raise LayerscopeError(f"the answer {answer!r} has no tokens")
    return prompt_ids, alone


def build_rows(model, items: Sequence[Item], match: str = "greedy") -> Rows:
    """Every prompt needed to score ``items`` (see the module doc), deduplicated."""
    if match not in MATCHES:
        raise LayerscopeError(f"unknown match {match!r}: use one of {', '.join(MATCHES)}")
    if not items:
        raise LayerscopeError("no items to score")
    tokenizer = model.tokenizer
    index: dict[tuple, int] = {}
    rows: list[list[int]] = []
    prob_token: list[int] = []

    def row(ids: list[int], token: int) -> int:
        key = (tuple(ids), token)  # items sharing a prompt but not an answer need their own row
        if key not in index:
            index[key] = len(rows)
            rows.append(ids)
            prob_token.append(token)
        return index[key]

    first, checks, answer_ids = [], [], []
    for item in items:
        if not item.answers:
            raise LayerscopeError(f"item {item.prompt!r} has no answer")
        encoded = [answer_token_ids(tokenizer, item.prompt, a) for a in item.answers]
        prompt_ids = encoded[0][0]
        canonical = encoded[0][1][0]
        first.append(row(prompt_ids, canonical))
        item_checks, item_ids = [], []
        for _, ids in encoded:
            if tuple(ids) in item_ids:
                continue
            if match == "first-token":
                item_checks.append([(first[-1], ids[0])])
            else:
                steps: list[tuple[int, int | None]] = [
                    (row(prompt_ids + ids[:t], canonical), ids[t]) for t in range(len(ids))
                ]
                steps.append((row(prompt_ids + ids, canonical), None))
                item_checks.append(steps)
            item_ids.append(tuple(ids))
        checks.append(item_checks)
        answer_ids.append(item_ids)
    texts = [tokenizer.decode(r) for r in rows]
    batch = from_ids(tokenizer, rows, texts, [None] * len(rows), model.device)
    return Rows(batch, torch.tensor(prob_token), torch.tensor(first), checks, answer_ids)


@lru_cache(maxsize=65536)
def _continues_word(tokenizer, answer: tuple[int, ...], next_id: int) -> bool:
    """Whether greedy token ``next_id`` extends the answer's last word (``" Paris"`` + ``"ian"``)."""
    before = tokenizer.decode(list(answer))
    added = tokenizer.decode([*answer, next_id])[len(before) :]
    return bool(added) and added[0].isalnum()


@dataclass
class Scores:
    """Per item: ``correct`` ``[I]`` (bool) and ``answer_prob`` ``[I]``."""

    correct: torch.Tensor
    answer_prob: torch.Tensor


def score(model, rows: Rows, predicted: torch.Tensor, prob: torch.Tensor) -> Scores:
    """Item scores from per-row argmax ``predicted`` ``[R]`` and canonical-token probability ``prob`` ``[R]``."""
    pred = predicted.tolist()
    correct = []
    for checks, ids in zip(rows.checks, rows.answer_ids, strict=True):
        ok = False
        for steps, answer in zip(checks, ids, strict=True):
            if all(
                (pred[r] == want) if want is not None else not _continues_word(model.tokenizer, answer, pred[r])
                for r, want in steps
            ):
                ok = True
                break
        correct.append(ok)
    return Scores(torch.tensor(correct), prob[rows.first].float())


def _reduce(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, vocab]`` logits -> argmax ``[N]`` and the probability of ``tokens`` ``[N]``."""
    logits = logits.float()
    prob = logits.softmax(-1).gather(-1, tokens.to(logits.device).unsqueeze(-1)).squeeze(-1)
    return logits.argmax(-1).cpu(), prob.cpu()


def evaluate(
    model,
    items: Sequence[Item] | Rows,
    layer_variants: dict[int, Sequence[Sequence[Intervention]]],
    *,
    match: str = "greedy",
    batch_budget: str | int | None = None,
    reuse: bool = True,
    progress: bool = False,
    desc: str = "attend",
) -> tuple[Scores, dict[tuple[int, int], Scores]]:
    """Score ``items`` clean and under every variant: ``(clean, {(k, v): scores})``.

    With ``reuse`` (default) this is one :func:`sweep_layers` (clean run once, each k from the clean
    ``resid_pre[k]``); ``reuse=False`` runs the per-k loop of full forward passes that the sweep
    replaces (for checks and timing).
    """
    rows = items if isinstance(items, Rows) else build_rows(model, items, match)
    batch, tokens = rows.batch, rows.prob_token
    layer_variants = {resolve_layers(k, model.n_layers)[0]: list(v) for k, v in layer_variants.items()}
    preds = {
        (k, v): torch.empty(batch.size, dtype=torch.long) for k, vs in layer_variants.items() for v in range(len(vs))
    }
    probs = {key: torch.empty(batch.size) for key in preds}

    def store(k: int, variants: slice, prompts: slice, logits: torch.Tensor) -> None:  # [P', V', vocab]
        for j, v in enumerate(range(variants.start, variants.stop)):
            preds[(k, v)][prompts], probs[(k, v)][prompts] = _reduce(logits[:, j], tokens[prompts])

    if reuse:
        clean = clean_run(model, batch, [k for k in layer_variants if k > 0])
        clean_pred, clean_prob = _reduce(clean.last_logits, tokens)
        for chunk in sweep_layers(
            model, batch, layer_variants, clean=clean, batch_budget=batch_budget, progress=progress, desc=desc
        ):
            store(chunk.layer, chunk.variants, chunk.prompts, chunk.last_logits())
    else:
        per_row = row_bytes(model, batch.length)
        step = rows_per_chunk(batch_budget, per_row, batch.size)
        clean_pred, clean_prob = torch.empty(batch.size, dtype=torch.long), torch.empty(batch.size)
        for start in range(0, batch.size, step):
            part = slice(start, min(start + step, batch.size))
            out = model.run(batch.select(part), logits="last")
            clean_pred[part], clean_prob[part] = _reduce(out.last_logits, tokens[part])
        for k, variants in sorted(layer_variants.items()):
            step = max(1, rows_per_chunk(batch_budget, per_row, batch.size * len(variants)) // len(variants))
            for start in range(0, batch.size, step):
                part = slice(start, min(start + step, batch.size))
                out = model.run(batch.select(part), variants=variants, logits="last")
                store(k, slice(0, len(variants)), part, out.last_logits.view(-1, len(variants), out.logits.shape[-1]))
    clean_scores = score(model, rows, clean_pred, clean_prob)
    return clean_scores, {key: score(model, rows, preds[key], probs[key]) for key in preds}


# ---- the sweep over k --------------------------------------------------------------------------


def _groups(model, lengths: list[int], rows_of: list[int], n_starts: int, budget, max_rows: int) -> list[list[int]]:
    """Item indices in groups of similar length (little padding) whose clean run fits the budget.

    A group's clean run keeps ``resid_pre`` at every start layer for all its rows, so its size is
    bounded by ``budget`` as well as by ``max_rows``.
    """
    element = model.dtype.itemsize

    def row_cost(length: int) -> int:
        return row_bytes(model, length) + n_starts * length * model.d_model * element

    return length_groups(lengths, row_cost, budget, max_rows=max_rows, weights=rows_of, padded=False)


def sweep_task(
    model,
    items: Sequence[Item],
    manipulations: Sequence[str] = ("random",),
    layers="all",
    *,
    positions: PositionSpec = "previous",
    seed: int = 0,
    every_layer: bool = False,
    match: str = "greedy",
    batch_budget: str | int | None = DEFAULT_BUDGET,
    checkpoint=None,
    progress: bool = True,
    task: str = "custom",
    max_group_rows: int = 256,
) -> pd.DataFrame:
    """Accuracy and mean answer probability per (k, manipulation), manipulating from k on.

    Items are scored in groups of similar prompt length (at most ``max_group_rows`` prompts, and a
    clean run that fits ``batch_budget``); each group is one :func:`evaluate` sweep. With
    ``checkpoint`` (an :class:`layerscope.results.io.Checkpoint`) finished groups are skipped on a rerun.

    Returns:
        One row per (layer, manipulation): ``task, layer, manipulation, accuracy, answer_prob, n,
        clean_accuracy, clean_answer_prob`` (the clean numbers repeat on every row).
    """
    names = [canonical_manipulation(m) for m in manipulations]
    if not names:
        raise LayerscopeError("no manipulation given: use one or more of " + ", ".join(MANIPULATIONS))
    if len(set(names)) != len(names):
        raise LayerscopeError(f"manipulation listed twice: {', '.join(manipulations)}")
    ks = resolve_layers(layers, model.n_layers, sorted_unique=True)
    grid = {k: [manipulation(m, k, positions=positions, seed=seed, every_layer=every_layer) for m in names] for k in ks}
    if not items:
        raise LayerscopeError("no items to score")
    encoded = [_item_rows(model, item, match) for item in items]
    lengths = [n for n, _ in encoded]
    rows_of = [r for _, r in encoded]
    groups = _groups(model, lengths, rows_of, sum(k > 0 for k in ks), batch_budget, max_group_rows)
    totals: dict[tuple, list[float]] = {}
    for g, group in enumerate(groups):
        key = [group[0], len(group)]
        if checkpoint is None or not checkpoint.done(key):
            clean, scored = evaluate(
                model,
                [items[i] for i in group],
                grid,
                match=match,
                batch_budget=batch_budget,
                progress=progress,
                desc=f"{task} {g + 1}/{len(groups)}" if len(groups) > 1 else task,
            )
            units = [_unit(key, "clean", -1, clean)]
            units += [_unit(key, names[v], k, s) for (k, v), s in scored.items()]
            if checkpoint is not None:
                checkpoint.add(key, units)
        else:
            units = [u for u in checkpoint.rows() if u["group"] == key]
        for u in units:
            acc = totals.setdefault((u["manipulation"], u["layer"]), [0.0, 0.0, 0])
            acc[0] += u["correct"]
            acc[1] += u["prob_sum"]
            acc[2] += u["n"]
    clean_correct, clean_prob, n = totals[("clean", -1)]
    out = [
        {
            "task": task,
            "layer": k,
            "manipulation": m,
            "accuracy": totals[(m, k)][0] / totals[(m, k)][2],
            "answer_prob": totals[(m, k)][1] / totals[(m, k)][2],
            "n": int(totals[(m, k)][2]),
            "clean_accuracy": clean_correct / n,
            "clean_answer_prob": clean_prob / n,
        }
        for m in names
        for k in ks
    ]
    return tidy(pd.DataFrame(out), model=model, method="attend")


def _item_rows(model, item: Item, match: str) -> tuple[int, int]:
    """``(longest row, number of rows)`` of an item (an upper bound: shared prefixes counted per answer)."""
    encoded = [answer_token_ids(model.tokenizer, item.prompt, a) for a in item.answers]
    if match == "first-token":
        return len(encoded[0][0]), 1
    return max(len(p) + len(a) for p, a in encoded), sum(len(a) + 1 for _, a in encoded)


def _unit(group: list[int], name: str, layer: int, scores: Scores) -> dict:
    return {
        "group": group,
        "manipulation": name,
        "layer": layer,
        "correct": int(scores.correct.sum()),
        "prob_sum": float(scores.answer_prob.sum()),
        "n": len(scores.correct),
    }


def stable_from(table: pd.DataFrame, tolerance: float = 0.1) -> dict[str, int | None]:
    """Per manipulation, the first swept layer from which accuracy stays >= (1 - tolerance) x clean accuracy.

    None when even the last swept layer is below that (or no layer qualifies).
    """
    out: dict[str, int | None] = {}
    for name, group in table.groupby("manipulation", sort=False):
        group = group.sort_values("layer")
        threshold = (1 - tolerance) * float(group["clean_accuracy"].iloc[0])
        ok = (group["accuracy"] >= threshold - 1e-12).tolist()
        layer = None
        for i in range(len(ok) - 1, -1, -1):
            if not ok[i]:
                break
            layer = int(group["layer"].iloc[i])
        out[str(name)] = layer
    return out


# ---- switch ------------------------------------------------------------------------------------


def answer_key(answer: str) -> str:
    """``" Paris"`` -> ``"p_Paris"``."""
    text = answer.strip()
    if not text:
        raise LayerscopeError(f"answer {answer!r} is empty once stripped")
    return f"p_{text}"


def switch(
    model,
    prompt: str,
    position: PositionSpec,
    source: str,
    source_position: PositionSpec,
    answers: Sequence[str] = (),
    layers="all",
    *,
    every_layer: bool = True,
    batch_budget: str | int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per k, the next-token prediction of ``prompt`` with the token at ``position`` switched, from
    layer k on, for the token at ``source_position`` of ``source`` (same layers; see the module doc).

    ``answers`` are continuations whose probability is reported as ``p_<answer stripped>`` (the
    probability of the answer's first token). Rows: ``layer, top_token, top_prob, p_..., ignored``;
    ``ignored`` is whether the top token equals the unswitched prompt's. ``table.attrs`` holds the
    clean top token and answer probabilities.
    """
    keys = [answer_key(a) for a in answers]
    if len(set(keys)) != len(keys):
        raise LayerscopeError(f"answers repeat once stripped: {list(answers)}")
    answer_tokens = torch.tensor(
        [answer_token_ids(model.tokenizer, prompt, a)[1][0] for a in answers], dtype=torch.long
    )
    ks = resolve_layers(layers, model.n_layers, sorted_unique=True)
    batch = model.tokenize(prompt)
    target = batch.positions(position, 0)
    if len(target) != 1:
        raise LayerscopeError(f"the switched position must be one token, got {len(target)} for {position!r}")
    src = model.run(source, capture="resid_pre", logits=None)
    src_pos = src.batch.positions(source_position, 0)
    if len(src_pos) != 1:
        raise LayerscopeError(f"the source position must be one token, got {len(src_pos)} for {source_position!r}")
    source_states = torch.stack([src.get("resid_pre", j)[0, src_pos[0]] for j in range(model.n_layers)])  # [L, D]
    grid = {k: [switch_variant(k, model.n_layers, target[0], source_states, every_layer=every_layer)] for k in ks}
    clean = model.run(batch, logits="last").last_logits[0].float().softmax(-1)
    results: dict[int, torch.Tensor] = {}
    prefix = target[0] - batch.pad[0]
    try:
        chunks = list(
            sweep_layers(
                model, batch, grid, prefix_length=prefix, batch_budget=batch_budget, progress=progress, desc="switch"
            )
        )
    except LayerscopeError:
        if not prefix:
            raise
        chunks = list(sweep_layers(model, batch, grid, batch_budget=batch_budget, progress=progress, desc="switch"))
    for chunk in chunks:
        results[chunk.layer] = chunk.last_logits()[0, 0].float().softmax(-1)
    decode = model.tokenizer.decode
    clean_top = int(clean.argmax())
    rows = []
    for k in ks:
        p = results[k]
        top = int(p.argmax())
        row = {"layer": k, "top_token": decode([top]), "top_prob": float(p[top])}
        row.update({key: float(p[t]) for key, t in zip(keys, answer_tokens.tolist(), strict=True)})
        row["ignored"] = top == clean_top
        rows.append(row)
    baselines = {key: float(clean[t]) for key, t in zip(keys, answer_tokens.tolist(), strict=True)}
    table = pd.DataFrame(rows)
    table.attrs["clean_top_token"] = decode([clean_top])
    table.attrs["clean"] = baselines
    # the unswitched prompt's answers, as columns (the baseline of every row)
    clean_columns = {"clean_top_token": decode([clean_top]), **{f"clean_{key}": v for key, v in baselines.items()}}
    return tidy(table, model=model, method="attend", **clean_columns)


def ignored_from(table: pd.DataFrame) -> int | None:
    """The first swept layer from which the switch is ignored at every later swept layer (None: never)."""
    table = table.sort_values("layer")
    layer = None
    for k, ignored in zip(table["layer"].tolist()[::-1], table["ignored"].tolist()[::-1], strict=True):
        if not ignored:
            break
        layer = int(k)
    return layer
