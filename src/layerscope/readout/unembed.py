"""The unembedding a lens reads through: the model's final norm, unembedding and soft-cap.

Every lens owns one (as tuned-lens's ``Unembed``), so "norm + unembedding" is written once, in
:meth:`Adapter.unembed_states`, and a fitted lens can record *which* unembedding it was fitted for:
:meth:`Unembed.fingerprint` hashes its weights, and :meth:`TunedLens.load` refuses a lens whose
fingerprint is another model's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

__all__ = ["Unembed"]


class Unembed:
    """``h [..., D] -> logits [..., V]`` (or ``[..., K]`` for ``tokens``) through ``model``'s own head."""

    def __init__(self, model):
        self.model = model

    def __call__(self, h: torch.Tensor, tokens: Sequence[int] | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.model.adapter.unembed_states(h.to(self.model.dtype), tokens=tokens)

    def fingerprint(self) -> str:
        """A hash of the head's weights, scale and soft cap (the lens's half of the model: every module
        the self-check found between the last block and the logits)."""
        head = self.model.adapter.head
        digest = hashlib.blake2b(digest_size=12)
        modules = getattr(head, "modules", None)
        if modules is None:  # a head passed by the user: only its identity can be recorded
            digest.update(repr(head).encode())
            return digest.hexdigest()
        for module in modules:
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
        digest.update(f"{head.scale}|{head.softcap}".encode())
        return digest.hexdigest()
