"""Writing results atomically: a temp file in the same folder, then ``os.replace``.

An interrupted run therefore never leaves a half-written results file behind, and the temp file
of a killed run (``.NAME.PID.XXXX.tmp``, its writer gone) is removed by the next write of NAME.
Written files get the mode a plain ``open`` would give (0666 less the umask), not ``mkstemp``'s
0600, so a report can be shared or served.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from layerscope.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

_UMASK_LOCK = threading.Lock()
STALE_LEGACY_S = 3600  # temp files of versions before the PID in the name: removed once this old


def file_mode() -> int:
    """0666 less the process umask (read by setting it and putting it back, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files a killed write of ``path`` left beside it; returns those removed."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        middle = tmp.name[len(path.name) + 2 : -len(".tmp")]
        pid, _, rest = middle.partition(".")
        try:
            if pid.isdigit() and rest:
                stale = int(pid) != os.getpid() and not _alive(int(pid))
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_LEGACY_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move ``tmp_path`` onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
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
    raise ConfigError(f"unknown table format {suffix!r}: use .csv, .json or .parquet")


def table_records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON-able dicts (numpy scalars converted)."""
    return json.loads(table.to_json(orient="records"))


# Options that change how a run computes, never what it finds: a checkpoint written with one value
# resumes under another (the batched and one-by-one paths are checked equal in the tests).
NEUTRAL_KEYS = frozenset({"batch_budget", "device", "progress", "workers", "address", "threads_per_worker"})
CHECKPOINT_MARK = "layerscope_checkpoint"


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NEUTRAL_KEYS}


def texts_hash(texts) -> str:
    """A short digest of a list of texts, for a run's config (texts end at a NUL, so
    ``["a b"]`` and ``["a", "b"]`` differ)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


class Checkpoint:
    """Finished units of a long run, kept in a JSON-lines file so that a rerun skips them.

    Each line is ``{"key": ..., "rows": [...]}``, written and flushed as one ``write`` once a unit
    is complete; a line cut short by an interruption is ignored on the next start, so that unit
    simply runs again. The first line is ``{"layerscope_checkpoint": 1, "config": ...}``.

    Data safety: a file that is not a layerscope checkpoint is never touched (:class:`ConfigError`,
    the file unchanged); a checkpoint whose config differs is an error naming the differing keys,
    unless ``restart=True``, which starts it afresh. Keys in :data:`NEUTRAL_KEYS` (batch budget,
    device, progress, workers) do not count: they change how a run computes, not its rows.

    >>> ckpt = Checkpoint("out/run.jsonl", config={"model": "smollm2-135m"})
    >>> for layer in range(30):
    ...     if not ckpt.done(layer):
    ...         ckpt.add(layer, [{"layer": layer, "value": 1.0}])
    >>> rows = ckpt.rows()
    """

    def __init__(self, path: str | os.PathLike | None, config: dict | None = None, *, restart: bool = False):
        self.path = None if path is None else Path(path)
        self.config = _comparable(json.loads(json.dumps(config or {}, default=str)))
        self._units: dict[str, list[dict]] = {}
        if self.path is None:
            return
        if self.path.exists():
            stored = checkpoint_config(self.path)  # raises unless the file is one of ours
            if stored != self.config:
                if not restart:
                    raise ConfigError(
                        f"--resume {self.path}: the checkpoint was written with another config "
                        f"({_differences(stored, self.config)}); use --restart to start it over, or another file"
                    )
                self.path.unlink()
            else:
                self._read()
        if not self.path.exists():
            write_text(self.path, json.dumps({CHECKPOINT_MARK: 1, "config": self.config}) + "\n")

    def _read(self) -> None:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):  # end the cut line so the next unit starts on its own
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("\n")
        for line in text.splitlines()[1:]:
            try:
                entry = json.loads(line)
                self._units[json.dumps(entry["key"])] = entry["rows"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # cut short by an interruption: that unit runs again

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


def checkpoint_config(path: str | os.PathLike) -> dict:
    """The config stored in checkpoint ``path``; :class:`ConfigError` (the file left alone) unless it is one.

    Checked before any model loads, so ``--resume notes.txt`` costs nothing and changes nothing.
    """
    path = Path(path)
    not_ours = f"--resume {path}: not a layerscope checkpoint (left unchanged); give a new file name"
    if path.is_dir():
        raise ConfigError(f"--resume {path}: is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as handle:
            first = handle.readline()
        header = json.loads(first.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(not_ours) from None  # binary, text, empty, unreadable: not ours to replace
    # checkpoints of earlier versions have no mark but the same {"config": {...}} first line
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("config"), dict)
        or set(header) - {CHECKPOINT_MARK, "config"}
    ):
        raise ConfigError(not_ours)
    return _comparable(header["config"])


def check_resumable(path: str | os.PathLike) -> Path:
    """``--resume FILE`` up front: a new file in a writable folder, or an existing checkpoint."""
    from layerscope.results.save import check_writable

    path = Path(path)
    if path.exists() or path.is_symlink():
        checkpoint_config(path)
    return check_writable(path, "--resume")


def _differences(stored: dict, wanted: dict) -> str:
    """``"n: 3 -> 4, task (new)"``: the keys whose values differ between two configs."""
    parts = []
    for key in sorted(set(stored) | set(wanted)):
        if key not in wanted:
            parts.append(f"{key} (not given now)")
        elif key not in stored:
            parts.append(f"{key} (new)")
        elif stored[key] != wanted[key]:
            parts.append(f"{key}: {_short(stored[key])} -> {_short(wanted[key])}")
    return ", ".join(parts)


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
