"""On-the-fly image transforms for `Dataset.set_transform`, in PIL (torchvision has no wheel for the CPU torch pin).

Training: mild random resized crop, small rotation, brightness/contrast jitter, then the model's own
normalisation. Evaluation: the model's image processor exactly as `pipeline()` applies it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageEnhance
from transformers import BaseImageProcessor


@dataclass(frozen=True)
class Augmentation:
    scale: tuple[float, float] = (0.75, 1.0)  # fraction of the image area kept by the crop
    ratio: tuple[float, float] = (0.9, 1.1)
    max_rotation: float = 7.0  # degrees
    brightness: float = 0.15
    contrast: float = 0.15

    def __call__(self, image: Image.Image, size: int, rng: random.Random) -> Image.Image:
        image = image.convert("RGB")
        width, height = image.size
        area = width * height * rng.uniform(*self.scale)
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        crop_w = min(width, round(math.sqrt(area * aspect)))
        crop_h = min(height, round(math.sqrt(area / aspect)))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
        image = image.rotate(rng.uniform(-self.max_rotation, self.max_rotation), Image.Resampling.BILINEAR)
        image = ImageEnhance.Brightness(image).enhance(1 + rng.uniform(-self.brightness, self.brightness))
        return ImageEnhance.Contrast(image).enhance(1 + rng.uniform(-self.contrast, self.contrast))


def processor_size(processor: BaseImageProcessor) -> int:
    """The square input side the processor produces (its crop size, else its resize target)."""
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = crop or processor.size
    return int(size.get("height") or size.get("shortest_edge"))


def set_processor_size(processor: BaseImageProcessor, side: int) -> None:
    """Make the processor produce side x side inputs, keeping its resize-then-crop ratio (e.g. 256/224)."""
    if getattr(processor, "do_center_crop", False) and "shortest_edge" in processor.size:
        ratio = processor.size["shortest_edge"] / processor_size(processor)
        processor.size = {"shortest_edge": round(side * ratio)}
        processor.crop_size = {"height": side, "width": side}
    else:
        processor.size = {"height": side, "width": side}


def train_transform(processor: BaseImageProcessor, augmentation: Augmentation, seed: int) -> Callable:
    size = processor_size(processor)
    rng = random.Random(seed)

    def transform(batch: dict) -> dict:
        images = [augmentation(image, size, rng) for image in batch["image"]]
        pixels = processor(images, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": batch["label"]}

    return transform


def eval_transform(processor: BaseImageProcessor) -> Callable:
    def transform(batch: dict) -> dict:
        images = [image.convert("RGB") for image in batch["image"]]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"], "labels": batch["label"]}

    return transform
