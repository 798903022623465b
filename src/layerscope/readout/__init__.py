"""What several methods read hidden states with: lenses that own their unembedding, affine maps
between models, probes and token helpers. Methods import these; they never copy them.

- :mod:`.lenses`: :class:`Lens` (``transform``, then its :class:`Unembed`), :class:`LogitLens`,
  :class:`TunedLens` (fit, save, load, cached; a saved lens records its unembedding's fingerprint);
- :mod:`.unembed`: :class:`Unembed`, the model's final norm + unembedding + soft-cap, and its fingerprint;
- :mod:`.maps`: :class:`AffineMap` and the cross-model fit on shared text;
- :mod:`.probes`: :func:`probe_accuracy`, the one linear probe;
- :mod:`.tokens`: one-token answers, a word's first-token ids, Yes/No scoring.
"""

from layerscope.readout.lenses import Lens, LogitLens, TunedLens
from layerscope.readout.maps import AffineMap, aligned_positions, fit_cross_model
from layerscope.readout.probes import probe_accuracy
from layerscope.readout.tokens import single_token, word_token_ids, yes_no_ids, yes_no_scorer
from layerscope.readout.unembed import Unembed

__all__ = [
    "AffineMap",
    "Lens",
    "LogitLens",
    "TunedLens",
    "Unembed",
    "aligned_positions",
    "fit_cross_model",
    "probe_accuracy",
    "single_token",
    "word_token_ids",
    "yes_no_ids",
    "yes_no_scorer",
]
