"""Fit the segmenter's head on the lung masks, and measure it by patient-grouped cross-validation.

The backbone is frozen, so its patch tokens are computed once per image (the slow part) and every fold's head
trains on them in seconds. Masks are compared at their own resolution, as the CLI writes them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import GroupKFold
from torch import nn
from tqdm.auto import tqdm

from covid_cxr.data.imaging import load_image
from covid_cxr.evaluation.bootstrap import patient_bootstrap
from covid_cxr.lungs.measures import dice, iou
from covid_cxr.lungs.segmenter import LungSegmenter

# Fits a head afresh on (features, targets, seed); gives one image's lung probability from its features at a size
Fitter = Callable[[torch.Tensor, torch.Tensor, int], None]
Decoder = Callable[[torch.Tensor, tuple[int, int]], np.ndarray]
TARGET_SCALE = 4  # the loss compares logits upsampled 4x from the token grid with the mask at that size


@dataclass(frozen=True)
class MaskedImage:
    image: Path
    mask: Path
    patient_id: str
    source: str = ""  # the image's source, label and licence, as its metadata row states them (for the card)
    label: str = ""
    license: str = ""


def read_pairs(masks_root: Path, images_root: Path) -> list[MaskedImage]:
    """The images of a lung-mask folder (``metadata.csv``: mask_file, image_file) that are in ``images_root``, with
    their masks, and the patient, source, label and licence the images' metadata (the curated layout) gives."""
    with (images_root / "metadata.csv").open(newline="", encoding="utf-8-sig") as handle:
        images = {row["file_name"]: row for row in csv.DictReader(handle)}
    with (masks_root / "metadata.csv").open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    return [
        MaskedImage(
            images_root / row["image_file"],
            masks_root / row["mask_file"],
            image["patient_id"] or row["image_file"],
            image.get("source", ""),
            image.get("label", ""),
            image.get("license", ""),
        )
        for row in rows
        if (image := images.get(row["image_file"])) is not None
    ]


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as mask:
        return np.asarray(mask.convert("L")) > 127


def token_features(segmenter: LungSegmenter, images: list[Path], batch_size: int = 8) -> torch.Tensor:
    """Patch tokens of every image, computed once (float16 to halve the memory)."""
    chunks = []
    for start in tqdm(range(0, len(images), batch_size), desc="Backbone features", unit="batch"):
        loaded = [load_image(path).image for path in images[start : start + batch_size]]
        chunks.append(segmenter.tokens(segmenter.pixel_values(loaded)).half())
    return torch.cat(chunks)


def mask_targets(masks: list[np.ndarray], side: int) -> torch.Tensor:
    """Each mask as the lung share of every cell of a side x side grid."""
    resized = [
        np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((side, side), Image.Resampling.BOX)) for m in masks
    ]
    return torch.from_numpy(np.stack(resized)).float()[:, None] / 255.0


def fit_head(
    segmenter: LungSegmenter, features: torch.Tensor, targets: torch.Tensor, epochs: int = 40, seed: int = 0
) -> None:
    """Train the segmenter's head (in place) on its patch tokens."""
    train_head(segmenter.head, segmenter.head, features, targets, epochs, seed)


def train_head(
    head: nn.Module,
    lung_logits: Callable[[torch.Tensor], torch.Tensor],
    features: torch.Tensor,
    targets: torch.Tensor,
    epochs: int = 40,
    seed: int = 0,
) -> None:
    """Train `head` afresh (in place) so that `lung_logits(features)` (N, 1, h, w) match the targets: BCE + soft
    Dice on logits upsampled to the targets; AdamW, cosine schedule, batch 16. The one recipe both the project's
    head and the standard model's (covid_cxr.lungs.standard, with its own number of epochs) are fitted by."""
    torch.manual_seed(seed)
    for module in head.modules():
        if module is not head and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    optimiser = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(features) / 16))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    head.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(features)).split(16):
            logits = nn.functional.interpolate(
                lung_logits(features[batch].float()), size=targets.shape[-2:], mode="bilinear"
            )
            probabilities = torch.sigmoid(logits)
            overlap = (probabilities * targets[batch]).sum(dim=(1, 2, 3))
            soft_dice = 1 - (2 * overlap + 1) / (
                probabilities.sum(dim=(1, 2, 3)) + targets[batch].sum(dim=(1, 2, 3)) + 1
            )
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[batch]) + soft_dice.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    head.eval()


def scores(
    decode: Decoder, features: torch.Tensor, masks: list[np.ndarray], threshold: float = 0.5
) -> tuple[list[float], list[float]]:
    """Dice and IoU of the prediction thresholded at `threshold` against each mask, at the mask's own size."""
    dices, ious = [], []
    for feature, mask in zip(features, masks, strict=True):
        predicted = decode(feature, mask.shape) >= threshold
        dices.append(dice(predicted, mask))
        ious.append(iou(predicted, mask))
    return dices, ious


def bootstrap_ci(values: np.ndarray, groups: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean, resampling patients (not images: a patient's films are not independent)."""
    return patient_bootstrap(lambda idx: float(values[idx].mean()), groups, rounds, seed)


def cross_validate(
    fit: Fitter,
    decode: Decoder,
    features: torch.Tensor,
    masks: list[np.ndarray],
    patients: list[str],
    folds: int = 5,
    threshold: float = 0.5,
    desc: str = "Cross-validation folds",
) -> dict[str, object]:
    """Patient-grouped k-fold: each image scored by a head that never saw its patient (`fit` trains it afresh on
    some features and targets, `decode` gives one image's lung probability at a size, lungs from `threshold`; the
    standard model's arg-max is 0.5)."""
    side = features.shape[-1] * TARGET_SCALE
    targets = mask_targets(masks, side)
    dices, ious, constant = np.zeros(len(masks)), np.zeros(len(masks)), np.zeros(len(masks))
    groups = np.asarray(patients)
    dealt = GroupKFold(n_splits=folds).split(features, groups=groups)
    for fold, (train, held_out) in enumerate(tqdm(dealt, total=folds, desc=desc, unit="fold")):
        fit(features[train], targets[train], fold)
        fold_dices, fold_ious = scores(decode, features[held_out], [masks[i] for i in held_out], threshold)
        dices[held_out], ious[held_out] = fold_dices, fold_ious
        prior = Image.fromarray((targets[train].mean(dim=0)[0].numpy() >= 0.5).astype(np.uint8))  # the mean mask
        for i in held_out:
            height, width = masks[i].shape
            constant[i] = dice(np.asarray(prior.resize((width, height), Image.Resampling.NEAREST)) > 0, masks[i])
    return {
        "folds": folds,
        "images": len(masks),
        "patients": len(set(patients)),
        "dice_mean": float(dices.mean()),
        "dice_ci95": bootstrap_ci(dices, groups),
        "dice_median": float(np.median(dices)),
        "dice_min": float(dices.min()),
        "iou_mean": float(ious.mean()),
        "iou_ci95": bootstrap_ci(ious, groups),
        "per_image_dice": dices.round(4).tolist(),
        "mean_mask_dice": float(constant.mean()),  # one fixed mask (the training folds' mean) for every image
    }
