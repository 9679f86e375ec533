"""Shortcuts inside the mixed-label sources: the projection (a portable AP film says "sicker patient"), the sex and
the age band, each recorded per image and each able to carry the label without any opacity being read.

For a stratifier (projection, sex, age band) and the films whose stratum is known, three ROC AUCs:

* within each stratum (where both classes are present);
* *within strata*: only pairs of one COVID-19 and one non-COVID film of the same stratum count, so the stratum
  cannot order a pair (the stratified Mann-Whitney statistic: each stratum's AUC weighed by its pairs);
* *the stratum alone*: each film scored by its stratum's COVID-19 share among the other folds' films (out of fold,
  as covid_cxr.audit.measures.source_only does for the source): how much the stratum gives away by itself.

A model whose mixed-label AUC falls to chance within strata reads the stratum, not the disease.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np

from covid_cxr.evaluation.bootstrap import roc_auc

AGE_BANDS = ((0, 40, "under 40"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80 and over"))


def projection(view: str | None) -> str | None:
    """AP (supine and erect included) or PA; None when the record says only "frontal" or nothing."""
    text = (view or "").strip().upper()
    if text.startswith("AP"):
        return "AP"
    return "PA" if text.startswith("PA") else None


def sex(value: str | None) -> str | None:
    text = (value or "").strip().upper()[:1]
    return text if text in ("M", "F") else None


def age_band(value: str | float | None) -> str | None:
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None
    return next((name for low, high, name in AGE_BANDS if low <= age < high), None)


STRATIFIERS: dict[str, tuple[str, Callable[[object], str | None]]] = {  # name -> (dataset column, stratum of a cell)
    "projection": ("view", projection),
    "sex": ("sex", sex),
    "age": ("age", age_band),
}


def both_classes(labels: np.ndarray, strata: np.ndarray) -> list[str]:
    """The strata holding at least one film of each class."""
    return sorted(s for s in set(strata) if len(set(labels[strata == s])) == 2)


def within_strata_auc(labels: np.ndarray, scores: np.ndarray, strata: np.ndarray) -> float:
    """ROC AUC over the pairs of one positive and one negative film of the same stratum only."""
    pairs = concordant = 0.0
    for stratum in both_classes(labels, strata):
        chosen = strata == stratum
        y = labels[chosen]
        count = float(y.sum() * (len(y) - y.sum()))
        pairs += count
        concordant += roc_auc(y, scores[chosen]) * count
    return concordant / pairs if pairs else float("nan")


def out_of_fold_shares(labels: np.ndarray, strata: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each film's stratum's (or source's) COVID-19 share among the films of the other folds (their overall share
    for a stratum they lack): a score that knows nothing but the stratum, and never scores a film by itself."""
    scores = np.empty(len(labels))
    for fold in np.unique(folds):
        held = folds == fold
        rest_labels, rest_strata = labels[~held], strata[~held]
        overall = rest_labels.mean() if len(rest_labels) else 0.5
        shares = {s: rest_labels[rest_strata == s].mean() for s in np.unique(rest_strata)}
        scores[held] = [shares.get(s, overall) for s in strata[held]]
    return scores


def recorded_strata(dataset: datasets.Dataset) -> dict[str, np.ndarray]:
    """Each stratifier whose column the dataset has: every row's stratum (None where unknown), as an object array."""
    return {
        name: np.asarray([stratum(cell) for cell in dataset[column]], dtype=object)
        for name, (column, stratum) in STRATIFIERS.items()
        if column in dataset.column_names
    }
