"""Measures on lung masks: overlap with a reference, shape sanity, and how much of a heat map lies in the lungs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(predicted: np.ndarray, reference: np.ndarray) -> float:
    """2|A & B| / (|A| + |B|); 1.0 when both are empty."""
    total = predicted.sum() + reference.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(predicted, reference).sum() / total)


def iou(predicted: np.ndarray, reference: np.ndarray) -> float:
    union = np.logical_or(predicted, reference).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, reference).sum() / union)


def components(mask: np.ndarray, min_share: float = 0.01) -> int:
    """Connected regions of at least `min_share` of the image (specks do not count)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_share * mask.size).sum())


def attention_share(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of a non-negative heat map's mass that lies inside the mask (both on the same grid)."""
    total = float(heat.sum())
    return float(heat[mask].sum() / total) if total > 0 else 0.0


def implausible_lungs(mask: np.ndarray) -> str | None:
    """Why a predicted mask cannot be the lung fields of a frontal chest film (None when it can): too little or
    too much lung, no lung on one side, or lungs that hug the border."""
    share = float(mask.mean())
    if share < 0.08:
        return f"no plausible lung fields found (lungs would cover {share:.0%} of the image)"
    if share > 0.75:
        return f"no plausible lung fields found (lungs would cover {share:.0%} of the image)"
    half = mask.shape[1] // 2
    left, right = mask[:, :half].mean(), mask[:, half:].mean()
    if min(left, right) < 0.15 * max(left, right):
        return "no plausible lung fields found (lung on one side of the image only)"
    return None
