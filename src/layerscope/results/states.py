"""``capture``'s pair of files: ``NAME.safetensors`` (the tensors) and ``NAME.json`` (what they are).

Two files cannot be replaced in one step, so the pair is made consistent by content instead: the
sidecar records the blake2b hash of the tensor file it describes, and is written *after* it. A run
killed between the two leaves new tensors beside an old sidecar whose hash no longer matches, and
:func:`read_states` refuses that pair (:class:`ResultError`) instead of describing the tensors with
another run's shapes and tokens. Each file on its own is written atomically (``results.io``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from layerscope.errors import ResultError
from layerscope.results.io import atomic_write, write_json

__all__ = ["file_hash", "read_states", "sidecar_path", "write_states"]

HASH_KEY = "tensors_blake2b"


def sidecar_path(path: str | os.PathLike) -> Path:
    """``states.safetensors`` -> ``states.json``."""
    return Path(path).with_suffix(".json")


def file_hash(path: str | os.PathLike) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_states(path: str | os.PathLike, tensors: dict, sidecar: dict) -> tuple[Path, Path]:
    """Write ``tensors`` ({name: tensor}) to ``path`` and ``sidecar`` (+ the tensors' hash) beside it."""
    from safetensors.torch import save_file

    path = atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    side = write_json(sidecar_path(path), {**sidecar, HASH_KEY: file_hash(path)})
    return path, side


def read_states(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(tensors, sidecar)`` of a capture, checked to belong together (:class:`ResultError` if not)."""
    from safetensors.torch import load_file

    path = Path(path)
    side = sidecar_path(path)
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"cannot read the sidecar {side} of {path}: {error}") from None
    if sidecar.get(HASH_KEY) != file_hash(path):
        raise ResultError(
            f"{side} does not describe {path} (the tensors were rewritten after it, e.g. by a run killed "
            "between the two files): capture again"
        )
    return load_file(str(path)), sidecar
