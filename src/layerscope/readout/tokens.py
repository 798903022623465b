"""Token helpers the methods share: one-token answers, a word's first-token ids, Yes/No scoring."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from layerscope.errors import LayerscopeError

if TYPE_CHECKING:  # torch is imported where a scorer runs, not for the CLI's token helpers
    import torch

__all__ = ["answer_token", "quoted", "single_token", "token_strings", "word_token_ids", "yes_no_ids", "yes_no_scorer"]


def token_strings(tokenizer, ids) -> list[str]:
    """Each id decoded on its own: ``' of'``, never the vocabulary's ``'Ġof'`` (what rows and sidecars hold)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def quoted(text: str) -> str:
    """A token as tables and axes show it: ``' of'``, ``'\\n'`` (quoted, so whitespace is never a blank cell)."""
    return repr(text)


def single_token(tokenizer, text: str, what: str) -> int:
    """The id of ``text`` if it is exactly one token, else a :class:`LayerscopeError` that shows the split."""
    if not isinstance(text, str) or not text:
        raise LayerscopeError(f"{what} is empty: give one token, e.g. ' Paris' (with its leading space)")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        hint = ""
        if not text.startswith(" "):
            spaced = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
            if len(spaced) == 1:
                hint = f"; ' {text}' (with a leading space) is one token"
        raise LayerscopeError(
            f"{what} {text!r} is {len(ids)} tokens {pieces}, but the metric compares the logits of single "
            f"tokens: choose a word that is one token{hint}"
        )
    return int(ids[0])


def answer_token(tokenizer, text: str, what: str, prompt: str) -> int:
    """The one-token id of ``text`` as the next token after ``prompt``, refusing a likely slip.

    After a prompt that ends in a word, the next word comes with its leading space (``' Paris'``);
    ``'Paris'`` is then another token, one the model hardly ever predicts there, and a metric on it
    measures nothing the user meant. Refused (with the fix) when the spaced form is one token.
    """
    token = single_token(tokenizer, text, what)
    if text[:1].isspace() or not prompt or prompt[-1:].isspace():
        return token
    spaced = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    if len(spaced) == 1 and spaced[0] != token:
        raise LayerscopeError(
            f"{what} {text!r} has no leading space, but after {prompt[-20:]!r} the next word is {' ' + text!r} "
            f"(another token, also one token): give {' ' + text!r}"
        )
    return token


def word_token_ids(tokenizer, word: str) -> list[int]:
    """Ids of the first token of ``word`` as it may start an answer: ``word``, `` word``, capitalised."""
    ids: list[int] = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for form in dict.fromkeys([word, " " + word, word.capitalize(), " " + word.capitalize()]):
        encoded = tokenizer(form, add_special_tokens=False)["input_ids"]
        if encoded and encoded[0] != unk and encoded[0] not in ids:
            ids.append(encoded[0])
    if not ids:
        raise LayerscopeError(f"the tokenizer cannot encode {word!r}")
    return ids


def yes_no_ids(tokenizer) -> tuple[list[int], list[int]]:
    """First-token ids of "Yes"/" Yes" and "No"/" No" (capitalised forms too), for P(Yes) vs P(No)."""
    yes, no = word_token_ids(tokenizer, "Yes"), word_token_ids(tokenizer, "No")
    if set(yes) & set(no):
        raise LayerscopeError("the tokenizer maps 'Yes' and 'No' to the same first token")
    return yes, no


def yes_no_scorer(tokenizer) -> Callable[[torch.Tensor], torch.Tensor]:
    """``last_logits [B, V] -> [B, 2]``: probability mass of the Yes tokens and of the No tokens."""
    yes, no = yes_no_ids(tokenizer)

    import torch

    def score(logits: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(-1)
        return torch.stack([probs[:, yes].sum(-1), probs[:, no].sum(-1)], dim=-1)

    return score
