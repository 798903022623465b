"""Defaults the CLI shows in --help (a module of its own, so that --help does not import torch)."""

DEFAULT_BATCH_SIZE = 32
