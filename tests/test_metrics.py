"""The local `evaluate` module against scikit-learn, on scores of a real model-like shape."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, precision_score, recall_score, roc_auc_score

from covid_cxr.evaluation import grouped_metrics, mixed_label_sources
from covid_cxr.metrics import load_cxr_metric


@pytest.fixture(scope="module")
def metric():
    return load_cxr_metric()


def test_matches_scikit_learn(metric) -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(0.35 * labels + rng.normal(0.35, 0.2, 500), 0, 1)
    threshold = 0.52
    decisions = (scores >= threshold).astype(int)
    values = metric.compute(predictions=scores, references=labels, threshold=threshold)
    assert values["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert values["accuracy"] == pytest.approx(accuracy_score(labels, decisions))
    assert values["sensitivity"] == pytest.approx(recall_score(labels, decisions))
    assert values["specificity"] == pytest.approx(recall_score(labels, decisions, pos_label=0))
    assert values["ppv"] == pytest.approx(precision_score(labels, decisions))
    assert values["npv"] == pytest.approx(precision_score(labels, decisions, pos_label=0))
    assert values["f1"] == pytest.approx(f1_score(labels, decisions))
    assert values["brier"] == pytest.approx(brier_score_loss(labels, scores))
    assert (values["n"], values["n_positive"], values["threshold"]) == (500, labels.sum(), threshold)


def test_ece_by_hand(metric) -> None:
    # bin [0.8, 0.9): 4 predictions of 0.8, 3 positive -> |0.75 - 0.8| = 0.05; bin [0.2, 0.3): 0.2, 1 of 4 -> 0.05
    values = metric.compute(predictions=[0.8] * 4 + [0.2] * 4, references=[1, 1, 1, 0, 1, 0, 0, 0])
    assert values["ece"] == pytest.approx(0.05)


def test_single_class_gives_nan_not_a_crash(metric) -> None:
    values = metric.compute(predictions=[0.9, 0.2], references=[1, 1], threshold=0.5)
    assert np.isnan(values["roc_auc"]) and np.isnan(values["specificity"]) and values["sensitivity"] == 0.5


def test_grouping_per_source_and_mixed(metric) -> None:
    sources = ["nih"] * 4 + ["ieee"] * 4 + ["hannover"] * 2
    labels = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.1, 0.3, 0.7, 0.8, 0.9, 0.9, 0.4])
    mixed = mixed_label_sources(sources, labels)
    assert mixed == ["ieee"]
    grouped = grouped_metrics(metric, scores, labels, sources, 0.5, mixed)
    assert set(grouped) == {"all", "mixed_sources", "nih", "ieee", "hannover"}
    assert grouped["mixed_sources"] == grouped["ieee"]
    assert grouped["ieee"]["roc_auc"] == pytest.approx(0.75)
    assert grouped["nih"]["specificity"] == pytest.approx(0.75)
