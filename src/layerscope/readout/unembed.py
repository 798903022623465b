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
        """A hash of the final norm's and the unembedding's weights (the lens's half of the model)."""
        adapter = self.model.adapter
        digest = hashlib.blake2b(digest_size=12)
        for module in (adapter.final_norm, adapter.unembed):
            if module is None:
                continue
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
        digest.update(str(adapter.logit_softcap).encode())
        return digest.hexdigest()
