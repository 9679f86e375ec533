"""The fast training data path: every image decoded once to grey uint8 pixels, kept in memory as one tensor.

Decoding, resizing and augmenting PIL images in dataloader workers every epoch is what starves a GPU (and,
on a CPU, takes cores from the model). Here `datasets.map` decodes each split once, in parallel, into a cache
beside the dataset (later runs reuse it); the loader then only indexes a uint8 tensor, and
:class:`covid_cxr.transforms.DevicePixels` crops, rotates, jitters and normalises whole batches on the
device. One byte per pixel: 2,086 images at 192 px take 77 MB; 30,000 at 512 px take 7.9 GB.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import BaseImageProcessor

from covid_cxr.transforms import processor_size

TRAIN_MARGIN = 8 / 7  # stored train side / model input side: room for the random crop at ~1:1 resampling


def train_side(input_side: int) -> int:
    return round(input_side * TRAIN_MARGIN)


def decode_for_training(images: list[Image.Image], input_side: int) -> np.ndarray:
    """The whole image, squashed to a square with margin for the random crop (as the PIL augmentation does)."""
    side = train_side(input_side)
    grey = [np.asarray(image.convert("L").resize((side, side), Image.Resampling.BICUBIC)) for image in images]
    return np.stack(grey)[:, None]


def decode_for_evaluation(images: list[Image.Image], processor: BaseImageProcessor) -> np.ndarray:
    """The processor's own resize and crop, stopping before rescaling: what `pipeline()` sees, in uint8."""
    rgb = [image.convert("L").convert("RGB") for image in images]
    pixels = processor(rgb, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    return np.clip(np.rint(pixels[:, :1]), 0, 255).astype(np.uint8)


class PixelDataset(torch.utils.data.Dataset):
    """Pre-decoded uint8 pixels (n, 1, side, side) and their labels; items are what `collate` stacks."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or len(pixels) != len(labels):
            shape = f"{pixels.dtype} {tuple(pixels.shape)} and {len(labels)} labels"
            raise ValueError(f"expected uint8 (n, 1, h, w) pixels and n labels, got {shape}")
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[index], "labels": int(self.labels[index])}


def predecode(
    split: datasets.Dataset,
    processor: BaseImageProcessor,
    train: bool,
    num_proc: int | None = None,
    desc: str = "Pre-decoding",
) -> PixelDataset:
    """Decode a split once (cached by `datasets` beside it) for training (`train`) or for evaluation."""
    input_side = processor_size(processor)
    side = train_side(input_side) if train else input_side

    def decode(batch: dict) -> dict:
        if train:
            return {"pixels": decode_for_training(batch["image"], input_side)}
        return {"pixels": decode_for_evaluation(batch["image"], processor)}

    features = datasets.Features(
        {"pixels": datasets.Array3D((1, side, side), "uint8"), "label": split.features["label"]}
    )
    decoded = split.select_columns(["image", "label"]).map(
        decode,
        batched=True,
        batch_size=64,
        num_proc=num_proc,
        remove_columns=["image"],
        features=features,
        desc=f"{desc} at {side} px",
    )
    return PixelDataset(uint8_tensor(decoded, side), torch.tensor(decoded["label"]))


def uint8_tensor(decoded: datasets.Dataset, side: int) -> torch.Tensor:
    """The `pixels` column copied chunk by chunk into one tensor (the numpy formatter would widen to int64)."""
    pixels = torch.empty((decoded.num_rows, 1, side, side), dtype=torch.uint8)
    start = 0
    for chunk in decoded.with_format("arrow")[:]["pixels"].chunks:
        values = chunk.storage.flatten().flatten().flatten().to_numpy(zero_copy_only=False)
        pixels.numpy()[start : start + len(chunk)] = values.reshape(-1, 1, side, side)
        start += len(chunk)
    return pixels
