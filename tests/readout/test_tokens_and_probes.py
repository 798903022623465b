"""The shared token helpers and the one probe, against the tokenizer and sklearn directly."""

import numpy as np
import pytest
import torch

from layerscope.errors import LayerscopeError
from layerscope.names import canonical_name
from layerscope.readout import probe_accuracy, single_token, word_token_ids, yes_no_scorer
from tests.conftest import tiny


def test_single_token_and_its_message():
    tok = tiny("llama").tokenizer
    (paris,) = tok("paris", add_special_tokens=False)["input_ids"]
    assert single_token(tok, "paris", "--answer") == paris
    with pytest.raises(LayerscopeError, match=r"--answer 'paris rome' is 2 tokens"):
        single_token(tok, "paris rome", "--answer")
    with pytest.raises(LayerscopeError, match="is empty"):
        single_token(tok, "", "--wrong")


def test_yes_no_scorer_sums_the_first_token_probabilities():
    tok = tiny("llama").tokenizer
    yes, no = word_token_ids(tok, "Yes"), word_token_ids(tok, "No")
    logits = torch.randn(3, len(tok), generator=torch.Generator().manual_seed(0))
    probs = logits.softmax(-1)
    expected = torch.stack([probs[:, yes].sum(-1), probs[:, no].sum(-1)], dim=-1)
    torch.testing.assert_close(yes_no_scorer(tok)(logits), expected)


def test_probe_accuracy_is_sklearns_cross_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 5)), np.array([0, 1] * 20)
    X[y == 1, 0] += 1.5
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(clf, X, y, cv=StratifiedKFold(4, shuffle=True, random_state=3))
    assert probe_accuracy(X, y, folds=4, seed=3) == pytest.approx((scores.mean(), scores.std()))


def test_one_name_normaliser():
    known = ("prompt_entropy", "skip-attention")
    assert canonical_name(" Prompt-Entropy", known, what="metric") == "prompt_entropy"
    assert canonical_name("skip_attention", known, what="manipulation") == "skip-attention"
    assert canonical_name("skip", known, what="manipulation", aliases={"skip": "skip-attention"}) == "skip-attention"
    with pytest.raises(ValueError, match="unknown metric 'lidr': use one of prompt_entropy, skip-attention"):
        canonical_name("lidr", known, what="metric")
