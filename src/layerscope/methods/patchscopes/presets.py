"""Patchscope presets from the paper, each a short function over :func:`patchscope`.

- token identity: T = the few-shot "cat -> cat" prompt, i* = its last token, l* = l;
- entity description: T = the paper's few-shot description prompt ending in ``x``, l* = l;
- attribute extraction: T = a relation template with the placeholder ``x`` ("The official
  currency of x is the"), i* = the placeholder, every (l, l*) pair;
- logit lens and tuned lens: the Patchscopes with T = S, i* = i, l* = L-1 and f = the identity or
  a fitted affine map; computed directly as ``unembed(f(h))`` (what that Patchscope's next token
  is, without running the target), see :mod:`layerscope.readout.lenses`.
"""

from __future__ import annotations

import pandas as pd

from layerscope.engine.chunking import DEFAULT_BUDGET
from layerscope.engine.interventions import LayerSpec, resolve_layers
from layerscope.engine.positions import PositionSpec
from layerscope.methods.patchscopes.core import _as_sources, capture_sources, patchscope
from layerscope.readout.lenses import Lens, LogitLens, TunedLens

#: token identity (next-token prediction from a hidden state), i* = the last token "?"
IDENTITY_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"

#: the paper's few-shot entity-description prompt; i* = the final placeholder x
DESCRIBE_PROMPT = (
    "Syria: Country in the Middle East, Leonardo DiCaprio: American actor, Samsung: South Korean "
    "multinational major appliance and consumer electronics corporation, x"
)


def token_identity(
    model,
    source,
    position: PositionSpec = "last",
    layers: LayerSpec = "all",
    *,
    max_new_tokens: int = 20,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> pd.DataFrame:
    """What each layer's state at ``position`` of ``source`` says the next token is (l* = l)."""
    return patchscope(
        model,
        source,
        position,
        IDENTITY_PROMPT,
        layers,
        "same",
        max_new_tokens=max_new_tokens,
        batch_budget=batch_budget,
        progress=progress,
    )


def entity_description(
    model,
    entity: str | list[str],
    layers: LayerSpec = "all",
    *,
    max_new_tokens: int = 50,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> pd.DataFrame:
    """Describe an entity from its last token's state at each layer (S = the name, l* = l)."""
    return patchscope(
        model,
        entity,
        "last",
        DESCRIBE_PROMPT,
        layers,
        "same",
        max_new_tokens=max_new_tokens,
        batch_budget=batch_budget,
        progress=progress,
    )


def attribute_extraction(
    model,
    source: str,
    subject: str,
    template: str,
    source_layers: LayerSpec = "all",
    target_layers: LayerSpec = "all",
    *,
    max_new_tokens: int = 20,
    batch_budget: str | int | None = DEFAULT_BUDGET,
    progress: bool = False,
) -> pd.DataFrame:
    """Read an attribute of ``subject`` (its last token in ``source``) through ``template`` with ``x``."""
    return patchscope(
        model,
        source,
        subject,
        template,
        source_layers,
        target_layers,
        max_new_tokens=max_new_tokens,
        batch_budget=batch_budget,
        progress=progress,
    )


def logit_lens(model, source, position: PositionSpec = "last", layers: LayerSpec = "all") -> pd.DataFrame:
    """The logit-lens Patchscope (final norm + unembedding of h), in the Patchscope row format."""

    return lens_readout(model, LogitLens(), source, position, layers)


def tuned_lens(model, source, position: PositionSpec = "last", layers: LayerSpec = "all", lens=None) -> pd.DataFrame:
    """The tuned-lens Patchscope (an affine map to the last layer, then unembedding).

    ``lens`` is a fitted :class:`TunedLens`; by default the cached lens for ``model`` fitted on the
    shipped corpus is loaded (fitted and saved on first use).
    """

    lens = TunedLens.cached(model) if lens is None else lens
    return lens_readout(model, lens, source, position, layers)


def lens_readout(
    model,
    lens: Lens,
    source,
    position: PositionSpec = "last",
    layers: LayerSpec = "all",
) -> pd.DataFrame:
    """Top next token of ``lens`` at each layer, in the Patchscope row format (target layer L-1, no text)."""
    layer_list = resolve_layers(layers, model.n_layers)
    states, items = capture_sources(model, _as_sources(source, position), layer_list)
    rows = []
    for k, l in enumerate(layer_list):
        probs = lens.logits(model, states[k], l).float().softmax(-1)  # [N, V]
        top = probs.max(-1)
        for n, (tid, prob) in enumerate(zip(top.indices.tolist(), top.values.tolist(), strict=True)):
            item = items.iloc[n]
            rows.append(
                {
                    "source": int(item["source"]),
                    "source_position": int(item["source_position"]),
                    "source_token": item["source_token"],
                    "source_layer": l,
                    "target_layer": model.n_layers - 1,
                    "target_position": int(item["source_position"]),
                    "text": "",
                    "top_token": model.tokenizer.decode([tid]),
                    "top_token_id": tid,
                    "prob": prob,
                    "method": lens.name,
                }
            )
    return pd.DataFrame(rows)
