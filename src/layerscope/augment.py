"""Text augmentations for the Layer-by-Layer invariance metrics (InfoNCE, LiDAR, DiME).

The paper (METHODS.md section 1) augments every prompt with NLPAug
``Sequential(SplitAug, RandomCharAug, KeyboardAug)``, ``p = 0.3`` each, and compares
two (InfoNCE, DiME) or 16 (LiDAR) augmented views with each other.  This module
re-implements the three augmenters in a few lines of standard-library Python,
applied in the same order and seeded with :class:`random.Random`:

* :func:`split_aug` -- split a randomly chosen word into two at a random inner
  position (inserts a single space, nothing else);
* :func:`random_char_aug` -- in randomly chosen words, apply a random character
  action to randomly chosen characters: ``"substitute"`` (default, as NLPAug),
  ``"insert"``, ``"swap"`` (with an adjacent character) or ``"delete"``;
* :func:`keyboard_aug` -- in randomly chosen words, replace randomly chosen
  characters by a neighbouring key on a QWERTY keyboard (case preserved).

Selection rule (mirrors NLPAug's defaults): a word is a maximal run of
non-whitespace; only words of at least ``min_chars = 4`` characters are eligible;
``ceil(p * n_words)`` words are drawn (at most ``max_words = 10``, at most the
number of eligible words, and none when ``p = 0``); inside a chosen word the
character-level augmenters change ``ceil(char_p * len(word))`` characters (at most
``max_chars = 10``) with ``char_p = 0.3``.  Unlike NLPAug, whitespace and
punctuation spacing are preserved exactly: only the intended edits happen.

Determinism: every function takes an explicit ``random.Random``; :func:`augment`
seeds one from ``seed`` and :func:`augment_views` derives one seed per
``(seed, view, text index)`` with SHA-256, so a view of a text does not depend on
the other texts in the list, the process, or ``PYTHONHASHSEED``.

NLPAug as an optional backend (``backend="nlpaug"``) -- what was checked
(nlpaug 1.1.11, installed with pip, run inside a network namespace with no
network at all, ``unshare -n``):

* ``nlpaug.augmenter.word.SplitAug``, ``nlpaug.augmenter.char.RandomCharAug`` and
  ``nlpaug.augmenter.char.KeyboardAug`` work fully offline: they need no model
  download (the keyboard layout is a JSON file shipped in the wheel,
  ``nlpaug/res/char/keyboard/en.json``).  Installing nlpaug pulls in ``gdown``,
  ``beautifulsoup4``, ``requests`` and ``pandas``, which these three never use.
* They have no seed argument; they draw from the *global* ``random`` and
  ``numpy.random`` generators.  After ``random.seed(s); np.random.seed(s)`` the
  output of ``Sequential([...]).augment(text)`` is identical across runs and
  across ``PYTHONHASHSEED`` values, and differs across seeds.  The backend here
  saves and restores both global states around the call.
* Quirks: ``aug_p=0`` is silently replaced by the default 0.3 (``elif
  self.aug_p:`` is falsy for 0), so the backend returns the text unchanged for
  ``p = 0`` without calling NLPAug; the character augmenters re-tokenise on
  non-word characters and re-join with spaces (``"It's"`` becomes ``"It ' s"``,
  double spaces collapse); ``SplitAug`` never splits off the last character;
  ``RandomCharAug`` substitutes from letters, digits and ``!@#$%^&*()_+``; the
  keyboard map includes shifted symbols.  ``import nlpaug.augmenter.word``
  eagerly imports ``transformers`` (~5 s).  nlpaug is unmaintained (last release
  2022), hence the built-in default; it is not a dependency (its test runs only
  with ``LAYERSCOPE_TEST_NLPAUG=1`` and nlpaug installed).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "DEFAULT_P",
    "QWERTY_NEIGHBOURS",
    "RANDOM_CHAR_CANDIDATES",
    "CharAction",
    "Backend",
    "keyboard_neighbours",
    "split_aug",
    "random_char_aug",
    "keyboard_aug",
    "augment",
    "augment_views",
    "derive_seed",
]

DEFAULT_P: float = 0.3
CharAction = Literal["substitute", "insert", "swap", "delete"]
Backend = Literal["builtin", "nlpaug"]

#: Characters RandomCharAug draws from (NLPAug default: letters, digits, ``!@#$%^&*()_+``).
RANDOM_CHAR_CANDIDATES: str = string.ascii_letters + string.digits + "!@#$%^&*()_+"

_QWERTY_ROWS: tuple[tuple[str, float], ...] = (
    # (keys, horizontal offset of the row in key widths, as on a physical keyboard)
    ("1234567890", 0.0),
    ("qwertyuiop", 0.5),
    ("asdfghjkl", 0.75),
    ("zxcvbnm", 1.25),
)


def _build_qwerty_neighbours() -> dict[str, str]:
    """Keys whose centres are adjacent: same row +-1, or adjacent row within 1 key."""
    pos: dict[str, tuple[int, float]] = {}
    for r, (keys, offset) in enumerate(_QWERTY_ROWS):
        for i, k in enumerate(keys):
            pos[k] = (r, i + offset)
    neighbours: dict[str, str] = {}
    for k, (r, x) in pos.items():
        near = [
            k2
            for k2, (r2, x2) in pos.items()
            if k2 != k and ((r2 == r and abs(x2 - x) == 1) or (abs(r2 - r) == 1 and abs(x2 - x) < 1))
        ]
        neighbours[k] = "".join(sorted(near, key=lambda c: (pos[c][0], pos[c][1])))
    return neighbours


#: QWERTY neighbours of every lowercase letter and digit (e.g. ``"s" -> "weazxd"``).
QWERTY_NEIGHBOURS: dict[str, str] = _build_qwerty_neighbours()


def keyboard_neighbours(char: str) -> str:
    """QWERTY neighbours of ``char`` (case-insensitive lookup; '' if none)."""
    return QWERTY_NEIGHBOURS.get(char.lower(), "")


def _tokens(text: str) -> list[str]:
    """Split into alternating [word, whitespace, word, ...] (words at even indices)."""
    return re.split(r"(\s+)", text)


def _choose_words(tokens: list[str], p: float, rng: random.Random, min_chars: int, max_words: int | None) -> list[int]:
    """Indices (into ``tokens``) of the words to augment, sorted."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    words = [i for i in range(0, len(tokens), 2) if tokens[i]]
    eligible = [i for i in words if len(tokens[i]) >= min_chars]
    n = math.ceil(p * len(words))
    if max_words is not None:
        n = min(n, max_words)
    n = min(n, len(eligible))
    return sorted(rng.sample(eligible, n)) if n > 0 else []


def _n_chars(word_len: int, char_p: float, max_chars: int | None, n_eligible: int) -> int:
    n = max(1, math.ceil(char_p * word_len)) if char_p > 0 else 0
    if max_chars is not None:
        n = min(n, max_chars)
    return min(n, n_eligible)


def _rng(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else random.Random(0)


def split_aug(
    text: str,
    p: float = DEFAULT_P,
    rng: random.Random | None = None,
    *,
    min_chars: int = 4,
    max_words: int | None = 10,
) -> str:
    """Split ``ceil(p * n_words)`` random words (of >= ``min_chars`` chars) in two.

    Each chosen word ``w`` becomes ``w[:i] + " " + w[i:]`` with ``i`` uniform in
    ``1 .. len(w) - 1``.  Only spaces are inserted.  ``rng=None`` uses
    ``random.Random(0)``.
    """
    rng = _rng(rng)
    tokens = _tokens(text)
    for i in _choose_words(tokens, p, rng, min_chars, max_words):
        w = tokens[i]
        cut = rng.randint(1, len(w) - 1)
        tokens[i] = w[:cut] + " " + w[cut:]
    return "".join(tokens)


def random_char_aug(
    text: str,
    p: float = DEFAULT_P,
    rng: random.Random | None = None,
    *,
    action: CharAction = "substitute",
    char_p: float = DEFAULT_P,
    min_chars: int = 4,
    max_words: int | None = 10,
    max_chars: int | None = 10,
    candidates: str = RANDOM_CHAR_CANDIDATES,
) -> str:
    """Random character edits in ``ceil(p * n_words)`` random words.

    In each chosen word, ``ceil(char_p * len(word))`` alphanumeric characters
    (at most ``max_chars``) are chosen and, by ``action``:

    * ``"substitute"`` (default): replaced by a different character from
      ``candidates``;
    * ``"insert"``: a character from ``candidates`` is inserted before each;
    * ``"swap"``: each is swapped with its right neighbour (left one for the last
      character);
    * ``"delete"``: removed (a word always keeps at least one character).
    """
    if action not in ("substitute", "insert", "swap", "delete"):
        raise ValueError(f"unknown action {action!r}")
    rng = _rng(rng)
    tokens = _tokens(text)
    for i in _choose_words(tokens, p, rng, min_chars, max_words):
        chars = list(tokens[i])
        eligible = [j for j, c in enumerate(chars) if c.isalnum()]
        n = _n_chars(len(chars), char_p, max_chars, len(eligible))
        if action == "delete":
            n = min(n, len(chars) - 1)
        picked = sorted(rng.sample(eligible, n)) if n > 0 else []
        if action == "substitute":
            for j in picked:
                chars[j] = rng.choice([c for c in candidates if c != chars[j]])
        elif action == "insert":
            for j in reversed(picked):  # right to left keeps earlier indices valid
                chars.insert(j, rng.choice(candidates))
        elif action == "swap":
            for j in picked:
                k = j + 1 if j + 1 < len(chars) else j - 1
                chars[j], chars[k] = chars[k], chars[j]
        else:  # delete
            for j in reversed(picked):
                del chars[j]
        tokens[i] = "".join(chars)
    return "".join(tokens)


def keyboard_aug(
    text: str,
    p: float = DEFAULT_P,
    rng: random.Random | None = None,
    *,
    char_p: float = DEFAULT_P,
    min_chars: int = 4,
    max_words: int | None = 10,
    max_chars: int | None = 10,
) -> str:
    """QWERTY typos in ``ceil(p * n_words)`` random words.

    In each chosen word, ``ceil(char_p * len(word))`` characters that have a
    keyboard neighbour (letters and digits, see :data:`QWERTY_NEIGHBOURS`) are
    replaced by a random neighbour; an uppercase letter stays uppercase.  The
    text length never changes.
    """
    rng = _rng(rng)
    tokens = _tokens(text)
    for i in _choose_words(tokens, p, rng, min_chars, max_words):
        chars = list(tokens[i])
        eligible = [j for j, c in enumerate(chars) if keyboard_neighbours(c)]
        n = _n_chars(len(chars), char_p, max_chars, len(eligible))
        for j in sorted(rng.sample(eligible, n)) if n > 0 else []:
            c = chars[j]
            new = rng.choice(keyboard_neighbours(c))
            chars[j] = new.upper() if c.isupper() else new
        tokens[i] = "".join(chars)
    return "".join(tokens)


def _augment_nlpaug(text: str, seed: int, p: float) -> str:
    """NLPAug Sequential(SplitAug, RandomCharAug, KeyboardAug) with seeded global RNGs."""
    if p == 0:  # nlpaug treats aug_p=0 as "use the default 0.3"
        return text
    try:
        import nlpaug.augmenter.char as nac
        import nlpaug.augmenter.word as naw
        import nlpaug.flow as naf
        import numpy as np
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("backend='nlpaug' needs `pip install nlpaug`") from exc
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        flow = naf.Sequential(
            [
                naw.SplitAug(aug_p=p),
                nac.RandomCharAug(aug_word_p=p, aug_char_p=p),
                nac.KeyboardAug(aug_word_p=p, aug_char_p=p),
            ]
        )
        out = flow.augment(text)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return out[0] if isinstance(out, list) else out


def augment(
    text: str,
    seed: int = 0,
    p: float = DEFAULT_P,
    *,
    backend: Backend = "builtin",
    action: CharAction = "substitute",
) -> str:
    """Split, then random-character, then keyboard augmentation (the paper's sequence).

    One ``random.Random(seed)`` drives the three steps in order.  ``p`` is the
    word-level (and character-level) probability of each step.  ``backend="nlpaug"``
    uses NLPAug instead (optional dependency; ``action`` is then ignored).
    """
    if backend == "nlpaug":
        return _augment_nlpaug(text, seed, p)
    if backend != "builtin":
        raise ValueError(f"unknown backend {backend!r}; expected 'builtin' or 'nlpaug'")
    rng = random.Random(seed)
    text = split_aug(text, p, rng)
    text = random_char_aug(text, p, rng, action=action, char_p=p)
    return keyboard_aug(text, p, rng, char_p=p)


def derive_seed(seed: int, view: int, index: int) -> int:
    """A 63-bit seed for view ``view`` of text ``index`` (SHA-256, process-independent)."""
    digest = hashlib.sha256(f"layerscope.augment:{seed}:{view}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def augment_views(
    texts: Sequence[str],
    n_views: int = 2,
    seed: int = 0,
    p: float = DEFAULT_P,
    *,
    backend: Backend = "builtin",
    action: CharAction = "substitute",
) -> list[list[str]]:
    """``n_views`` independently augmented copies of every text.

    Returns ``views[v][i]`` = view ``v`` of ``texts[i]`` (``n_views`` lists of
    ``len(texts)`` strings), each from :func:`augment` with seed
    :func:`derive_seed` ``(seed, v, i)``.  Two views for InfoNCE/DiME, 16 for LiDAR.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    return [
        [augment(t, derive_seed(seed, v, i), p, backend=backend, action=action) for i, t in enumerate(texts)]
        for v in range(n_views)
    ]
