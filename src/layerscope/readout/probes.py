"""Linear probes: a standardised logistic regression scored by stratified k-fold cross-validation.

Layer by Layer probes every depth with it, the loop experiments every (layer, iteration), the
Patchscopes attribute evaluation every layer: one probe, so their accuracies compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["probe_accuracy"]


def probe_accuracy(X: np.ndarray, y: Sequence, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Mean and std over stratified folds of a standardised logistic-regression probe on ``X [N, D]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_score(clf, X, np.asarray(y), cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())
