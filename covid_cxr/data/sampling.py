"""Per-image weights that stop the commonest source x label strata from dominating training.

Most negatives come from one hospital (NIH) and most positives from others, so a plain class balance still lets
a model learn the hospital. Giving every source x label stratum the same total weight makes the small
mixed-label strata (ieee8023 and figure1 negatives) count as much as the NIH negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from covid_cxr.data.splits import strata_of


def source_label_weights(sources: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """One weight per image, equal total weight per stratum, mean weight 1."""
    _, inverse, counts = np.unique(strata_of(sources, labels), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights * len(weights) / weights.sum()


def mixed_label_weights(mixed: np.ndarray, factor: float) -> np.ndarray:
    """`factor` for the images of sources holding both labels (`mixed`), 1 for the rest."""
    return np.where(mixed, factor, 1.0)
