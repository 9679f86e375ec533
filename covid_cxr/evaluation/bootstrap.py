"""Confidence intervals that respect patients: resample whole patients, never single images.

A patient's films are not independent (same body, often the same day and machine), so resampling images would
give intervals that are too narrow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def patient_bootstrap(
    statistic: Callable[[np.ndarray], float], groups: np.ndarray, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of `statistic(indices)` over resamples of the patients in `groups` (one entry per
    image). Resamples where the statistic is undefined (NaN, e.g. AUC on one class) are left out."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    values = np.array(
        [
            statistic(np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))]))
            for _ in range(rounds)
        ]
    )
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of 0/1 labels, NaN when only one class is present: the Mann-Whitney statistic from the scores'
    ranks (a tie counts one half), the value sklearn's roc_auc_score gives at a twentieth of its cost, which a
    bootstrap pays thousands of times."""
    positive = np.asarray(labels) == 1
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if not n_positive or not n_negative:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def roc_auc_ci(labels: np.ndarray, scores: np.ndarray, patients: np.ndarray, rounds: int = 2000) -> tuple[float, float]:
    """Patient-bootstrap 95% interval of the ROC AUC."""
    return patient_bootstrap(lambda idx: roc_auc(labels[idx], scores[idx]), np.asarray(patients), rounds)


def roc_auc_difference_ci(
    labels: np.ndarray, scores: np.ndarray, baseline: np.ndarray, patients: np.ndarray, rounds: int = 2000
) -> tuple[float, float]:
    """Paired patient-bootstrap 95% interval of AUC(scores) - AUC(baseline) on the same images: a change is a
    gain only when the whole interval lies above zero."""

    def change(idx: np.ndarray) -> float:
        return roc_auc(labels[idx], scores[idx]) - roc_auc(labels[idx], baseline[idx])

    return patient_bootstrap(change, np.asarray(patients), rounds)
