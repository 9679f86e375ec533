"""Patient-grouped k-fold cross-validation: the yardstick recipes are chosen on, instead of the small test split.

The folds are dealt like the splits (covid_cxr.data.splits): whole ``patient_group``s, each fold mirroring the
source x label mix. In round k, fold k is scored, fold k+1 is the validation part (temperature, threshold, early
stopping) and the rest trains, as in the train/validation/test recipe. Every image is thus scored once by a model
that never saw its patient, so every image of the mixed-label sources is scored, not only the test split's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import datasets
import evaluate
import numpy as np
from datasets.fingerprint import Hasher
from scipy.special import logit
from sklearn.metrics import recall_score

from covid_cxr.data.splits import deal_folds, strata_of
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.bootstrap import roc_auc_ci
from covid_cxr.modeling.calibration import choose_threshold, fit_temperature
from covid_cxr.modeling.inference import softmax

# What a cross-validated recipe does in one round: (round, train, validation, test indices) -> uncalibrated
# P(covid) on validation and on test
FoldScorer = Callable[[int, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def rows_key(dataset: datasets.Dataset) -> str:
    """What a cache of per-row results is keyed by: the rows' file names in order (a reordered or rebuilt dataset
    starts afresh), hashed as a list, not as the column object, whose hash follows where the dataset lies on disk."""
    return Hasher.hash(list(dataset["file_name"]))


def dataset_folds(dataset: datasets.Dataset, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """The fold of every row, by ``patient_group`` and stratified by source x label."""
    groups = np.unique(dataset["patient_group"], return_inverse=True)[1]
    return deal_folds(strata_of(dataset["source"], dataset["label"]), groups, n_folds, seed)


def fold_roles(folds: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices of round k."""
    validation = (k + 1) % (int(folds.max()) + 1)
    train = np.flatnonzero((folds != k) & (folds != validation))
    return train, np.flatnonzero(folds == validation), np.flatnonzero(folds == k)


@dataclass(frozen=True)
class OutOfFold:
    """Every image's calibrated P(covid) from the round that held it out, and the threshold that round chose."""

    probabilities: np.ndarray
    thresholds: np.ndarray

    @classmethod
    def collect(
        cls, scorer: FoldScorer, folds: np.ndarray, labels: np.ndarray, target_sensitivity: float = 0.90
    ) -> OutOfFold:
        """Run the scorer once per round; calibrate and choose the threshold on that round's validation part."""
        probabilities = np.full(len(labels), np.nan)
        thresholds = np.full(len(labels), np.nan)
        for k in range(int(folds.max()) + 1):
            train, validation, test = fold_roles(folds, k)
            val_probs, test_probs = scorer(k, train, validation, test)
            probabilities[test], thresholds[test] = calibrate_round(
                val_probs, labels[validation], test_probs, target_sensitivity
            )
        return cls(probabilities, thresholds)


def calibrate_round(
    val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray, target_sensitivity: float
) -> tuple[np.ndarray, float]:
    """Temperature-scale the log-odds on validation, then pick the threshold there, as the main recipe does."""

    def as_logits(p: np.ndarray) -> np.ndarray:
        odds = logit(np.clip(p, 1e-7, 1 - 1e-7))
        return np.stack([np.zeros_like(odds), odds], axis=1)

    temperature = fit_temperature(as_logits(val_probs), val_labels)

    def scaled(p: np.ndarray) -> np.ndarray:
        return softmax(as_logits(p) / temperature)[:, 1]

    threshold = choose_threshold(scaled(val_probs), val_labels, target_sensitivity)
    return scaled(test_probs), threshold.value


def summarise(
    out_of_fold: OutOfFold,
    labels: np.ndarray,
    groups: Sequence[str],
    subsets: dict[str, np.ndarray],
    rounds: int = 2000,
) -> dict[str, dict[str, float]]:
    """ROC AUC with its patient-bootstrap 95% CI, sensitivity/specificity at each round's threshold and ECE, for
    each subset (image masks, e.g. grouped.reported_subsets)."""
    groups = np.asarray(groups)
    metric = load_cxr_metric()
    return {name: _metrics(metric, out_of_fold, labels, groups, mask, rounds) for name, mask in subsets.items()}


def _metrics(
    metric: evaluate.EvaluationModule,
    out_of_fold: OutOfFold,
    labels: np.ndarray,
    groups: np.ndarray,
    mask: np.ndarray,
    rounds: int,
) -> dict[str, float]:
    p, y = out_of_fold.probabilities[mask], labels[mask]
    scores = metric.compute(predictions=p, references=y)  # its threshold is unused here: each round has its own
    decisions = (p >= out_of_fold.thresholds[mask]).astype(int)
    low, high = roc_auc_ci(y, p, groups[mask], rounds) if len(np.unique(y)) == 2 else (np.nan, np.nan)
    return {
        "n": int(mask.sum()),
        "roc_auc": scores["roc_auc"],
        "roc_auc_low": low,
        "roc_auc_high": high,
        "sensitivity": float(recall_score(y, decisions, pos_label=1, zero_division=np.nan)),
        "specificity": float(recall_score(y, decisions, pos_label=0, zero_division=np.nan)),
        "ece": scores["ece"],
    }
