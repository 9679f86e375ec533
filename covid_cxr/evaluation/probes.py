"""Linear probes on frozen backbone features: the fine-tune's baseline and the shortcut check.

If frozen features predict the image's *source* about as well as its label, a classifier can score by
recognising the hospital; the model card prints both numbers side by side.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def _probe() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))


def label_probe(
    train_x: np.ndarray, train_y: np.ndarray, *eval_x: np.ndarray, sample_weight: np.ndarray | None = None
) -> list[np.ndarray]:
    """Fit on train features (class-balanced, times `sample_weight` if given); return P(covid) for each
    evaluation feature matrix."""
    probe = _probe().fit(train_x, train_y, logisticregression__sample_weight=sample_weight)
    return [probe.predict_proba(x)[:, 1] for x in eval_x]


def source_probe(
    train_x: np.ndarray, train_sources: list[str], test_x: np.ndarray, test_sources: list[str]
) -> dict[str, float]:
    """How well frozen features tell the sources apart, against always guessing the commonest source."""
    predicted = _probe().fit(train_x, train_sources).predict(test_x)
    majority = Counter(train_sources).most_common(1)[0][0]
    return {
        "source_accuracy": float(accuracy_score(test_sources, predicted)),
        "source_balanced_accuracy": float(balanced_accuracy_score(test_sources, predicted)),
        "source_majority_baseline": float(np.mean([s == majority for s in test_sources])),
        "n_sources": len(set(train_sources)),
    }
