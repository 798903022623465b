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

from layerscope._lazy import lazy_exports

# the API, imported on first use (importing the package, as the CLI does, must not import torch)
_EXPORTS = {
    "eval_attributes": "layerscope.methods.patchscopes.attributes:eval_attributes",
    "Source": "layerscope.methods.patchscopes.core:Source",
    "capture_sources": "layerscope.methods.patchscopes.core:capture_sources",
    "decode_states": "layerscope.methods.patchscopes.core:decode_states",
    "patchscope": "layerscope.methods.patchscopes.core:patchscope",
    "placeholder_position": "layerscope.methods.patchscopes.core:placeholder_position",
    "eval_describe": "layerscope.methods.patchscopes.describe:eval_describe",
    "eval_next_token": "layerscope.methods.patchscopes.evaluate:eval_next_token",
    "DESCRIBE_PROMPT": "layerscope.methods.patchscopes.presets:DESCRIBE_PROMPT",
    "IDENTITY_PROMPT": "layerscope.methods.patchscopes.presets:IDENTITY_PROMPT",
    "attribute_extraction": "layerscope.methods.patchscopes.presets:attribute_extraction",
    "entity_description": "layerscope.methods.patchscopes.presets:entity_description",
    "lens_readout": "layerscope.methods.patchscopes.presets:lens_readout",
    "logit_lens": "layerscope.methods.patchscopes.presets:logit_lens",
    "token_identity": "layerscope.methods.patchscopes.presets:token_identity",
    "tuned_lens": "layerscope.methods.patchscopes.presets:tuned_lens",
    "Lens": "layerscope.readout.lenses:Lens",
    "LogitLens": "layerscope.readout.lenses:LogitLens",
    "TunedLens": "layerscope.readout.lenses:TunedLens",
    "AffineMap": "layerscope.readout.maps:AffineMap",
    "aligned_positions": "layerscope.readout.maps:aligned_positions",
    "fit_cross_model": "layerscope.readout.maps:fit_cross_model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
