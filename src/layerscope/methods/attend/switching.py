"""The switch: one token's state replaced from layer k on by another prompt's, the prediction per k."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from layerscope.engine.interventions import resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.engine.sweep import sweep_layers
from layerscope.errors import LayerscopeError
from layerscope.methods.attend.manipulations import switch_variant
from layerscope.methods.attend.recipes import knobs
from layerscope.methods.attend.scoring import answer_token_ids
from layerscope.results.contract import tidy

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
    every_layer: bool | None = None,
    batch_budget: str | int | None = None,
    progress: bool = False,
    recipe: str = "paper",
) -> pd.DataFrame:
    """Per k, the next-token prediction of ``prompt`` with the token at ``position`` switched, from
    layer k on, for the token at ``source_position`` of ``source`` (same layers; see the module doc).

    ``answers`` are continuations whose probability is reported as ``p_<answer stripped>`` (the
    probability of the answer's first token). Rows: ``layer, top_token, top_prob, p_..., ignored``;
    ``ignored`` is whether the top token equals the unswitched prompt's; the unswitched prompt's
    top token and answer probabilities are the columns ``clean_top_token`` and ``clean_p_...``.

    ``every_layer`` (None = the recipe's): patch at every layer >= k (``recipe="paper"``) or at
    ``resid_pre[k]`` only (``recipe="authors"``, their single patch; ``--once``). The rows record
    ``recipe`` and ``once``.
    """
    used = knobs(recipe, once=None if every_layer is None else not every_layer)
    every_layer = not used["once"]
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
    # the unswitched prompt's answers, as columns (the baseline of every row)
    clean_columns = {"clean_top_token": decode([clean_top]), **{f"clean_{key}": v for key, v in baselines.items()}}
    return tidy(table, model=model, method="attend", recipe=used["recipe"], once=used["once"], **clean_columns)


def ignored_from(table: pd.DataFrame) -> int | None:
    """The first swept layer from which the switch is ignored at every later swept layer (None: never)."""
    table = table.sort_values("layer")
    layer = None
    for k, ignored in zip(table["layer"].tolist()[::-1], table["ignored"].tolist()[::-1], strict=True):
        if not ignored:
            break
        layer = int(k)
    return layer
