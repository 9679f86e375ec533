"""The evaluation plots of a model folder: ROC curves with the operating point, and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
