"""Patient-bootstrap intervals: they bracket the estimate, narrow with more patients, and do not narrow when a
patient's films are merely repeated."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxr.evaluation.bootstrap import roc_auc, roc_auc_ci


def scored_patients(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n patients, one film each: half positive, scores shifted up for positives (AUC about 0.76)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return labels, rng.normal(labels * 1.0, 1.0), np.array([f"p{i}" for i in range(n)])


def test_interval_brackets_the_estimate_and_narrows_with_patients() -> None:
    widths = []
    for n in (60, 600):
        labels, scores, patients = scored_patients(n)
        low, high = roc_auc_ci(labels, scores, patients, rounds=300)
        assert low <= roc_auc(labels, scores) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ten times the patients: about a third of the width


def test_repeated_films_of_the_same_patients_do_not_narrow_it() -> None:
    labels, scores, patients = scored_patients(80)
    low, high = roc_auc_ci(labels, scores, patients, rounds=300)
    repeated = roc_auc_ci(np.repeat(labels, 5), np.repeat(scores, 5), np.repeat(patients, 5), rounds=300)
    assert abs((repeated[1] - repeated[0]) - (high - low)) < 0.25 * (high - low)
    as_if_independent = roc_auc_ci(np.repeat(labels, 5), np.repeat(scores, 5), np.arange(400), rounds=300)
    assert as_if_independent[1] - as_if_independent[0] < 0.6 * (high - low)  # what image resampling would claim


def test_auc_is_undefined_on_one_class() -> None:
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))


def test_auc_is_sklearns_with_ties() -> None:
    """The rank form gives sklearn's value, ties (scores rounded to two decimals) and boolean labels included."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    for n in (5, 40, 319):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(n) * 0.3 + 0.2 * labels, 2)
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert roc_auc(labels.astype(bool), scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
