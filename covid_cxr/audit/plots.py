"""The audit's figures: ROC AUC of the three views with their intervals (one panel per model, so two audits sit side
by side), and one film as the model saw it in each view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from covid_cxr.audit.occlusion import VIEW_NAMES, VIEWS
from covid_cxr.evaluation.keys import ALL, MIXED

SUBSET_NAMES = {ALL: "all images", MIXED: "mixed-label sources"}


def plot_occlusion(occlusions: dict[str, dict[str, dict]], path: Path) -> None:
    """Bars of ROC AUC per view and subset with 95% intervals; `occlusions` maps a panel title to an audit's
    occlusion section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(occlusions), figsize=(5 * len(occlusions), 4), sharey=True, squeeze=False)
    width = 0.8 / len(VIEWS)
    for ax, (title, occlusion) in zip(axes[0], occlusions.items(), strict=True):
        subsets = [s for s in SUBSET_NAMES if s in occlusion]
        for k, view in enumerate(VIEWS):
            figures = [occlusion[s][view]["roc_auc"] for s in subsets]
            values = np.array([f["value"] if f["value"] is not None else np.nan for f in figures])
            errors = np.array(
                [[v - (f["low"] or v), (f["high"] or v) - v] for v, f in zip(values, figures, strict=True)]
            ).T
            x = np.arange(len(subsets)) + (k - 1) * width
            ax.bar(x, values, width, yerr=errors, capsize=3, label=VIEW_NAMES[view])
        ax.axhline(0.5, ls=":", color="grey")
        ax.set_xticks(np.arange(len(subsets)), [f"{SUBSET_NAMES[s]}\n(n={occlusion[s]['n']})" for s in subsets])
        ax.set_ylim(0.3, 1.0)
        ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel("ROC AUC (95% CI); dotted: chance")
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_views(seen: dict[str, Image.Image], path: Path) -> None:
    """One film in the three views, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(VIEWS), figsize=(3 * len(VIEWS), 3.2))
    for ax, view in zip(axes, VIEWS, strict=True):
        ax.imshow(np.asarray(seen[view]), cmap="gray", vmin=0, vmax=255)
        ax.set_title(VIEW_NAMES[view], fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
