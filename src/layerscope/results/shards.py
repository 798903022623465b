"""Streamed captures: a folder of safetensors shards and one ``index.json`` that says what they hold.

A capture of a large text set does not fit in memory as one tensor, so ``capture --out DIR`` plans
shards of consecutive prompts up front (each shard's states at most ``shard_size`` bytes, padded
only to its own longest prompt), runs one shard at a time, and writes each shard atomically before
the next starts. The index is rewritten (atomically) after every shard: it lists the finished
shards with their prompt range, shapes and blake2b hash, so a reader never sees a half-written
shard and a rerun with the same config skips the finished ones (an interrupted capture resumes).

Layout of shard ``states-00003.safetensors``: one tensor per site, ``[layer, prompt, position,
hidden]`` (left-padded), plus ``input_ids`` and ``attention_mask`` ``[prompt, position]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from layerscope.errors import ConfigError, ResultError
from layerscope.results.io import atomic_write, write_json
from layerscope.results.states import file_hash

__all__ = ["INDEX", "ShardWriter", "iter_shards", "plan_shards", "read_index"]

INDEX = "index.json"
MARK = "layerscope_shards"


def plan_shards(lengths: Sequence[int], bytes_per_token: int, shard_size: int) -> list[tuple[int, int]]:
    """Consecutive prompt ranges ``[start, end)`` whose padded states fit ``shard_size`` bytes each.

    ``bytes_per_token``: one token's states over every site and layer. A prompt too long for a
    shard on its own still gets a shard (of one prompt): a shard size is a target, not a refusal.
    """
    ranges, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        grown = max(longest, n)
        if i > start and grown * (i - start + 1) * bytes_per_token > shard_size:
            ranges.append((start, i))
            start, grown = i, n
        longest = grown
    if lengths:
        ranges.append((start, len(lengths)))
    return ranges


def shard_bytes(lengths: Sequence[int], ranges: Sequence[tuple[int, int]], bytes_per_token: int) -> int:
    """What the shards of ``ranges`` will hold: each padded to its longest prompt."""
    return sum(max(lengths[a:b]) * (b - a) * bytes_per_token for a, b in ranges)


def read_index(folder: str | os.PathLike) -> dict:
    """The index of a sharded capture (:class:`ResultError` when ``folder`` holds none)."""
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{folder} is not a sharded capture (cannot read {path}: {error})") from None
    if not isinstance(index, dict) or index.get(MARK) != 1:
        raise ResultError(f"{path} is not a layerscope shard index")
    return index


class ShardWriter:
    """Writes the shards of one capture into ``folder``; finished shards of the same config are kept.

    A folder that holds anything but a shard index of ours is never touched (:class:`ConfigError`);
    an index of another config is an error naming the fix, unless ``restart=True``.
    """

    def __init__(self, folder: str | os.PathLike, config: dict, *, restart: bool = False):
        self.folder = Path(folder)
        self.config = json.loads(json.dumps(config, default=str))
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--out {self.folder} is a file: give a folder for a sharded capture")
        self.index = {MARK: 1, "config": self.config, "shards": {}, "complete": False}
        if (self.folder / INDEX).exists():
            stored = read_index(self.folder)
            if stored.get("config") == self.config:
                self.index = stored
            elif not restart:
                raise ConfigError(
                    f"--out {self.folder} holds a capture of another config: use --restart to replace it, "
                    "or another folder"
                )
            else:
                for name in stored.get("shards", {}).values():
                    (self.folder / name["file"]).unlink(missing_ok=True)
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise ConfigError(f"--out {self.folder} is not empty and holds no layerscope capture: give a new folder")

    def done(self, shard: int) -> bool:
        entry = self.index["shards"].get(str(shard))
        return entry is not None and (self.folder / entry["file"]).is_file()

    def write(self, shard: int, prompts: tuple[int, int], tensors: dict) -> Path:
        """Write one shard (``{name: tensor}``), then record it in the index."""
        from safetensors.torch import save_file

        name = f"states-{shard:05d}.safetensors"
        path = atomic_write(self.folder / name, lambda tmp: save_file(tensors, str(tmp)))
        shapes = {key: list(value.shape) for key, value in tensors.items()}
        self.index["shards"][str(shard)] = {"file": name, "prompts": list(prompts), "shapes": shapes,
                                            "blake2b": file_hash(path)}  # fmt: skip
        write_json(self.folder / INDEX, self.index)
        return path

    def finish(self, **metadata) -> Path:
        """Mark the capture complete, with ``metadata`` (texts, tokens, layout) in the index."""
        self.index.update(metadata, complete=True)
        return write_json(self.folder / INDEX, self.index)


def iter_shards(folder: str | os.PathLike) -> Iterator[tuple[dict, dict]]:
    """``(tensors, entry)`` per shard in prompt order, each checked against its hash in the index."""
    from safetensors.torch import load_file

    index = read_index(folder)
    if not index.get("complete"):
        raise ResultError(f"the capture in {folder} is not complete (interrupted?): run the same capture again")
    for key in sorted(index["shards"], key=int):
        entry = index["shards"][key]
        path = Path(folder) / entry["file"]
        if not path.is_file() or file_hash(path) != entry["blake2b"]:
            raise ResultError(f"{path} does not match {Path(folder) / INDEX}: capture again")
        yield load_file(str(path)), entry
