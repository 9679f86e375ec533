"""Per-image weights that let the sources holding both labels count more in training.

Most negatives come from one hospital (NIH) and most positives from others, so a model can score by recognising
the hospital; only in the mixed-label sources does that not give the label away.
"""

from __future__ import annotations

import numpy as np


def mixed_label_weights(mixed: np.ndarray, factor: float) -> np.ndarray:
    """`factor` for the images of sources holding both labels (`mixed`), 1 for the rest."""
    return np.where(mixed, factor, 1.0)
