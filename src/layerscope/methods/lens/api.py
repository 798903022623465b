"""The logit lens: read every layer's residual stream through the final norm and unembedding.

The reading itself is :class:`layerscope.readout.lenses.LogitLens` (the Patchscopes evaluations
use the same object); this module lays it out as a grid over (layer, position) of whole prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from layerscope.engine.interventions import resolve_layers
from layerscope.readout.lenses import Lens, LogitLens
from layerscope.results.contract import tidy


def logit_lens(
    model, prompts: str | Sequence[str], layers="all", top_k: int = 1, lens: Lens | None = None
) -> pd.DataFrame:
    """Top next token at every (layer, position) of every prompt.

    ``resid_post[l]`` is captured by the engine (not HF's ``hidden_states``, whose last entry is
    already normed) and passed through ``final_norm`` + unembedding, so layer ``L-1`` is exactly
    the model's own prediction. ``lens``: another lens of :mod:`layerscope.readout.lenses` (e.g. a
    fitted ``TunedLens``) read over the same grid; default the logit lens.

    Returns:
        tidy rows: ``prompt`` (index), ``layer``, ``position``, ``token`` (the input token there),
        ``top_token``, ``prob`` (its probability), and ``rank``.
    """
    lens = LogitLens() if lens is None else lens
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    layer_list = resolve_layers(layers, model.n_layers)
    result = model.run(texts, capture=("resid_post", layer_list), logits=None)
    tokenizer = model.tokenizer
    rows = []
    for layer in layer_list:
        probs = lens.logits(model, result.get("resid_post", layer), layer).float().softmax(-1)  # [B, T, V]
        top = probs.topk(top_k, dim=-1)
        for b, prompt in enumerate(result.batch.prompts):
            pad = result.batch.pad[b]
            for pos in range(len(prompt)):
                for rank in range(top_k):
                    rows.append(
                        {
                            "prompt": b,
                            "layer": layer,
                            "position": pos,
                            "token": _show(tokenizer, result.batch.input_ids[b, pad + pos].item()),
                            "top_token": _show(tokenizer, top.indices[b, pad + pos, rank].item()),
                            "prob": float(top.values[b, pad + pos, rank]),
                            "rank": rank,
                        }
                    )
    return tidy(pd.DataFrame(rows), model=model, method=lens.name)


def _show(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])
