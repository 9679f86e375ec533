"""The fast training data path: every image decoded once to grey uint8 pixels, then only indexed.

Decoding, resizing and augmenting PIL images in dataloader workers every epoch is what starves a GPU (and,
on a CPU, takes cores from the model). Here `datasets.map` decodes each split once, in parallel, into an Arrow
cache beside the dataset (later runs reuse it); the loader then indexes uint8 pixels memory-mapped from that
file, and :class:`covid_cxr.data.transforms.DevicePixels` crops, rotates, jitters and normalises whole batches on
the device. One byte per pixel, so the cache grows with the number of images times the side squared.
"""

from __future__ import annotations

import warnings

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import BaseImageProcessor

from covid_cxr.data.processor_size import processor_size

TRAIN_MARGIN = 8 / 7  # stored train side / model input side: room for the random crop at ~1:1 resampling


def train_side(input_side: int) -> int:
    return round(input_side * TRAIN_MARGIN)


def decode_for_training(images: list[Image.Image], input_side: int) -> np.ndarray:
    """The whole image, squashed to a square with margin for the random crop (as the PIL augmentation does)."""
    side = train_side(input_side)
    grey = [np.asarray(image.convert("L").resize((side, side), Image.Resampling.BICUBIC)) for image in images]
    return np.stack(grey)[:, None]


def decode_for_evaluation(images: list[Image.Image], processor: BaseImageProcessor) -> np.ndarray:
    """The processor's own resize (and crop, for a processor that crops), stopping before rescaling: what
    `pipeline()` sees, in uint8."""
    rgb = [image.convert("L").convert("RGB") for image in images]
    pixels = processor(rgb, do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    return np.clip(np.rint(pixels[:, :1]), 0, 255).astype(np.uint8)


class PixelDataset(torch.utils.data.Dataset):
    """Pre-decoded grey uint8 pixels (1, side, side) and labels, read in place from the split's Arrow file.

    The Arrow file is memory-mapped, so nothing is copied until `collate` stacks a batch, and every process on
    a machine (accelerate ranks, dataloader workers) shares one copy of the pixels in the OS page cache.
    """

    def __init__(self, decoded: datasets.Dataset) -> None:
        pixels = decoded.features["pixels"]
        if not isinstance(pixels, datasets.Array3D) or pixels.dtype != "uint8" or pixels.shape[0] != 1:
            raise ValueError(f"expected a `pixels` column of grey uint8 Array3D (1, h, w), got {pixels}")
        self.decoded = decoded
        self.labels = np.asarray(decoded["label"])
        self.starts = np.cumsum([0] + [len(chunk) for chunk in decoded.data.column("pixels").chunks])
        self._chunks: list[torch.Tensor] | None = None  # views, rebuilt in each process that unpickles this

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_chunks": None}  # the Dataset pickles as its file path, not its bytes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if self._chunks is None:
            self._chunks = pixel_views(self.decoded)
        chunk = int(np.searchsorted(self.starts, index, side="right")) - 1
        return {"pixel_values": self._chunks[chunk][index - self.starts[chunk]], "labels": int(self.labels[index])}


def pixel_views(decoded: datasets.Dataset) -> list[torch.Tensor]:
    """Zero-copy uint8 tensors over each Arrow chunk of `pixels` (the numpy formatter would copy to int64)."""
    shape = decoded.features["pixels"].shape
    views = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # never written
        for chunk in decoded.data.column("pixels").chunks:
            values = chunk.storage.flatten().flatten().flatten().to_numpy(zero_copy_only=True)
            views.append(torch.from_numpy(values.reshape(-1, *shape)))
    return views


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
    columns = ["image", "label"]

    def decode(batch: dict) -> dict:
        if train:
            return {"pixels": decode_for_training(batch["image"], input_side)}
        return {"pixels": decode_for_evaluation(batch["image"], processor)}

    features = datasets.Features(
        {"pixels": datasets.Array3D((1, side, side), "uint8"), "label": split.features["label"]}
    )
    decoded = split.select_columns(columns).map(
        decode,
        batched=True,
        batch_size=64,
        num_proc=num_proc,
        remove_columns=[c for c in columns if c != "label"],
        features=features,
        desc=f"{desc} at {side} px",
    )
    return PixelDataset(decoded)
