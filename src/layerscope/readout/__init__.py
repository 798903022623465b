"""What several methods read hidden states with: lenses that own their unembedding, affine maps
between models, probes and token helpers. Methods import these; they never copy them.

- :mod:`.lenses`: :class:`Lens` (``transform``, then its :class:`Unembed`), :class:`LogitLens`,
  :class:`TunedLens` (fit, save, load, cached; a saved lens records its unembedding's fingerprint);
- :mod:`.unembed`: :class:`Unembed`, the model's final norm + unembedding + soft-cap, and its fingerprint;
- :mod:`.maps`: :class:`AffineMap` and the cross-model fit on shared text;
- :mod:`.probes`: :func:`probe_accuracy`, the one linear probe;
- :mod:`.tokens`: one-token answers, a word's first-token ids, Yes/No scoring.
"""

from layerscope._lazy import lazy_exports

# imported on first use, so that a CLI module can take a token helper without torch
_EXPORTS = {
    "Lens": "layerscope.readout.lenses:Lens",
    "LogitLens": "layerscope.readout.lenses:LogitLens",
    "TunedLens": "layerscope.readout.lenses:TunedLens",
    "AffineMap": "layerscope.readout.maps:AffineMap",
    "aligned_positions": "layerscope.readout.maps:aligned_positions",
    "fit_cross_model": "layerscope.readout.maps:fit_cross_model",
    "probe_accuracy": "layerscope.readout.probes:probe_accuracy",
    "single_token": "layerscope.readout.tokens:single_token",
    "word_token_ids": "layerscope.readout.tokens:word_token_ids",
    "yes_no_ids": "layerscope.readout.tokens:yes_no_ids",
    "yes_no_scorer": "layerscope.readout.tokens:yes_no_scorer",
    "Unembed": "layerscope.readout.unembed:Unembed",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
