"""Tests for the shipped data sets and the generators in layerscope.datasets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from layerscope import datasets as ds

EXPECTED = {
    "capitals_qa",
    "concepts",
    "corpus",
    "entities",
    "fact_opinion",
    "facts_qa",
    "harmful_benign",
    "relations",
    "sentiment",
    "topic",
}


def _mentions(text: str, phrase: str) -> bool:
    """Case-insensitive mention test; short phrases (<=3 chars) must be whole words."""
    text, phrase = text.lower(), phrase.lower()
    if len(phrase) <= 3:
        return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
    return phrase in text


def _no_duplicates(values: list) -> None:
    dupes = [v for v, c in Counter(values).items() if c > 1]
    assert not dupes, f"duplicates: {dupes[:5]}"


def _assert_balanced(labels: list[str], lo: float = 0.4, hi: float = 0.6) -> None:
    counts = Counter(labels)
    assert len(counts) == 2, counts
    for label, count in counts.items():
        assert lo <= count / len(labels) <= hi, (label, counts)


# ---------------------------------------------------------------- loader


def test_list_datasets() -> None:
    assert set(ds.list_datasets()) >= EXPECTED
    assert ds.list_datasets() == sorted(ds.list_datasets())


def test_unknown_name_raises_with_available_names() -> None:
    with pytest.raises(ValueError) as info:
        ds.load_dataset("no_such_dataset")
    message = str(info.value)
    assert "no_such_dataset" in message
    for name in ds.list_datasets():
        assert name in message


def test_extension_is_optional() -> None:
    assert ds.load_dataset("entities.jsonl") == ds.load_dataset("entities")


def test_load_returns_fresh_lists() -> None:
    first = ds.load_dataset("entities")
    first.clear()
    assert ds.load_dataset("entities")


def test_all_files_parse_and_strings_are_clean() -> None:
    for name in ds.list_datasets():
        rows = ds.load_dataset(name)
        assert rows, name
        for row in rows:
            assert isinstance(row, dict)
            for key, value in row.items():
                next_token = name == "patching_pairs" and key in ("answer", "wrong")  # with its leading space
                if isinstance(value, str) and next_token:
                    assert value == " " + value.strip() and value.strip(), (name, row)
                elif isinstance(value, str):
                    assert value == value.strip() and value, (name, row)


# ---------------------------------------------------------------- relations


def test_relations_sizes_and_keys() -> None:
    rows = ds.load_relations()
    keys = {"relation", "template", "subject", "object", "object_aliases", "source"}
    for row in rows:
        assert set(row) == keys, row
        assert isinstance(row["object_aliases"], list)
    per_relation = Counter(row["relation"] for row in rows)
    assert len(per_relation) >= 10
    for relation, count in per_relation.items():
        assert count >= 45, (relation, count)
    for forbidden in ("company_ceo",):
        assert forbidden not in per_relation


def test_relations_no_duplicates_and_one_template_each() -> None:
    rows = ds.load_relations()
    _no_duplicates([(row["relation"], row["subject"]) for row in rows])
    templates: dict[str, set[str]] = {}
    for row in rows:
        templates.setdefault(row["relation"], set()).add(row["template"])
    assert all(len(t) == 1 for t in templates.values()), templates


def test_relation_templates_have_exactly_one_placeholder() -> None:
    for row in ds.load_relations():
        assert len(re.findall(r"\bx\b", row["template"])) == 1, row["template"]


def test_relation_sources_contain_subject_but_not_object() -> None:
    for row in ds.load_relations():
        assert row["subject"] in row["source"], row
        for answer in [row["object"], *row["object_aliases"]]:
            assert not _mentions(row["source"], answer), (answer, row["source"])
            assert not _mentions(row["subject"], answer), (answer, row["subject"])


def test_relation_sources_are_varied() -> None:
    rows = ds.load_relations()
    for relation in ds.relation_names():
        sources = {row["source"].replace(row["subject"], "{}") for row in rows if row["relation"] == relation}
        assert len(sources) >= 5, relation


def test_load_relations_filter() -> None:
    capitals = ds.load_relations("country_capital")
    assert capitals and all(row["relation"] == "country_capital" for row in capitals)
    with pytest.raises(ValueError, match="country_capital"):
        ds.load_relations("company_ceo")


def test_some_known_relation_facts() -> None:
    index = {(row["relation"], row["subject"]): row["object"] for row in ds.load_relations()}
    assert index[("country_capital", "France")] == "Paris"
    assert index[("country_currency", "Japan")] == "yen"
    assert index[("element_symbol", "iron")] == "Fe"
    assert index[("animal_class", "whale")] == "mammal"
    assert index[("person_occupation", "Albert Einstein")] == "physicist"


# ---------------------------------------------------------------- QA and entities


def test_entities() -> None:
    rows = ds.load_dataset("entities")
    assert len(rows) >= 70
    _no_duplicates([row["entity"] for row in rows])
    for row in rows:
        assert set(row) == {"entity", "description"}
        assert 5 <= len(row["description"].split()) <= 15, row


def test_capitals_qa() -> None:
    rows = ds.load_dataset("capitals_qa")
    assert len(rows) >= 120
    _no_duplicates([row["country"] for row in rows])
    countries = {row["country"] for row in rows}
    for excluded in ("Bolivia", "South Africa", "Israel", "Palestine", "Sri Lanka", "Switzerland"):
        assert excluded not in countries
    for row in rows:
        assert {"country", "capital"} <= set(row)
        # The answer must not be recoverable by copying from the question.
        assert row["country"].lower() not in row["capital"].lower(), row
    by_country = {row["country"]: row["capital"] for row in rows}
    assert by_country["France"] == "Paris"
    assert by_country["Japan"] == "Tokyo"


def test_facts_qa() -> None:
    rows = ds.load_dataset("facts_qa")
    assert len(rows) >= 120
    _no_duplicates([row["question"] for row in rows])
    for row in rows:
        assert {"relation", "question", "answer"} <= set(row)
        assert row["relation"] == "book_author"
        assert row["question"].startswith("Who wrote ") and row["question"].endswith("?")
        assert not _mentions(row["question"], row["answer"]), row
    answers = {row["question"]: row["answer"] for row in rows}
    assert answers["Who wrote Pride and Prejudice?"] == "Jane Austen"


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("sentiment", {"positive", "negative"}),
        ("fact_opinion", {"fact", "opinion"}),
    ],
)
def test_binary_classification(name: str, labels: set[str]) -> None:
    rows = ds.load_dataset(name)
    assert len(rows) >= 320
    _no_duplicates([row["text"].lower() for row in rows])
    assert {row["label"] for row in rows} == labels
    _assert_balanced([row["label"] for row in rows])
    for row in rows:
        assert set(row) == {"text", "label"}
        assert 6 <= len(row["text"].split()) <= 25, row


def test_topic() -> None:
    rows = ds.load_dataset("topic")
    assert len(rows) >= 320
    _no_duplicates([row["text"].lower() for row in rows])
    counts = Counter(row["label"] for row in rows)
    assert set(counts) == {"sports", "science", "business", "politics"}
    assert all(count >= 80 for count in counts.values()), counts


def test_harmful_benign() -> None:
    rows = ds.load_dataset("harmful_benign")
    assert len(rows) >= 220
    _no_duplicates([row["request"].lower() for row in rows])
    for row in rows:
        assert set(row) == {"request", "label"}
    _assert_balanced([row["label"] for row in rows])


def test_rows_are_not_sorted_by_label() -> None:
    for name in ("sentiment", "fact_opinion", "topic", "harmful_benign"):
        labels = [row["label"] for row in ds.load_dataset(name)]
        first_half = Counter(labels[: len(labels) // 2])
        assert len(first_half) == len(set(labels)), name


# ---------------------------------------------------------------- corpus and concepts


def test_corpus() -> None:
    lines = ds.load_corpus()
    assert len(lines) >= 250
    _no_duplicates(lines)
    for line in lines:
        assert 15 <= len(line.split()) <= 40, line
    assert ds.load_dataset("corpus")[0] == {"text": lines[0]}


def test_concepts() -> None:
    concepts, neutral = ds.load_concepts()
    assert len(concepts) >= 8
    assert ds.NEUTRAL_CONCEPT not in concepts
    for concept, sentences in concepts.items():
        assert len(sentences) >= 20, concept
        _no_duplicates(sentences)
    assert len(neutral) >= 40
    _no_duplicates(neutral)
    everything = [s for sentences in concepts.values() for s in sentences] + neutral
    _no_duplicates(everything)
    for sentence in neutral:
        for concept in concepts:
            assert not _mentions(sentence, concept), (concept, sentence)


# ---------------------------------------------------------------- generators


def test_arithmetic_items() -> None:
    items = ds.arithmetic_items()
    assert len(items) == 200
    for item in items:
        a, b = item["a"], item["b"]
        assert 0 <= a <= 9 and 0 <= b <= 9
        assert item["prompt"] == f"{a}+{b}="
        assert int(item["answer"]) == int(item["prompt"][0]) + int(item["prompt"][2])
    first_hundred = [(item["a"], item["b"]) for item in items[:100]]
    _no_duplicates(first_hundred)
    assert len(ds.arithmetic_items(n=7)) == 7
    assert ds.arithmetic_items(n=0) == []


def test_arithmetic_verification_items() -> None:
    items = ds.arithmetic_verification_items()
    assert len(items) == 200
    assert sum(item["correct"] for item in items) == 100
    for item in items:
        match = re.fullmatch(r"(\d)\+(\d)=\?", item["question"])
        assert match, item
        true_sum = int(match.group(1)) + int(match.group(2))
        shown = int(item["answer"])
        assert shown >= 0
        if item["correct"]:
            assert shown == true_sum
        else:
            assert 1 <= abs(shown - true_sum) <= 3
    _assert_balanced(["yes" if i["correct"] else "no" for i in ds.arithmetic_verification_items(51)])


def test_copy_items() -> None:
    items = ds.copy_items(n=50, length=6)
    assert len(items) == 50
    for item in items:
        first, second = item["prompt"].split("\n")
        words = first.split(" ")
        assert len(words) == 6 and len(set(words)) == 6
        shown = second.split(" ")
        assert 1 <= len(shown) <= 5
        assert words[: len(shown)] == shown
        assert item["answer"] == " " + words[len(shown)]
        assert all(word in ds.COMMON_WORDS for word in words)
    with pytest.raises(ValueError):
        ds.copy_items(length=1)


def test_common_words() -> None:
    assert len(ds.COMMON_WORDS) >= 150
    _no_duplicates(list(ds.COMMON_WORDS))
    assert all(re.fullmatch(r"[a-z]+", word) for word in ds.COMMON_WORDS)


@pytest.mark.parametrize(
    "generator",
    [ds.arithmetic_items, ds.arithmetic_verification_items, ds.copy_items],
)
def test_generators_deterministic_and_seed_dependent(generator) -> None:
    assert generator(seed=3) == generator(seed=3)
    assert generator(seed=3) != generator(seed=4)
    assert generator() == generator(seed=0)


def test_generators_reject_negative_n() -> None:
    for generator in (ds.arithmetic_items, ds.arithmetic_verification_items, ds.copy_items):
        with pytest.raises(ValueError):
            generator(n=-1)
