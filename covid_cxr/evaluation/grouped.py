"""Metrics overall, per source and on the mixed-label sources alone (where the source cannot give the label away)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import evaluate
import numpy as np

from covid_cxr.evaluation.keys import ALL, MIXED, TEST, VALIDATION, metric_key

REPORTED = ("roc_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "ece", "brier", "n")


def mixed_label_sources(sources: Sequence[str], labels: Sequence[int]) -> list[str]:
    """Sources holding both classes: the only ones where a model cannot score by recognising the source."""
    classes: dict[str, set[int]] = {}
    for source, label in zip(sources, labels, strict=True):
        classes.setdefault(source, set()).add(int(label))
    return sorted(source for source, seen in classes.items() if len(seen) == 2)


def grouped_metrics(
    metric: evaluate.EvaluationModule,
    probabilities: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    threshold: float,
    mixed_sources: Sequence[str],
) -> dict[str, dict[str, float]]:
    """{ALL: ..., MIXED: ..., "<source>": ...} metric dicts at the given threshold."""
    return {
        name: metric.compute(predictions=probabilities[mask], references=labels[mask], threshold=threshold)
        for name, mask in reported_subsets(sources, mixed_sources).items()
    }


def reported_subsets(sources: Sequence[str], mixed_sources: Sequence[str]) -> dict[str, np.ndarray]:
    """The image masks every report uses: all images, the mixed-label sources together, each source; empty ones
    left out."""
    sources = np.asarray(sources)
    subsets = {ALL: np.ones(len(sources), dtype=bool), MIXED: np.isin(sources, list(mixed_sources))}
    subsets |= {str(s): sources == s for s in sorted(set(sources.tolist()))}
    return {name: mask for name, mask in subsets.items() if mask.any()}


def flatten(prefix: str, grouped: dict[str, dict[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """`Trainer.log_metrics`-style flat keys of every subset's metrics."""
    return {
        metric_key(prefix, subset, key): values[key]
        for subset, values in grouped.items()
        for key in keys
        if key in values
    }


@dataclass(frozen=True)
class Evaluation:
    """A calibrated model's metrics on validation and test, at its stored threshold."""

    mixed_sources: list[str]
    validation: dict[str, dict[str, float]]  # subset ("all", "mixed_sources", a source) -> metrics
    test: dict[str, dict[str, float]]
    scope_false_reject_rate: float  # share of test X-rays the scope guard would refuse
    conformal: dict[str, dict] | None = None  # prediction sets on test, by subset (audit.measures.set_figures)

    def by_split(self) -> dict[str, dict[str, float]]:
        """`Trainer.log_metrics`-style keys per split: eval_roc_auc, test_mixed_sources_sensitivity, ..."""
        return {
            VALIDATION: flatten(VALIDATION, self.validation, REPORTED),
            TEST: flatten(TEST, self.test, REPORTED),
        }
