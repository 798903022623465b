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


class Checkpoint:
    """Finished units of a long run, kept in a JSON-lines file so that a rerun skips them.

    Each line is ``{"key": ..., "rows": [...]}``, written and flushed as one ``write`` once a unit
    is complete; a line cut short by an interruption is ignored on the next start, so that unit
    simply runs again. ``config`` is stored on the first line: a rerun with another config
    starts afresh instead of mixing results.

    >>> ckpt = Checkpoint("out/run.jsonl", config={"model": "smollm2-135m"})
    >>> for layer in range(30):
    ...     if not ckpt.done(layer):
    ...         ckpt.add(layer, [{"layer": layer, "value": 1.0}])
    >>> rows = ckpt.rows()
    """

    def __init__(self, path: str | os.PathLike | None, config: dict | None = None):
        self.path = None if path is None else Path(path)
        self.config = json.loads(json.dumps(config or {}, default=str))
        self._units: dict[str, list[dict]] = {}
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self._read() is False:
            self.path.unlink()
        if not self.path.exists():
            write_text(self.path, json.dumps({"config": self.config}) + "\n")

    def _read(self) -> bool:
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # end the cut line so the next unit starts on its own
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("\n")
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            return False
        if header.get("config") != self.config:
            return False
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut short by an interruption: that unit runs again
            self._units[json.dumps(entry["key"])] = entry["rows"]
        return True

    def done(self, key) -> bool:
        return json.dumps(key, default=str) in self._units

    def add(self, key, rows: list[dict]) -> None:
        rows = json.loads(json.dumps(rows, default=str))
        self._units[json.dumps(key, default=str)] = rows
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "rows": rows}, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def rows_of(self, key) -> list[dict]:
        """The rows of one finished unit (KeyError when it is not done)."""
        return self._units[json.dumps(key, default=str)]

    def rows(self) -> list[dict]:
        return [row for rows in self._units.values() for row in rows]

    def __len__(self) -> int:
        return len(self._units)
