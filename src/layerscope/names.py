"""One normaliser for every name a user types (a metric, a readout method, a manipulation, an
entropy normalisation): case, ``-`` vs ``_`` and aliases are forgiven the same way everywhere, and an
unknown name fails with the list of valid ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layerscope.errors import ConfigError

__all__ = ["canonical_name"]


def canonical_name(
    name: str,
    known: Sequence[str],
    *,
    what: str,
    aliases: Mapping[str, str] | None = None,
    shown: Sequence[str] | None = None,
) -> str:
    """The entry of ``known`` that ``name`` means.

    ``name`` is stripped and compared without case and with ``-`` and ``_`` alike (``"Prompt-Entropy"``
    is ``"prompt_entropy"``); ``aliases`` (compared the same way) map other spellings to entries of
    ``known``. Unknown: a :class:`ConfigError` (a ``ValueError``) ``unknown {what} 'name': use one of
    {shown}`` (``shown`` defaults to ``known``).
    """

    def key(text: str) -> str:
        return text.strip().lower().replace("-", "_")

    table = {key(k): k for k in known}
    table.update({key(alias): target for alias, target in (aliases or {}).items()})
    try:
        return table[key(name)]
    except (KeyError, AttributeError):
        valid = ", ".join(shown if shown is not None else known)
        raise ConfigError(f"unknown {what} {name!r}: use one of {valid}") from None
