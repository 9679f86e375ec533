"""Image transforms: one training augmentation for both data paths, and the model's own evaluation transform.

Training: mild random resized crop, small rotation, brightness/contrast jitter, then the model's normalisation,
defined once by :class:`Augmentation` as a kornia module on tensors (torchvision's PyPI wheel is a CUDA build
whose ops do not load against the CPU torch pin). :class:`DevicePixels` applies it to pre-decoded grey uint8
batches where the model runs (see `covid_cxr.data.predecode`); `train_transform` decodes PIL images the same way
inside `Dataset.set_transform` and applies the same :class:`DevicePixels`. kornia draws from torch's global
generator, which Trainer seeds and checkpoints and DataLoader re-seeds per worker and per epoch.
Evaluation: the model's image processor exactly as `pipeline()` applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import kornia.augmentation as K
import torch
from transformers import BaseImageProcessor

from covid_cxr.data.processor_size import processor_size


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation's strengths: the one source both data paths build their module from."""

    scale: tuple[float, float] = (0.75, 1.0)  # fraction of the image area kept by the crop
    ratio: tuple[float, float] = (0.9, 1.1)
    max_rotation: float = 7.0  # degrees
    brightness: float = 0.15
    contrast: float = 0.15

    def module(self, side: int) -> K.AugmentationSequential:
        """(n, c, h, w) floats in [0, 1] -> (n, c, side, side): crop and resize, rotate, then jitter as PIL's
        ImageEnhance does (brightness before contrast, contrast about the image mean), clamped to [0, 1]."""
        return K.AugmentationSequential(
            K.RandomResizedCrop((side, side), scale=self.scale, ratio=self.ratio, align_corners=False),
            K.RandomRotation(self.max_rotation, align_corners=False, p=1.0),
            K.ColorJitter(brightness=self.brightness, contrast=self.contrast, order=(0, 1)),
        )


class DevicePixels:
    """Pre-decoded grey uint8 batches -> the model's normalised 3-channel input, augmented when training.

    Runs on whatever device the batch is on: where the model runs for pre-decoded data, in the loader's
    workers for `train_transform`.
    """

    def __init__(self, processor: BaseImageProcessor, augmentation: Augmentation) -> None:
        self.side = processor_size(processor)
        self.augment = augmentation.module(self.side)
        self.rescale = float(processor.rescale_factor)
        self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, pixels: torch.Tensor, train: bool) -> torch.Tensor:
        if pixels.dtype != torch.uint8 or pixels.shape[1] != 1:
            raise ValueError(f"expected grey uint8 batches (n, 1, h, w), got {pixels.dtype} {tuple(pixels.shape)}")
        x = pixels.float() / 255
        if train:
            x = self.augment(x)
        elif x.shape[-1] != self.side:
            raise ValueError(f"evaluation pixels are {x.shape[-1]} px, the model expects {self.side}")
        if self.mean.device != x.device:  # once, not a host-to-device copy every step
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x.expand(-1, self.mean.shape[1], -1, -1) * (255 * self.rescale) - self.mean) / self.std


def train_transform(processor: BaseImageProcessor, augmentation: Augmentation) -> Callable:
    """`set_transform` function for training: PIL images decoded as pre-decoding decodes them, then
    :class:`DevicePixels`."""
    from covid_cxr.data.predecode import decode_for_training  # here, not at the top: predecode imports this module

    side = processor_size(processor)
    device_pixels = DevicePixels(processor, augmentation)

    def transform(batch: dict) -> dict:
        pixels = torch.from_numpy(decode_for_training(batch["image"], side))
        return {"pixel_values": device_pixels(pixels, train=True), "labels": batch["label"]}

    return transform


def eval_transform(processor: BaseImageProcessor) -> Callable:
    def transform(batch: dict) -> dict:
        images = [image.convert("RGB") for image in batch["image"]]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"], "labels": batch["label"]}

    return transform
