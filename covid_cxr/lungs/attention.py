"""Where the model looked, against where the lungs are: the share of the Grad-CAM heat inside the lung fields.

The lungs are found on the image as the model saw it (resized and cropped), so the heat map and the mask share
one frame. A low share means the score rests mostly on what lies outside the lungs (labels, borders, the
patient's position), the hospital-recognition shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm
from transformers import BaseImageProcessor, PreTrainedModel

from covid_cxr.lungs.measures import attention_share
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.heatmap import grad_cam, upsample
from covid_cxr.modeling.inference import seen_images


def lung_share(cam: np.ndarray, lungs: np.ndarray) -> float:
    """The share of a heat map (on the token grid) inside a lung mask (on the image seen)."""
    return attention_share(upsample(cam, (lungs.shape[1], lungs.shape[0])), lungs)


def lung_attention(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    images: Sequence[Image.Image],
    segmenter: LungSegmenter,
    target: int,
    batch_size: int = 16,
    desc: str = "Lung attention",
) -> np.ndarray:
    """Per image (a list or a `datasets` image column), the share of the `target` class's heat on the lungs."""
    model.eval()
    shares: list[float] = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch"):
        batch = [images[i].convert("RGB") for i in range(start, min(start + batch_size, len(images)))]
        pixels = processor(batch, return_tensors="pt")["pixel_values"]
        _, _, cams = grad_cam(model, pixels.to(model.device, model.dtype), target)
        masks = segmenter.masks(seen_images(pixels, processor))
        shares += [lung_share(cam, mask) for cam, mask in zip(cams, masks, strict=True)]
    return np.asarray(shares)
