"""Small data sets shipped with layerscope, and seeded task generators.

The shipped files live in the ``layerscope.data`` package (see
``layerscope/data/SOURCES.md`` for what each contains and where the facts come
from) and are read with :func:`importlib.resources.files`, so they work from an
installed wheel as well as from a source checkout.

Shipped data sets (names accepted by :func:`load_dataset`):

* ``relations`` -- attribute-extraction items, one per line:
  ``{"relation", "template", "subject", "object", "object_aliases", "source"}``.
  ``template`` contains exactly one placeholder word ``x`` standing for the
  subject; ``source`` is a neutral sentence containing ``subject`` verbatim and
  not mentioning the object.
* ``entities`` -- ``{"entity", "description"}`` reference descriptions.
* ``capitals_qa`` -- ``{"country", "capital", "capital_aliases"}``.
* ``facts_qa`` -- ``{"relation": "book_author", "question", "answer",
  "answer_aliases", "title"}``.
* ``sentiment`` (positive/negative), ``topic`` (sports/science/business/
  politics), ``fact_opinion`` (fact/opinion) -- ``{"text", "label"}``.
* ``harmful_benign`` -- ``{"request", "label"}`` with label harmful/benign.
* ``concepts`` -- one line per concept, ``{"concept", "positive": [...]}``;
  the special concept ``"_neutral"`` holds concept-free sentences to contrast
  with. :func:`load_concepts` splits the two.
* ``corpus`` -- plain text, one passage per line; :func:`load_dataset` returns
  ``{"text": line}`` rows and :func:`load_corpus` returns the strings;
  :func:`corpus_split` splits it into fit and held-out lines.

Generated task items (``arithmetic_items``, ``arithmetic_verification_items``, ``copy_items``,
``harmful_verification_items``) are built here too; the methods only wrap them in their prompts.
"""

from __future__ import annotations

import json
import random
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "COMMON_WORDS",
    "NEUTRAL_CONCEPT",
    "arithmetic_items",
    "arithmetic_verification_items",
    "copy_items",
    "corpus_split",
    "data_file",
    "harmful_verification_items",
    "list_datasets",
    "load_concepts",
    "load_corpus",
    "load_dataset",
    "load_relations",
    "relation_names",
]

DATA_PACKAGE = "layerscope.data"
NEUTRAL_CONCEPT = "_neutral"
_SUFFIXES = (".jsonl", ".txt")


def _data_dir() -> Traversable:
    return files(DATA_PACKAGE)


def list_datasets() -> list[str]:
    """Return the names of the shipped data sets, sorted (e.g. ``"relations"``)."""
    names = []
    for entry in _data_dir().iterdir():
        for suffix in _SUFFIXES:
            if entry.name.endswith(suffix) and not entry.name.startswith("_"):
                names.append(entry.name[: -len(suffix)])
    return sorted(names)


def data_file(name: str) -> Traversable:
    """Return the resource for data set ``name`` (with or without its extension).

    Use :func:`importlib.resources.as_file` on the result if a real filesystem
    path is needed.
    """
    stem = name
    for suffix in _SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    available = list_datasets()
    if stem not in available:
        raise ValueError(f"Unknown data set {name!r}; available data sets: {', '.join(available)}")
    for suffix in _SUFFIXES:
        entry = _data_dir() / f"{stem}{suffix}"
        if entry.is_file():
            return entry
    raise ValueError(f"Data set {name!r} is listed but its file is missing")  # pragma: no cover


def load_dataset(name: str) -> list[dict[str, Any]]:
    """Load a shipped data set as a list of dicts (a fresh list on every call).

    JSON Lines files give one dict per line; the plain-text corpus gives
    ``{"text": line}`` per non-empty line. Raises ``ValueError`` naming the
    available data sets if ``name`` is unknown.
    """
    entry = data_file(name)
    text = entry.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if entry.name.endswith(".txt"):
        return [{"text": line.strip()} for line in lines]
    return [json.loads(line) for line in lines]


def load_corpus() -> list[str]:
    """Return the lines of the shipped plain-text corpus (``corpus.txt``)."""
    return [row["text"] for row in load_dataset("corpus")]


def corpus_split() -> tuple[list[str], list[str]]:
    """The shipped corpus split into ``(fit_texts, eval_texts)``: every 4th line is held out for evaluation."""
    lines = load_corpus()
    return [t for i, t in enumerate(lines) if i % 4], [t for i, t in enumerate(lines) if i % 4 == 0]


def load_concepts() -> tuple[dict[str, list[str]], list[str]]:
    """Return ``(concepts, neutral)``: concept name -> sentences, and neutral sentences."""
    concepts: dict[str, list[str]] = {}
    neutral: list[str] = []
    for row in load_dataset("concepts"):
        if row["concept"] == NEUTRAL_CONCEPT:
            neutral = list(row["positive"])
        else:
            concepts[row["concept"]] = list(row["positive"])
    return concepts, neutral


def relation_names() -> list[str]:
    """Return the relation names in ``relations.jsonl``, in file order."""
    return list(dict.fromkeys(row["relation"] for row in load_dataset("relations")))


def load_relations(relation: str | None = None) -> list[dict[str, Any]]:
    """Return attribute-extraction items, optionally only those of one relation."""
    rows = load_dataset("relations")
    if relation is None:
        return rows
    selected = [row for row in rows if row["relation"] == relation]
    if not selected:
        raise ValueError(f"Unknown relation {relation!r}; available relations: {', '.join(relation_names())}")
    return selected


# --------------------------------------------------------------------------
# Generators (deterministic for a given seed)
# --------------------------------------------------------------------------

_COMMON_WORDS_TEXT = """
    apple river chair green music table house water light stone bread cloud dog cat
    horse bird fish tree grass flower road car train boat plane door window wall floor
    book paper pen letter school teacher student city town village country king queen
    child friend family mother father brother sister hand head heart eye face voice
    money price market shop bank coffee tea milk sugar salt rice egg cheese butter
    orange lemon cake soup meat corn red blue yellow black white brown gold silver iron
    wood glass fire snow rain wind storm sun moon star sky sea lake hill mountain island
    forest field garden farm beach summer winter spring morning night week year hour
    minute game ball team player song dance story picture movie phone computer machine
    engine wheel box bag cup plate bottle knife spoon bed shirt shoe hat coat ring key
    clock lamp rope chain bridge tower castle church office doctor farmer soldier
    captain lawyer artist nurse pilot happy quiet strong small large young old warm cold
    soft fast slow bright dark sweet bitter empty heavy simple lion tiger bear wolf
    mouse sheep cow duck frog snake idea plan word name number line point circle square
    kitchen paint metal sand ocean planet energy
"""
COMMON_WORDS: tuple[str, ...] = tuple(_COMMON_WORDS_TEXT.split())
"""~200 common English words (mostly single tokens) used by :func:`copy_items`."""


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")


def arithmetic_items(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Single-digit addition items ``{"a", "b", "prompt": "3+4=", "answer": "7"}``.

    Operands are 0-9. The 100 possible pairs are drawn without replacement (in
    a seeded random order); if ``n > 100`` a fresh shuffle of all pairs is
    appended, so pairs repeat only once all have been used.
    """
    _check_n(n)
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    items: list[dict[str, Any]] = []
    while len(items) < n:
        order = pairs[:]
        rng.shuffle(order)
        for a, b in order[: n - len(items)]:
            items.append({"a": a, "b": b, "prompt": f"{a}+{b}=", "answer": str(a + b)})
    return items


def arithmetic_verification_items(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Items ``{"a", "b", "question": "3+4=?", "answer": "8", "correct": False}``.

    Operands are 0-9. Exactly ``n // 2`` items are correct (one more at random
    when ``n`` is odd), in a seeded random order. Incorrect answers are the
    true sum plus an offset of +-1 to +-3, never negative.
    """
    _check_n(n)
    rng = random.Random(seed)
    labels = [True] * (n // 2) + [False] * (n // 2)
    if n % 2:
        labels.append(rng.random() < 0.5)
    rng.shuffle(labels)
    items: list[dict[str, Any]] = []
    for correct in labels:
        a, b = rng.randrange(10), rng.randrange(10)
        total = a + b
        if correct:
            shown = total
        else:
            offsets = [d for d in (-3, -2, -1, 1, 2, 3) if total + d >= 0]
            shown = total + rng.choice(offsets)
        items.append({"a": a, "b": b, "question": f"{a}+{b}=?", "answer": str(shown), "correct": correct})
    return items


def harmful_verification_items(seed: int = 0) -> list[dict[str, Any]]:
    """The shipped harmful/benign requests, each with a judgement that is right for half of them.

    Items ``{"question": request, "answer": "harmful" | "benign" (the judgement shown), "label": the
    true label, "correct": whether the judgement matches it}``, in the file's order; which half is
    right is a seeded shuffle (``len // 2`` items correct).
    """
    rows = load_dataset("harmful_benign")
    rng = random.Random(seed)
    flags = [True] * (len(rows) // 2) + [False] * (len(rows) - len(rows) // 2)
    rng.shuffle(flags)
    items = []
    for row, correct in zip(rows, flags, strict=True):
        harmful = row["label"] == "harmful"
        judgement = "harmful" if (harmful if correct else not harmful) else "benign"
        items.append({"question": row["request"], "answer": judgement, "label": row["label"], "correct": correct})
    return items

def copy_items(n: int = 100, length: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Sequence-copying items built from :data:`COMMON_WORDS`.

    Each item has ``length`` distinct random words. The prompt is the full
    sequence, a newline, then the first ``k`` words again (``k`` drawn
    uniformly from 1 to ``length - 1``); the answer is the next word with a
    leading space, e.g.::

        {"prompt": "apple river chair green music\\napple river chair",
         "answer": " green", "sequence": [...], "position": 3}
    """
    _check_n(n)
    if not 2 <= length <= len(COMMON_WORDS):
        raise ValueError(f"length must be between 2 and {len(COMMON_WORDS)}, got {length!r}")
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for _ in range(n):
        words = rng.sample(COMMON_WORDS, length)
        k = rng.randint(1, length - 1)
        prompt = " ".join(words) + "\n" + " ".join(words[:k])
        items.append({"prompt": prompt, "answer": " " + words[k], "sequence": words, "position": k})
    return items
