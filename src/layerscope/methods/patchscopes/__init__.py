"""Patchscopes (Ghandeharioun et al., ICML 2024): decode hidden states through inspection prompts.

>>> import layerscope as ls
>>> ls.patchscopes.patchscope(model, "Alexander the Great", "last", ls.patchscopes.DESCRIBE_PROMPT, "0:30:6")

- :mod:`~layerscope.methods.patchscopes.core`: the general Patchscope, source (S, i, M, l) -> target
  (T, i*, M*, l*, f), batched over every (l, l*) pair;
- :mod:`~layerscope.methods.patchscopes.presets`: token identity, entity description, attribute
  extraction, logit lens, tuned lens;
- the lenses (:class:`LogitLens`, :class:`TunedLens`) and the cross-model affine maps live in
  :mod:`layerscope.readout` (other methods read through them too) and are re-exported here;
- :mod:`~layerscope.methods.patchscopes.evaluate`, :mod:`~.attributes`, :mod:`~.describe`: the next-token,
  attribute and description evaluations.
"""

from layerscope.methods.patchscopes.attributes import eval_attributes
from layerscope.methods.patchscopes.core import Source, capture_sources, decode_states, patchscope, placeholder_position
from layerscope.methods.patchscopes.describe import eval_describe
from layerscope.methods.patchscopes.evaluate import eval_next_token
from layerscope.methods.patchscopes.presets import (
    DESCRIBE_PROMPT,
    IDENTITY_PROMPT,
    attribute_extraction,
    entity_description,
    lens_readout,
    logit_lens,
    token_identity,
    tuned_lens,
)
from layerscope.readout.lenses import Lens, LogitLens, TunedLens
from layerscope.readout.maps import AffineMap, aligned_positions, fit_cross_model

__all__ = [
    "DESCRIBE_PROMPT",
    "IDENTITY_PROMPT",
    "AffineMap",
    "Lens",
    "LogitLens",
    "Source",
    "TunedLens",
    "aligned_positions",
    "attribute_extraction",
    "capture_sources",
    "decode_states",
    "entity_description",
    "eval_attributes",
    "eval_describe",
    "eval_next_token",
    "fit_cross_model",
    "lens_readout",
    "logit_lens",
    "patchscope",
    "placeholder_position",
    "token_identity",
    "tuned_lens",
]
