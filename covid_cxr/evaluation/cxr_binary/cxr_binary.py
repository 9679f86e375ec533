"""cxr_binary: the project's metrics as a local `evaluate` module (the Hub's metric scripts are unreachable).

Load it by path: ``evaluate.load(covid_cxr.evaluation.CXR_BINARY_PATH)``. The maths is scikit-learn's.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

_DESCRIPTION = """Binary screening metrics for COVID-19 vs non-COVID chest X-rays, at a given decision threshold:
ROC AUC, accuracy, sensitivity, specificity, PPV, NPV, F1, expected calibration error (ECE) and Brier score."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted probability of the positive class (covid, label 1).
    references (`list` of `int`): true labels, 0 = non_covid, 1 = covid.
    threshold (`float`, defaults to 0.5): a prediction >= threshold counts as positive.
    n_bins (`int`, defaults to 10): equal-width probability bins for the ECE.
Returns:
    roc_auc (NaN when only one class is present), accuracy, sensitivity, specificity, ppv, npv, f1, ece, brier,
    n, n_positive, threshold. A ratio whose denominator is zero is NaN.
Examples:
    >>> metric = evaluate.load("covid_cxr/evaluation/cxr_binary")
    >>> metric.compute(predictions=[0.1, 0.8, 0.6], references=[0, 1, 0], threshold=0.5)["sensitivity"]
    1.0
"""


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean |observed positive rate - mean predicted probability| over equal-width bins."""
    bins = np.clip((probabilities * n_bins).astype(int), 0, n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            error += in_bin.mean() * abs(labels[in_bin].mean() - probabilities[in_bin].mean())
    return float(error)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CxrBinary(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, threshold: float = 0.5, n_bins: int = 10) -> dict[str, float]:
        probabilities = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=int)
        decisions = (probabilities >= threshold).astype(int)
        tn, fp, fn, tp = confusion_matrix(labels, decisions, labels=[0, 1]).ravel()
        both_classes = len(np.unique(labels)) == 2
        return {
            "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else float("nan"),
            "accuracy": float(accuracy_score(labels, decisions)),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn),
            "f1": float(f1_score(labels, decisions, zero_division=np.nan)),
            "ece": expected_calibration_error(probabilities, labels, n_bins),
            "brier": float(brier_score_loss(labels, probabilities, pos_label=1)),
            "n": len(labels),
            "n_positive": int(labels.sum()),
            "threshold": float(threshold),
        }
