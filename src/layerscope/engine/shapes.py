"""Tensor shape aliases for signatures: the name says the layout, so it need not live only in prose.

They are plain ``torch.Tensor`` at run time (no checking), as jaxtyping's names are to a type
checker. Letters: B batch rows, T positions, D hidden size, V vocabulary, L layers, N selected
(row, position) pairs.
"""

from __future__ import annotations

from typing import TypeAlias

from torch import Tensor

__all__ = ["Hidden", "Index", "Logits", "Mask", "Selected", "Stacked", "Vector"]

Hidden: TypeAlias = Tensor
"""``[B, T, D]`` states at a site."""
Stacked: TypeAlias = Tensor
"""``[L, B, T, D]`` states of several layers."""
Selected: TypeAlias = Tensor
"""``[N, D]`` the states an op was compiled for, one per selected (row, position)."""
Index: TypeAlias = Tensor
"""``[N]`` integer rows or positions."""
Mask: TypeAlias = Tensor
"""``[B, T]`` attention mask (1 = real token)."""
Logits: TypeAlias = Tensor
"""``[B, T, V]`` (or ``[B, V]`` at the last position) next-token logits."""
Vector: TypeAlias = Tensor
"""``[D]`` one hidden-size vector (a steering direction, a mean)."""
