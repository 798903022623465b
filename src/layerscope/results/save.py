"""``--save FILE``: the rows in FILE, and beside it ``STEM.config.json`` that can repeat the run.

The format comes from the suffix (``.parquet``, ``.csv``, ``.json``) and is checked, with the
folder's writability, before any model loads (:func:`check_target`), so a typo costs nothing.
The sidecar holds the command line and its parsed arguments, each model's name, source and
content hash (of its weights), and the versions of layerscope, torch and transformers;
``layerscope rerun STEM.config.json`` repeats the run from it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerscope.errors import ConfigError
from layerscope.results.io import save_table, write_json

if TYPE_CHECKING:
    import pandas as pd

FORMATS = (".parquet", ".csv", ".json")
CONFIG_SUFFIX = ".config.json"

__all__ = [
    "CONFIG_SUFFIX",
    "FORMATS",
    "check_target",
    "check_writable",
    "config_path",
    "model_hash",
    "save_rows",
    "versions",
]


def config_path(path: str | os.PathLike) -> Path:
    """``out.parquet`` -> ``out.config.json`` (beside it)."""
    path = Path(path)
    return path.with_name(path.stem + CONFIG_SUFFIX)


def check_target(path: str | os.PathLike) -> Path:
    """Fail fast (:class:`ConfigError`) unless ``path`` has a known suffix and its folder can be written."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"--save {path}: unknown format {path.suffix or '(none)'!r}; use .parquet, .csv or .json")
    if path.name.endswith(CONFIG_SUFFIX):
        raise ConfigError(f"--save {path}: a name ending in {CONFIG_SUFFIX} is the sidecar's; choose another")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--save FILE.parquet needs pyarrow (pip install pyarrow), or use .csv or .json") from None
    return check_writable(path, "--save")


def check_writable(path: str | os.PathLike, option: str) -> Path:
    """Fail fast (:class:`ConfigError`) unless a file can be created at ``path`` (its nearest existing
    folder is writable, and ``path`` is no folder): every output option is checked before a model loads."""
    path = Path(path)
    folder = path.parent
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot write in {existing or folder} (not a writable folder)")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: the file exists and is not writable")
    return path


def model_hash(model) -> str:
    """A content hash of the weights (blake2b over every parameter and buffer, in name order)."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, tensor in sorted({**dict(model.hf.named_parameters()), **dict(model.hf.named_buffers())}.items()):
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Versions of layerscope, torch, transformers and Python."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "layerscope": version("layerscope"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "python": sys.version.split()[0],
    }


def save_rows(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    command: list[str],
    argv: list[str],
    arguments: dict[str, Any],
    models: list[dict[str, Any]],
) -> tuple[Path, Path]:
    """Write ``table`` to ``path`` and the run's config beside it; returns both paths."""
    path = check_target(path)
    written = save_table(table, path)
    config = {
        "layerscope_config": 1,
        "command": command,
        "argv": argv,
        "arguments": arguments,
        "models": models,
        "versions": versions(),
        "rows": len(table),
        "columns": [str(c) for c in table.columns],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return written, write_json(config_path(path), config)
