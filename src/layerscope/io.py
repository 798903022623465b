"""Writing results atomically: a temp file in the same folder, then ``os.replace``.

An interrupted run therefore never leaves a half-written results file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move ``tmp_path`` onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a tidy table as ``.csv``, ``.json`` (records) or ``.parquet`` by extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    if suffix == ".json":
        return write_text(path, table.to_json(orient="records", indent=2))
    if suffix == ".parquet":
        return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    raise ValueError(f"unknown table format {suffix!r}: use .csv, .json or .parquet")


def table_records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON-able dicts (numpy scalars converted)."""
    return json.loads(table.to_json(orient="records"))
