"""The local `evaluate` module against values worked out by hand, and the per-source grouping."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.grouped import grouped_metrics, mixed_label_sources


@pytest.fixture(scope="module")
def metric():
    return load_cxr_metric()


def test_known_values(metric) -> None:
    # decisions at 0.5: TP = 3 (0.8, 0.65, 0.9), FN = 1 (0.2), FP = 1 (0.7), TN = 3
    # ROC AUC: 12 of the 16 (positive, negative) pairs are ordered correctly
    # Brier: (0.01 + 0.16 + 0.1225 + 0.49 + 0.04 + 0.1225 + 0.64 + 0.01) / 8
    values = metric.compute(
        predictions=[0.1, 0.4, 0.35, 0.8, 0.65, 0.2, 0.9, 0.7], references=[0, 0, 0, 1, 1, 1, 1, 0], threshold=0.5
    )
    for key in ("sensitivity", "specificity", "accuracy", "ppv", "npv", "f1", "roc_auc"):
        assert values[key] == pytest.approx(0.75), key
    assert values["brier"] == pytest.approx(0.199375)
    assert (values["n"], values["n_positive"], values["threshold"]) == (8, 4, 0.5)
    stricter = metric.compute(
        predictions=[0.1, 0.4, 0.35, 0.8, 0.65, 0.2, 0.9, 0.7], references=[0, 0, 0, 1, 1, 1, 1, 0], threshold=0.75
    )
    assert (stricter["sensitivity"], stricter["specificity"], stricter["ppv"]) == (0.5, 1.0, 1.0)


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
