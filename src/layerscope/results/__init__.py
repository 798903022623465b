"""Results: the tidy-rows contract, saving with a config sidecar, checkpoints, figures and the report.

- :mod:`.contract`: :func:`tidy` (``model`` and ``method`` first, baselines as columns), :func:`check_rows`;
- :mod:`.save`: ``--save FILE`` with ``STEM.config.json`` (checked before anything runs);
- :mod:`.io`: atomic writes, :func:`save_table`, :class:`Checkpoint` (resumable runs);
- :mod:`.report` (the demo's HTML report) and :mod:`.figures` (one PNG writer).
"""

from layerscope.results.contract import REQUIRED, check_rows, tidy
from layerscope.results.io import Checkpoint, save_table, table_records
from layerscope.results.save import check_target, config_path, save_rows

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
