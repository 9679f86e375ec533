"""Temperature scaling and the decision threshold, both fitted on the validation split.

The temperature is folded into the classifier's last linear layer (logits / T == (W/T) x + b/T), so
`pipeline("image-classification")` returns calibrated probabilities with no custom code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import roc_curve
from torch import nn

from covid_cxr.modeling.conformal import Conformal

TEMPERATURE_BOUNDS = (0.05, 20.0)  # the search range: a fit on its edge means the range, not the data, decided


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS that minimises the negative log-likelihood of softmax(logits / T)."""

    def nll(log_t: float) -> float:
        return -float(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels].mean())

    result = minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded")
    return float(np.exp(result.x))


def classifier_head(model: nn.Module) -> nn.Linear:
    """The last linear layer of the model's classification head (``model.classifier``)."""
    head = getattr(model, "classifier", None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if head is not None else []
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear `classifier` head to calibrate")
    return linears[-1]


@torch.no_grad()
def fold_temperature(model: nn.Module, temperature: float) -> None:
    head = classifier_head(model)
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)


@dataclass(frozen=True)
class Threshold:
    value: float
    target_sensitivity: float
    sensitivity: float  # achieved on validation
    specificity: float  # achieved on validation


@dataclass(frozen=True)
class Calibration:
    """What calibration stores with a model: the temperature folded into its head and the decision threshold."""

    temperature: float
    threshold: Threshold
    conformal: Conformal | None = None  # the validation films' calibrated probabilities, for prediction sets

    @property
    def temperature_at_bound(self) -> bool:
        """The fit stopped on the edge of its search range (a model whose validation scores barely separate,
        or a validation split too small): its probabilities are not calibrated, only squashed or stretched."""
        low, high = TEMPERATURE_BOUNDS
        return not low * 1.01 < self.temperature < high / 1.01


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray, target_sensitivity: float) -> Threshold:
    """The highest threshold whose validation sensitivity reaches the target (so specificity is the best it can be)."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    index = int(np.argmax(tpr >= target_sensitivity))
    value = float(min(thresholds[index], 1.0))
    return Threshold(value, target_sensitivity, float(tpr[index]), float(1.0 - fpr[index]))
