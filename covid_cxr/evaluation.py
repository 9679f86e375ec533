"""Metrics overall, per source and on the mixed-label sources alone, plus the plots that go with them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import evaluate
import numpy as np

MIXED = "mixed_sources"


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
    """{"all": ..., "mixed_sources": ..., "<source>": ...} metric dicts at the given threshold."""
    sources = np.asarray(sources)
    groups = {"all": np.ones(len(labels), dtype=bool), MIXED: np.isin(sources, list(mixed_sources))}
    groups |= {str(s): sources == s for s in sorted(set(sources.tolist()))}
    return {
        name: metric.compute(predictions=probabilities[mask], references=labels[mask], threshold=threshold)
        for name, mask in groups.items()
        if mask.any()
    }


def flatten(prefix: str, grouped: dict[str, dict[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """`Trainer.log_metrics`-style flat keys: test_roc_auc, test_ieee8023_sensitivity, ..."""
    flat = {}
    for group, values in grouped.items():
        infix = "" if group == "all" else f"{group}_"
        flat |= {f"{prefix}_{infix}{key}": values[key] for key in keys if key in values}
    return flat


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold_point: tuple[float, float] | None, path: Path
) -> None:
    """ROC curves ({name: (labels, probabilities)}), with the operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, probabilities) in curves.items():
        if len(np.unique(labels)) == 2:
            RocCurveDisplay.from_predictions(labels, probabilities, name=name, ax=ax)
    if threshold_point is not None:
        fpr, tpr = threshold_point
        ax.plot([fpr], [tpr], "ko", label="test operating point")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("ROC: COVID-19 vs non-COVID")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(
    labels: np.ndarray, decisions: np.ndarray, class_names: Sequence[str], threshold: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels, decisions, labels=[0, 1], display_labels=class_names, ax=ax, colorbar=False
    )
    ax.set_title(f"Test split, threshold {threshold:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
