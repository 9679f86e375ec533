"""Where the model looked, against where the lungs are: the share of the Grad-CAM heat inside the lung fields, and
that share against the lungs' own share of the image (the ratio).

The lungs are found on the image as the model saw it, so the heat map and the mask share one frame. The share
alone misleads: lungs cover about a third of a film, so an evenly spread map has a third of its heat on them. The
ratio reads 1 for an evenly spread map ("no more on the lungs than elsewhere"), more when the heat gathers on
the lungs; a low ratio means the score rests on what lies outside them (labels, borders, the patient's
position), the hospital-recognition shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm.auto import tqdm
from transformers import BaseImageProcessor, PreTrainedModel

from covid_cxr.lungs.measures import attention_ratio, attention_share, attention_warning
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.heatmap import grad_cam, upsample
from covid_cxr.modeling.inference import seen_images


@dataclass(frozen=True)
class LungAttention:
    """Per image: the share of the heat inside the lungs, and that share over the lungs' share of the image."""

    share: np.ndarray
    ratio: np.ndarray

    @property
    def warned(self) -> np.ndarray:
        """Per image, whether the attention warning fires (covid_cxr.lungs.measures.attention_warning)."""
        return np.asarray([attention_warning(ratio) for ratio in self.ratio], dtype=bool)


def lung_measures(cam: np.ndarray, lungs: np.ndarray) -> tuple[float, float]:
    """The share and the ratio of a heat map (on the token grid) against a lung mask (on the image seen)."""
    heat = upsample(cam, (lungs.shape[1], lungs.shape[0]))
    return attention_share(heat, lungs), attention_ratio(heat, lungs)


def lung_attention(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    images: Sequence[Image.Image],
    segmenter: LungSegmenter,
    target: int,
    batch_size: int = 16,
    desc: str = "Lung attention",
) -> LungAttention:
    """Per image (a list or a `datasets` image column), the share and ratio of the `target` class's heat on the
    lungs."""
    model.eval()
    measures: list[tuple[float, float]] = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        batch = [images[i].convert("RGB") for i in range(start, min(start + batch_size, len(images)))]
        pixels = processor(batch, return_tensors="pt")["pixel_values"]
        _, _, cams = grad_cam(model, pixels.to(model.device, model.dtype), target)
        masks = segmenter.masks(seen_images(pixels, processor))
        measures += [lung_measures(cam, mask) for cam, mask in zip(cams, masks, strict=True)]
    share, ratio = np.asarray(measures, dtype=float).reshape(-1, 2).T
    return LungAttention(share, ratio)
