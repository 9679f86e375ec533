"""Lungs first (`--lung_focus`): every image blurred outside its dilated lung fields before the classifier sees
it, in training, validation, test, cross-validation, the Space and `covid-cxr predict` alike.

The blur is covid_cxr.data.lung_focus's; the mask is the segmenter's on the whole film squashed to a square, at
MASK_SIDE (covid_cxr.lungs.dataset_masks), in every path. A model trained this way records `lung_focus` in its
`config.json` (the segmenter's fingerprint and the blur's settings), so that whoever serves it focuses its input
the same way; :func:`focus_on_lungs` is the call for one image. A caller without this package focuses with the
standard segmenter instead (`pipeline("image-segmentation")`, then `blur_image_outside`): :func:`focused_by_pipeline`
is that path, so that a lungs-first model's card can state what it gives.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
from datasets.fingerprint import Hasher
from PIL import Image
from transformers import ImageSegmentationPipeline, pipeline

from covid_cxr.data.lung_focus import BLUR, DILATION, FEATHER, MASK_COLUMN, blur_image_outside, blur_outside
from covid_cxr.lungs.dataset_masks import MASK_SIDE, segmenter_fingerprint, with_lung_masks
from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.lungs.standard import LABELS

LUNG_LABEL = LABELS[1]  # the standard segmenter's lung class
CONFIG_KEY = "lung_focus"  # the config.json entry of a model trained lungs first


class NoLungsError(ValueError):
    """The segmenter finds no plausible lung fields, so the image cannot be focused on them; the message says why."""


def focus_settings(segmenter: LungSegmenter, standard_hub_id: str | None = None) -> dict[str, object]:
    """What a lungs-first model records in its config.json: which segmenter made its masks, the Hub id of its
    standard pipeline model when that was pushed (covid-cxr train-lungs --hub_repo_id), and the blur."""
    return {
        "segmenter_fingerprint": segmenter_fingerprint(segmenter),
        "standard_segmenter": standard_hub_id,
        "mask_side": MASK_SIDE,
        "dilation": DILATION,
        "blur": BLUR,
        "feather": FEATHER,
    }


def focus_on_lungs(image: Image.Image, segmenter: LungSegmenter) -> Image.Image:
    """One film as a lungs-first model must see it: grey, blurred outside its dilated lung fields.

    Raises NoLungsError when the segmenter finds no plausible lung fields (not a frontal chest film)."""
    (probability,) = segmenter.probabilities([image], (MASK_SIDE, MASK_SIDE))
    if reason := implausible_lungs(probability, segmenter.config.threshold):
        raise NoLungsError(reason)
    return blur_image_outside(image, probability >= segmenter.config.threshold)


def lungs_first(split: datasets.Dataset, segmenter: LungSegmenter) -> datasets.Dataset:
    """The split with every image focused on its lungs (cached by `datasets` beside the split, keyed on the split,
    the segmenter and the blur). A film with no plausible lung fields keeps its whole image (its cached mask is
    all true), so no row is lost."""
    masked = with_lung_masks(split, segmenter)

    def focus(batch: dict) -> dict:
        masks = (np.asarray(mask, dtype=bool) for mask in batch[MASK_COLUMN])
        return {"image": [blur_image_outside(image, mask) for image, mask in zip(batch["image"], masks, strict=True)]}

    return masked.map(
        focus,
        batched=True,
        batch_size=32,
        remove_columns=[MASK_COLUMN],
        features=split.features,
        # the blur's code and settings too: a changed blur must not reuse images focused by the old one
        new_fingerprint=Hasher.hash([masked._fingerprint, blur_outside, DILATION, BLUR, FEATHER]),
        desc="Lungs first",
    )


def lungs_first_splits(splits: datasets.DatasetDict, segmenter: LungSegmenter) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: lungs_first(split, segmenter) for name, split in splits.items()})


def pipeline_lungs(segment: ImageSegmentationPipeline, image: Image.Image) -> np.ndarray | None:
    """The lung mask the standard segmenter's `pipeline()` gives for one film, at its size (None: no lung found)."""
    found = {result["label"]: result["mask"] for result in segment(image.convert("RGB"))}
    return np.asarray(found[LUNG_LABEL]) > 0 if LUNG_LABEL in found else None


def focused_by_pipeline(split: datasets.Dataset, standard: Path) -> datasets.Dataset:
    """The split's films focused as a caller without this package focuses them: the mask of the standard segmenter
    in `standard` through `pipeline("image-segmentation")`, then the same blur. A film on which it finds no lung
    keeps its whole image, as in :func:`lungs_first`. Held in memory: it is scored once."""
    segment = pipeline("image-segmentation", model=str(standard), trust_remote_code=False)

    def focus(batch: dict) -> dict:
        masks = (pipeline_lungs(segment, image) for image in batch["image"])
        return {
            "image": [
                image if mask is None else blur_image_outside(image, mask)
                for image, mask in zip(batch["image"], masks, strict=True)
            ]
        }

    return split.map(
        focus,
        batched=True,
        batch_size=16,
        features=split.features,
        keep_in_memory=True,
        new_fingerprint=Hasher.hash([split._fingerprint, str(standard), blur_outside, DILATION, BLUR, FEATHER]),
        desc="Focused by the standard segmenter",
    )
