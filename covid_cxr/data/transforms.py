"""Image transforms: one augmentation, applied either to PIL images or to uint8 batches on the device.

Training: mild random resized crop, small rotation, brightness/contrast jitter, then the model's own
normalisation. Evaluation: the model's image processor exactly as `pipeline()` applies it. The PIL functions
are for `Dataset.set_transform` (torchvision has no wheel for the CPU torch pin); :class:`DevicePixels` does
the same to pre-decoded batches (see `covid_cxr.data.predecode`) with one `grid_sample` where the model runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from transformers import BaseImageProcessor

from covid_cxr.data.lung_focus import MASK_COLUMN, blur_image_outside


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


def train_transform(processor: BaseImageProcessor, augmentation: Augmentation, lung_focus: bool = False) -> Callable:
    """`set_transform` function for training: augmented PIL images -> normalised tensors (blurred outside the
    lungs first with `lung_focus`, from the batch's `lung_mask` column).

    Each batch seeds its own `random.Random` from torch's generator, which Trainer seeds (and checkpoints) and
    DataLoader re-seeds per worker and per epoch: a Random captured here would be copied into every worker,
    which would then draw the same augmentations, epoch after epoch.
    """
    size = processor_size(processor)

    def transform(batch: dict) -> dict:
        rng = random.Random(int(torch.randint(0, 2**62, ())))
        images = batch["image"]
        if lung_focus:
            images = [blur_image_outside(image, mask) for image, mask in zip(images, batch[MASK_COLUMN], strict=True)]
        images = [augmentation(image, size, rng) for image in images]
        pixels = processor(images, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": batch["label"]}

    return transform


def eval_transform(processor: BaseImageProcessor) -> Callable:
    def transform(batch: dict) -> dict:
        images = [image.convert("RGB") for image in batch["image"]]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"], "labels": batch["label"]}

    return transform


class DevicePixels:
    """Pre-decoded grey uint8 batches -> the model's normalised 3-channel input, augmented when training.

    Crop, aspect, rotation and resize are one affine warp per image (`affine_grid` + bilinear `grid_sample`),
    then brightness and contrast as PIL's ImageEnhance defines them; all on the batch's device, drawing from
    torch's global generator (which Trainer seeds and checkpoints).
    """

    def __init__(self, processor: BaseImageProcessor, augmentation: Augmentation) -> None:
        self.side = processor_size(processor)
        self.augmentation = augmentation
        self.rescale = float(processor.rescale_factor)
        self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixels: torch.Tensor, train: bool) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or pixels.shape[1] != 1:
            raise ValueError(f"expected grey uint8 batches (n, 1, h, w), got {pixels.dtype} {tuple(pixels.shape)}")
        x = pixels.float() * self.rescale
        if train:
            x = self.jitter(self.warp(x, self.random_affine(len(x), x.device)))
        elif x.shape[-1] != self.side:
            raise ValueError(f"evaluation pixels are {x.shape[-1]} px, the model expects {self.side}")
        if self.mean.device != x.device:  # once, not a host-to-device copy every step
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x.expand(-1, self.mean.shape[1], -1, -1) - self.mean) / self.std

    def random_affine(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates (both in [-1, 1]): a random crop, then rotation."""
        aug = self.augmentation

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.empty(n, device=device).uniform_(low, high)

        area = uniform(*aug.scale)
        aspect = torch.exp(uniform(math.log(aug.ratio[0]), math.log(aug.ratio[1])))
        width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
        shift_x, shift_y = (1 - width) * uniform(-1, 1), (1 - height) * uniform(-1, 1)
        angle = torch.deg2rad(uniform(-aug.max_rotation, aug.max_rotation))
        cos, sin = angle.cos(), angle.sin()
        rows = [
            torch.stack([width * cos, -width * sin, shift_x], dim=1),
            torch.stack([height * sin, height * cos, shift_y], dim=1),
        ]
        return torch.stack(rows, dim=1)

    def warp(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta, [len(x), x.shape[1], self.side, self.side], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def jitter(self, x: torch.Tensor) -> torch.Tensor:
        aug, shape = self.augmentation, (len(x), 1, 1, 1)
        x = x * (1 + torch.empty(shape, device=x.device).uniform_(-aug.brightness, aug.brightness))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + (x - mean) * (1 + torch.empty(shape, device=x.device).uniform_(-aug.contrast, aug.contrast))
        return x.clamp(0, self.rescale * 255)
