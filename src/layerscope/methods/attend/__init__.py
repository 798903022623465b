"""Attend first, consolidate later (Ben Artzy & Schwartz, 2024; METHODS.md section 3).

What do later tokens read from earlier ones, layer by layer? Manipulate the states of the
*previous* tokens (every position but the last) from layer ``k`` on and measure the task accuracy
as a function of ``k``; switch one token's state for a token's state from another prompt and find
the layer from which the model ignores the switch.

What "from layer k on" means here (METHODS.md section 3: "applied to the residual-stream input of
block k for positions 0..n-2"), for ``positions="previous"``:

- **random** (default ``every_layer=False``): ``resid_pre[k]`` of each previous token is replaced
  once, at block k, by a seeded Gaussian vector rescaled to that state's L2 norm (the draw depends
  only on the seed and the row; ``seeding="authors"`` draws as the authors' code does, see
  ``engine/seeding.py``). Because attention is causal, a
  previous token only attends to previous tokens, so every state of every previous token at every
  layer >= k is computed from noise alone: nothing of the clean states survives above k. The last
  token keeps its own clean residual stream and reads the noise-derived states through attention in
  blocks k..L-1. ``every_layer=True`` re-applies the replacement at ``resid_pre[j]`` for every
  ``j >= k`` (the same seeded draw, rescaled to each layer's state norm).
- **shuffle**: like random, with each previous state's dimensions permuted (a seeded permutation per
  state; the authors' seed it with ``manual_seed(k * token)``) instead of replaced; ``every_layer``
  as for random.
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

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "manipulation": "layerscope.methods.attend.manipulations:manipulation",
    "switch_variant": "layerscope.methods.attend.manipulations:switch_variant",
    "Rows": "layerscope.methods.attend.scoring:Rows",
    "Scores": "layerscope.methods.attend.scoring:Scores",
    "answer_token_ids": "layerscope.methods.attend.scoring:answer_token_ids",
    "build_rows": "layerscope.methods.attend.scoring:build_rows",
    "evaluate": "layerscope.methods.attend.scoring:evaluate",
    "score": "layerscope.methods.attend.scoring:score",
    "stable_from": "layerscope.methods.attend.sweep:stable_from",
    "sweep_task": "layerscope.methods.attend.sweep:sweep_task",
    "answer_key": "layerscope.methods.attend.switching:answer_key",
    "ignored_from": "layerscope.methods.attend.switching:ignored_from",
    "switch": "layerscope.methods.attend.switching:switch",
    "ARITHMETIC_SHOT": "layerscope.methods.attend.tasks:ARITHMETIC_SHOT",
    "CAPITALS_SHOT": "layerscope.methods.attend.tasks:CAPITALS_SHOT",
    "FACTS_SHOT": "layerscope.methods.attend.tasks:FACTS_SHOT",
    "MANIPULATIONS": "layerscope.methods.attend.tasks:MANIPULATIONS",
    "MATCHES": "layerscope.methods.attend.tasks:MATCHES",
    "SWITCH_EXAMPLE": "layerscope.methods.attend.tasks:SWITCH_EXAMPLE",
    "TASKS": "layerscope.methods.attend.tasks:TASKS",
    "Item": "layerscope.methods.attend.tasks:Item",
    "canonical_manipulation": "layerscope.methods.attend.tasks:canonical_manipulation",
    "task_items": "layerscope.methods.attend.tasks:task_items",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
