"""Results: the tidy-rows contract, saving with a config sidecar, checkpoints, figures and the report.

- :mod:`.contract`: :func:`tidy` (``model`` and ``method`` first, baselines as columns), :func:`check_rows`;
- :mod:`.save`: ``--save FILE`` with ``STEM.config.json`` (checked before anything runs);
- :mod:`.io`: atomic writes, :func:`save_table`, :class:`Checkpoint` (resumable runs);
- :mod:`.report` (the demo's HTML report) and :mod:`.figures` (one PNG writer).
"""

from layerscope._lazy import lazy_exports

_EXPORTS = {
    **{name: f"layerscope.results.contract:{name}" for name in ("REQUIRED", "check_rows", "tidy")},
    **{name: f"layerscope.results.io:{name}" for name in ("Checkpoint", "save_table", "table_records")},
    **{name: f"layerscope.results.save:{name}" for name in ("check_target", "config_path", "save_rows")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # pandas only when a name is used

__all__ = [
    "REQUIRED",
    "Checkpoint",
    "check_rows",
    "check_target",
    "config_path",
    "save_rows",
    "save_table",
    "table_records",
    "tidy",
]
