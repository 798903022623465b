"""The tasks of the attend sweep (shipped items, one-shot prompts) and the manipulation names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerscope.errors import LayerscopeError
from layerscope.names import canonical_name

MANIPULATIONS = ("random", "freeze", "shuffle", "skip-attention")
TASKS = ("capitals", "facts", "arithmetic", "copy")
MATCHES = ("greedy", "first-token")
_ALIASES = {"skip_attention": "skip-attention", "skip": "skip-attention", "skip-attn": "skip-attention"}

CAPITALS_SHOT = ("Spain", "Madrid")
FACTS_SHOT = ("Pride and Prejudice", "Jane Austen")
ARITHMETIC_SHOT = (2, 5)
SWITCH_EXAMPLE = {
    "prompt": "Q: What is the capital of Spain?\nA: Madrid\nQ: What is the capital of France?\nA:",
    "position": "France",
    "source": "The country Italy",
    "source_position": "Italy",
    "answers": (" Paris", " Rome"),
}


# ---- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One task item: a prompt and its accepted continuations (the first is the canonical answer).

    Answers carry their leading space where the prompt ends before a word (``" Paris"``).
    """

    prompt: str
    answers: tuple[str, ...]


def task_items(name: str, limit: int | None = None, seed: int = 0) -> list[Item]:
    """The items of a shipped task (``capitals``, ``facts``, ``arithmetic``, ``copy``), >= 100 each.

    - ``capitals``: one-shot ``"Q: What is the capital of Spain?\\nA: Madrid\\nQ: What is the capital
      of X?\\nA:"`` -> ``" <capital>"`` (capitals_qa, aliases accepted; Spain itself left out): 147.
    - ``facts``: one-shot ``"Q: Who wrote Pride and Prejudice?\\nA: Jane Austen\\nQ: Who wrote T?\\nA:"``
      -> ``" <author>"`` (facts_qa, aliases such as the surname accepted): 164.
    - ``arithmetic``: one-shot ``"2+5=7\\na+b="`` -> ``"<a+b>"`` for all 100 single-digit pairs (seeded
      order). (A "Q: What is a+b?\\nA:" format makes the first answer token a bare space on
      SmolLM2, whose tokenizer splits " 7" into " " + "7", and the model mostly copies the example.)
    - ``copy``: ``"w1 w2 w3 w4 w5\\nw1 w2 w3"`` -> ``" w4"`` (150 sequences of 5 random common words).

    ``limit`` keeps the first N items.
    """
    from layerscope import datasets

    if limit is not None and limit < 1:
        raise LayerscopeError(f"limit must be >= 1, got {limit}")
    if name == "capitals":
        shot = f"Q: What is the capital of {CAPITALS_SHOT[0]}?\nA: {CAPITALS_SHOT[1]}\n"
        items = [
            Item(
                f"{shot}Q: What is the capital of {row['country']}?\nA:",
                _answers(row["capital"], row["capital_aliases"]),
            )
            for row in datasets.load_dataset("capitals_qa")
            if row["country"] != CAPITALS_SHOT[0]
        ]
    elif name == "facts":
        shot = f"Q: Who wrote {FACTS_SHOT[0]}?\nA: {FACTS_SHOT[1]}\n"
        items = [
            Item(f"{shot}Q: {row['question']}\nA:", _answers(row["answer"], row["answer_aliases"]))
            for row in datasets.load_dataset("facts_qa")
            if row["title"] != FACTS_SHOT[0]
        ]
    elif name == "arithmetic":
        a, b = ARITHMETIC_SHOT
        items = [
            Item(f"{a}+{b}={a + b}\n{row['prompt']}", (row["answer"],))
            for row in datasets.arithmetic_items(100, seed=seed)
        ]
    elif name == "copy":
        items = [Item(row["prompt"], (row["answer"],)) for row in datasets.copy_items(150, length=5, seed=seed)]
    else:
        raise LayerscopeError(f"unknown task {name!r}: use one of {', '.join(TASKS)}")
    return items[:limit] if limit is not None else items


def _answers(main: str, aliases: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(" " + a for a in [main, *aliases]))


# ---- manipulations ---------------------------------------------------------------------------


def canonical_manipulation(name: str) -> str:
    return canonical_name(name, MANIPULATIONS, what="manipulation", aliases=_ALIASES)
