"""Positions in a prompt: ints (negative from the end), slices, keywords and substrings.

A position spec is resolved per prompt to token indices ``0..n-1`` of that prompt (before padding):

- ``int``: Python-style; ``-1`` is the last token.
- ``slice`` / ``range`` / a sequence of ints.
- ``"all"``: every token; ``"last"``: the last token; ``"previous"``: every token but the last
  (the "all previous tokens" of *Attend first, consolidate later*).
- any other ``str`` (or :class:`Substring`): the *last* token of the substring's last occurrence in
  the prompt. Use ``Substring("all")`` for a substring that collides with a keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerscope.errors import SiteError

KEYWORDS = ("all", "last", "previous")


@dataclass(frozen=True)
class Substring:
    """A substring of the prompt, resolved to its last token."""

    text: str


PositionSpec = int | slice | range | Sequence[int | str | Substring] | str | Substring


@dataclass(frozen=True)
class PromptTokens:
    """One prompt as the engine sees it: its text, token strings and character spans."""

    text: str
    tokens: list[str]
    spans: list[tuple[int, int]] | None  # char span of each token in ``text`` (None if unknown)

    def __len__(self) -> int:
        return len(self.tokens)


def is_relative_to_end(spec: PositionSpec) -> bool:
    """Whether the positions move as the sequence grows (matters for KV-cached generation)."""
    if isinstance(spec, str) and not isinstance(spec, Substring):
        return spec in ("last", "previous")
    if isinstance(spec, int):
        return spec < 0
    if isinstance(spec, slice | range):
        bounds = (spec.start, spec.stop)
        return any(isinstance(v, int) and v < 0 for v in bounds) or spec.stop is None
    if isinstance(spec, Sequence):  # substrings in a mixed list are fixed places of the prompt
        return any(isinstance(p, int) and not isinstance(p, bool) and p < 0 for p in spec)
    return False


def resolve(spec: PositionSpec, prompt: PromptTokens) -> list[int]:
    """Resolve ``spec`` against one prompt to sorted-as-given token indices in ``0..n-1``."""
    n = len(prompt)
    if isinstance(spec, Substring):
        return [_substring_position(spec.text, prompt)]
    if isinstance(spec, str):
        if spec == "all":
            return list(range(n))
        if spec == "last":
            return [n - 1]
        if spec == "previous":
            return list(range(n - 1))
        return [_substring_position(spec, prompt)]
    if isinstance(spec, bool):
        raise SiteError(f"position must be an int, slice, keyword or substring, not {spec!r}")
    if isinstance(spec, int):
        return [_check_int(spec, prompt)]
    if isinstance(spec, slice):
        for name in ("start", "stop", "step"):
            bound = getattr(spec, name)
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise SiteError(f"the position {name} of {spec!r} must be an int, got {bound!r}")
        if spec.step == 0:
            raise SiteError(f"the position step of {spec!r} must not be 0")
        return list(range(n))[spec]
    if isinstance(spec, range | Sequence):
        if isinstance(spec, Sequence) and not isinstance(spec, range) and len(spec) == 0:
            raise SiteError("the position list is empty: give at least one position, or 'all'")
        if any(isinstance(p, str | Substring) for p in spec):  # e.g. [0, "France"]: each part in turn
            return [i for part in spec for i in resolve(part, prompt)]
        for p in spec:
            if isinstance(p, bool) or not isinstance(p, int):
                raise SiteError(f"position {p!r} in {spec!r} must be an int or a substring of the prompt")
        return [_check_int(int(p), prompt) for p in spec]
    raise SiteError(
        f"unsupported position {spec!r}: use an int, a slice, a list of ints, "
        f"one of {KEYWORDS}, or a substring of the prompt"
    )


def _check_int(p: int, prompt: PromptTokens) -> int:
    n = len(prompt)
    if not -n <= p < n:
        raise SiteError(
            f"position {p} is beyond the prompt: it has {n} tokens {prompt.tokens}; valid positions are {-n}..{n - 1}"
        )
    return p % n


def _substring_position(sub: str, prompt: PromptTokens) -> int:
    start = prompt.text.rfind(sub) if sub else -1
    if start < 0:
        raise SiteError(f"substring {sub!r} is not in the prompt {prompt.text!r}; its tokens are {prompt.tokens}")
    found = token_at_char(prompt, start + len(sub) - 1)
    if found is not None:
        return found
    raise SiteError(f"could not map substring {sub!r} to a token of {prompt.tokens}")


def token_at_char(prompt: PromptTokens, char: int) -> int | None:
    """Index of the token whose character span holds ``prompt.text[char]`` (None if spans are unknown).

    Byte-level tokenizers may report a span that excludes a leading space: then the last token
    starting at or before ``char`` is taken. Substring positions and the Patchscope placeholder
    both map characters to tokens through here.
    """
    if prompt.spans is None:
        return None
    for i, (s, e) in enumerate(prompt.spans):
        if s <= char < e:
            return i
    candidates = [i for i, (s, e) in enumerate(prompt.spans) if s <= char and e > s]
    return candidates[-1] if candidates else None
