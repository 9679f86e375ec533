"""Measures on lung masks: overlap with a reference, shape sanity, and how much of a heat map lies in the lungs."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from covid_cxr.modeling.lungs_first import LUNG_SHARE, MAX_UNSURE, MIN_SIDE_BALANCE, lung_plausibility


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


def implausible_lungs(probability: np.ndarray, threshold: float = 0.5) -> str | None:
    """Why a lung probability map cannot be that of a frontal chest film (None when it can), in words: the rule of
    the lungs-first model's own check (covid_cxr.modeling.lungs_first.lung_plausibility)."""
    measured = lung_plausibility(torch.from_numpy(np.asarray(probability, dtype=np.float32))[None], threshold)
    unsure, share, balance = (float(measured[key][0]) for key in ("unsure", "share", "balance"))
    if unsure > MAX_UNSURE:
        return f"no plausible lung fields found (the lung finder is unsure over {unsure:.0%} of the image)"
    if not LUNG_SHARE[0] <= share <= LUNG_SHARE[1]:
        return f"no plausible lung fields found (lungs would cover {share:.0%} of the image)"
    if balance < MIN_SIDE_BALANCE:
        return "no plausible lung fields found (lung on one side of the image only)"
    return None
