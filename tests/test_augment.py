"""Tests of layerscope.augment (built-in split / random-char / keyboard augmenters)."""

from __future__ import annotations

import math
import os
import random

import pytest

from layerscope.augment import (
    QWERTY_NEIGHBOURS,
    augment,
    augment_views,
    keyboard_aug,
    keyboard_neighbours,
    random_char_aug,
    split_aug,
)

TEXT = (
    "Intermediate layers often give better embeddings than the final layer, "
    "and autoregressive models show a compression valley in their entropy.\n"
    "Encoders such as BERT stay mostly flat across depth — interesting!"
)
LONG_WORDS = " ".join(f"word{i:02d}x" for i in range(20))  # 20 eligible words


def only_spaces_inserted(original: str, augmented: str) -> bool:
    i = 0
    for c in augmented:
        if i < len(original) and c == original[i]:
            i += 1
        elif c != " ":
            return False
    return i == len(original)


def words(text: str) -> list[str]:
    return text.split()


# --------------------------------------------------------------------------- determinism


def test_augment_is_deterministic_for_a_seed() -> None:
    assert augment(TEXT, seed=3) == augment(TEXT, seed=3)
    assert augment_views([TEXT, LONG_WORDS], 4, seed=7) == augment_views([TEXT, LONG_WORDS], 4, seed=7)
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert keyboard_aug(TEXT, rng=rng_a) == keyboard_aug(TEXT, rng=rng_b)


def test_augment_differs_across_seeds_and_views() -> None:
    outs = {augment(TEXT, seed=s) for s in range(5)}
    assert len(outs) == 5
    assert all(o != TEXT for o in outs)
    views = augment_views([TEXT], n_views=3, seed=0)
    assert len({v[0] for v in views}) == 3
    assert augment_views([TEXT], 2, seed=0) != augment_views([TEXT], 2, seed=1)


def test_views_of_a_text_do_not_depend_on_the_other_texts() -> None:
    alone = augment_views([TEXT], 2, seed=9)
    together = augment_views([TEXT, LONG_WORDS, "x"], 2, seed=9)
    assert len(together) == 2 and all(len(v) == 3 for v in together)
    assert [v[0] for v in together] == [v[0] for v in alone]


def test_augment_does_not_touch_the_global_random_state() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    augment(TEXT, seed=1)
    assert random.random() == expected


# --------------------------------------------------------------------------- p = 0 and edge cases


def test_p_zero_leaves_text_unchanged() -> None:
    for seed in range(3):
        assert augment(TEXT, seed=seed, p=0.0) == TEXT
        rng = random.Random(seed)
        assert split_aug(TEXT, 0.0, rng) == TEXT
        for action in ["substitute", "insert", "swap", "delete"]:
            assert random_char_aug(TEXT, 0.0, rng, action=action) == TEXT  # type: ignore[arg-type]
        assert keyboard_aug(TEXT, 0.0, rng) == TEXT
    assert augment_views([TEXT, LONG_WORDS], 2, seed=0, p=0.0) == [[TEXT, LONG_WORDS]] * 2


@pytest.mark.parametrize("text", ["", "   ", "a bc def", "\n\t"])
def test_short_or_empty_texts_are_unchanged(text: str) -> None:
    # No word has the 4 characters needed to be eligible.
    assert augment(text, seed=0) == text


def test_invalid_p_raises() -> None:
    with pytest.raises(ValueError):
        augment(TEXT, p=1.5)


# --------------------------------------------------------------------------- split


@pytest.mark.parametrize("seed", range(5))
def test_split_only_inserts_spaces(seed: int) -> None:
    out = split_aug(TEXT, 0.3, random.Random(seed))
    assert out != TEXT
    assert only_spaces_inserted(TEXT, out)
    # A split is always inside a word: no new space next to existing whitespace.
    assert out.count("  ") == TEXT.count("  ")


def test_split_count_is_ceil_p_times_words() -> None:
    out = split_aug(LONG_WORDS, 0.3, random.Random(0))
    assert only_spaces_inserted(LONG_WORDS, out)
    assert len(words(out)) - len(words(LONG_WORDS)) == math.ceil(0.3 * 20)


# --------------------------------------------------------------------------- random character


def test_random_char_substitute_keeps_layout_and_changes_few_words() -> None:
    out = random_char_aug(LONG_WORDS, 0.3, random.Random(1))
    assert len(out) == len(LONG_WORDS)
    spaces = [i for i, c in enumerate(LONG_WORDS) if c.isspace()]
    assert [i for i, c in enumerate(out) if c.isspace()] == spaces
    changed = [a != b for a, b in zip(words(out), words(LONG_WORDS), strict=True)]
    assert sum(changed) == math.ceil(0.3 * 20)
    for new, old in zip(words(out), words(LONG_WORDS), strict=True):
        n_diff = sum(x != y for x, y in zip(new, old, strict=True))
        assert n_diff in (0, math.ceil(0.3 * len(old)))


def test_random_char_other_actions() -> None:
    ins = random_char_aug(LONG_WORDS, 0.3, random.Random(2), action="insert")
    assert len(ins) == len(LONG_WORDS) + 6 * math.ceil(0.3 * 7)
    dele = random_char_aug(LONG_WORDS, 0.3, random.Random(2), action="delete")
    assert len(dele) == len(LONG_WORDS) - 6 * math.ceil(0.3 * 7)
    swp = random_char_aug(LONG_WORDS, 0.3, random.Random(2), action="swap")
    assert swp != LONG_WORDS
    for new, old in zip(words(swp), words(LONG_WORDS), strict=True):
        assert sorted(new) == sorted(old)
    with pytest.raises(ValueError):
        random_char_aug(TEXT, action="explode")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keyboard


def test_qwerty_map_is_symmetric_and_physical() -> None:
    for k, nbrs in QWERTY_NEIGHBOURS.items():
        assert k not in nbrs
        for n in nbrs:
            assert k in QWERTY_NEIGHBOURS[n]
    # Facts about the physical layout.
    assert set(keyboard_neighbours("s")) == set("awedxz")
    assert set(keyboard_neighbours("G")) == set("tyfhvb")
    assert set(keyboard_neighbours("p")) == set("0ol")
    assert keyboard_neighbours("!") == ""


@pytest.mark.parametrize("seed", range(5))
def test_keyboard_replacements_are_qwerty_neighbours(seed: int) -> None:
    out = keyboard_aug(TEXT, 0.3, random.Random(seed))
    assert len(out) == len(TEXT)
    diffs = [(a, b) for a, b in zip(TEXT, out, strict=True) if a != b]
    assert diffs
    for old, new in diffs:
        assert new.lower() in keyboard_neighbours(old)
        assert old.isupper() == new.isupper() or not new.isalpha()


# --------------------------------------------------------------------------- optional nlpaug backend


@pytest.mark.skipif(
    not os.environ.get("LAYERSCOPE_TEST_NLPAUG"),
    reason="optional nlpaug backend: importing nlpaug takes seconds (it imports transformers); "
    "set LAYERSCOPE_TEST_NLPAUG=1 to run",
)
def test_nlpaug_backend_is_deterministic_if_installed() -> None:
    pytest.importorskip("nlpaug")
    a = augment(TEXT, seed=4, backend="nlpaug")
    assert a == augment(TEXT, seed=4, backend="nlpaug")
    assert a != augment(TEXT, seed=5, backend="nlpaug")
    assert augment(TEXT, seed=4, p=0.0, backend="nlpaug") == TEXT
    random.seed(7)
    expected = random.random()
    random.seed(7)
    augment(TEXT, seed=4, backend="nlpaug")
    assert random.random() == expected
