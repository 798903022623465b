"""User-facing errors.

Every error a user can cause with bad input derives from :class:`LayerscopeError`, so the
CLI can print it as one line (exit code 2) instead of a traceback. Messages name the
problem *and* the fix.
"""

from __future__ import annotations


class LayerscopeError(ValueError):
    """Bad input or an unusable model: printed as one line by the CLI."""


class ModelNotFoundError(LayerscopeError):
    """The requested model is not installed or not on disk (layerscope never downloads)."""


class ModelLoadError(LayerscopeError):
    """The model's files are there but unusable: truncated, of another format, weights that do not
    match the config, code that would have to run."""


class AdapterError(LayerscopeError):
    """The model's blocks / final norm / embeddings could not be found by inspection."""


class SiteError(LayerscopeError):
    """An unknown site, a layer out of range, or a position outside the prompt."""


class InterventionError(LayerscopeError):
    """An intervention that cannot apply: wrong shapes, hidden-size mismatch, etc."""


class ConfigError(LayerscopeError):
    """An option or a saved config that cannot be used: a bad ``--save`` path, a wrong dtype, a bad rerun file."""


class ResultError(LayerscopeError):
    """A computation that cannot give the result asked for (e.g. a model that returns no logits), or
    rows that break the results contract."""
