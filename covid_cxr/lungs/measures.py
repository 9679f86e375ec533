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


# Below this ratio the heat is "no more on the lungs than elsewhere": within a fifth of an evenly spread map
# (ratio 1), a difference a Grad-CAM of one value per 14 px patch, blurred across the lung borders, cannot resolve.
RATIO_WARNING = 1.2


def attention_ratio(heat: np.ndarray, mask: np.ndarray) -> float:
    """The heat's share inside the mask over the mask's share of the grid: heat per unit of lung area against the
    map's average. 1 is an evenly spread map (no more on the lungs than anywhere else), 1 / (lung share) all heat
    on the lungs, below 1 heat drawn away from them; NaN when there is no heat or no lung."""
    area = float(mask.mean())
    if area == 0 or float(heat.sum()) <= 0:
        return float("nan")
    return attention_share(heat, mask) / area


def attention_warning(ratio: float) -> bool:
    """Whether a heat map's lung ratio says "no more on the lungs than elsewhere" (an undefined ratio does too)."""
    return not ratio >= RATIO_WARNING


MAX_UNSURE = 0.35  # set above the validation X-rays' unsure shares; bench/lungs.py counts the chest films it refuses


def implausible_lungs(probability: np.ndarray, threshold: float = 0.5) -> str | None:
    """Why a lung probability map cannot be that of a frontal chest film (None when it can): the segmenter unsure
    over much of the image (it is confident on chest films), too little or too much lung, or lung on one side."""
    unsure = float(((probability > 0.2) & (probability < 0.8)).mean())
    if unsure > MAX_UNSURE:
        return f"no plausible lung fields found (the lung finder is unsure over {unsure:.0%} of the image)"
    mask = probability >= threshold
    share = float(mask.mean())
    if not 0.08 <= share <= 0.75:
        return f"no plausible lung fields found (lungs would cover {share:.0%} of the image)"
    half = mask.shape[1] // 2
    left, right = mask[:, :half].mean(), mask[:, half:].mean()
    if min(left, right) < 0.15 * max(left, right):
        return "no plausible lung fields found (lung on one side of the image only)"
    return None
