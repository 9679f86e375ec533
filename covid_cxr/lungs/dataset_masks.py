"""Lung masks for a dataset split, predicted once and cached by `datasets` beside the split's own files.

Used by the studies' lungs-first probe views (study.yardstick): the masks are the whole image squashed to a square,
as the segmenter and the pre-decoded training pixels both see it. A mask with no plausible lung fields is stored all
true, so that its image is trained on as it is rather than blurred whole.
"""

from __future__ import annotations

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter

MASK_SIDE = 112
MASK_COLUMN = "lung_mask"  # a dataset column of uint8 0/1 masks of the whole image squashed to a square


def segmenter_fingerprint(segmenter: LungSegmenter) -> str:
    """A hash of the segmenter's weights and settings: a new segmenter means new masks, the same one reuses them."""
    state = {name: tensor.numpy() for name, tensor in segmenter.state_dict().items()}
    return Hasher.hash([repr(segmenter.config), state])


def with_lung_masks(split: datasets.Dataset, segmenter: LungSegmenter, batch_size: int = 16) -> datasets.Dataset:
    """`split` plus a `lung_mask` column (uint8 0/1, MASK_SIDE x MASK_SIDE); computed on the first call only."""

    def predict(batch: dict) -> dict:
        maps = segmenter.probabilities(batch["image"], (MASK_SIDE, MASK_SIDE))
        threshold = segmenter.config.threshold
        masks = [np.ones(p.shape, bool) if implausible_lungs(p, threshold) else p >= threshold for p in maps]
        return {MASK_COLUMN: masks}  # bool, stored as uint8

    masks = split.select_columns(["image"]).map(
        predict,
        batched=True,
        batch_size=batch_size,
        remove_columns=["image"],  # the cache file holds the masks only, not a second copy of the images
        features=datasets.Features({MASK_COLUMN: datasets.Array2D((MASK_SIDE, MASK_SIDE), "uint8")}),
        new_fingerprint=Hasher.hash([split._fingerprint, segmenter_fingerprint(segmenter), MASK_SIDE]),
        desc="Lung masks",
    )
    return datasets.concatenate_datasets([split, masks], axis=1)
