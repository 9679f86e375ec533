"""The occlusion test's three views of a film, and where its lungs are.

Every image is scored whole, with only the lungs left sharp (everything outside the dilated lung fields blurred,
exactly as a lungs-first model does inside itself: covid_cxr.modeling.lungs_first), and with the lungs hidden (the
same dilated lung fields filled with the grey of the film around them, the rest untouched). The two occluded views
split the film along one boundary: what one keeps, the other hides. The fill is flat rather than blurred, because a
blurred lung still shows how dense it is, which is what a COVID-19 reader looks at.

The lungs come from the project's lung segmenter (a folder `covid-cxr train-lungs` wrote) or from a folder of masks, one
`<stem>.png` per image (0 background, 255 lung, the image's size; what `covid-cxr lungs` writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.modeling.lungs_first import FOCUS_DEFAULTS, blur_outside

WHOLE, LUNGS_ONLY, LUNGS_HIDDEN = "whole", "lungs_only", "lungs_hidden"
VIEWS: tuple[str, ...] = (WHOLE, LUNGS_ONLY, LUNGS_HIDDEN)
VIEW_NAMES = {WHOLE: "whole image", LUNGS_ONLY: "lungs only", LUNGS_HIDDEN: "lungs hidden"}


def dilated_lungs(lungs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The lung mask (any resolution) at the image's (height, width), dilated by the margin lungs first keeps
    sharp."""
    height, width = shape
    mask = np.asarray(Image.fromarray(lungs.astype(np.uint8) * 255).resize((width, height))) >= 128
    iterations = max(1, round(FOCUS_DEFAULTS["dilation"] * max(height, width)))
    return ndimage.binary_dilation(mask, iterations=iterations)


def hide_lungs(pixels: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """A grey uint8 image (h, w) with its dilated lung fields filled with the median grey outside them."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a grey uint8 image (h, w), got {pixels.dtype} {pixels.shape}")
    hidden = dilated_lungs(lungs, pixels.shape)
    rest = pixels[~hidden] if (~hidden).any() else pixels.ravel()
    return np.where(hidden, np.uint8(np.median(rest)), pixels)


def blur_image_outside(image: Image.Image, lungs: np.ndarray) -> Image.Image:
    """A film, grey, blurred outside its dilated lung mask (boolean, any resolution) at its own size: the blur a
    lungs-first model applies inside its forward pass (covid_cxr.modeling.lungs_first.blur_outside)."""
    pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))[None, None]
    mask = torch.from_numpy(np.asarray(lungs, dtype=bool))[None]
    with torch.no_grad():
        focused = blur_outside(pixels, mask, FOCUS_DEFAULTS)[0, 0].numpy()
    return Image.fromarray(np.clip(np.rint(focused), 0, 255).astype(np.uint8))


def views(image: Image.Image, lungs: np.ndarray) -> dict[str, Image.Image]:
    """The three grey images the model scores for one film and its lung mask."""
    grey = image.convert("L")
    return {
        WHOLE: grey,
        LUNGS_ONLY: blur_image_outside(grey, lungs),
        LUNGS_HIDDEN: Image.fromarray(hide_lungs(np.asarray(grey), lungs)),
    }


class LungFinder(Protocol):
    """Where the lungs are in each film: a boolean mask, or why there is none to use."""

    def find(self, images: list[Image.Image], file_names: list[str]) -> list[np.ndarray | str]: ...


class SegmenterLungs:
    """Masks predicted by the lung segmenter; a film with no plausible lung fields is refused with the reason."""

    def __init__(self, segmenter: LungSegmenter) -> None:
        self.segmenter = segmenter

    def find(self, images: list[Image.Image], file_names: list[str]) -> list[np.ndarray | str]:
        threshold = self.segmenter.config.threshold
        maps = self.segmenter.probabilities([image.convert("RGB") for image in images])
        return [implausible_lungs(p, threshold) or p >= threshold for p in maps]


class FolderLungs:
    """Masks read from `<stem>.png` files, matched to each image by its file name's stem."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find(self, images: list[Image.Image], file_names: list[str]) -> list[np.ndarray | str]:
        return [self._one(Path(name).stem) for name in file_names]

    def _one(self, stem: str) -> np.ndarray | str:
        path = self.folder / f"{stem}.png"
        if not path.is_file():
            return f"no lung mask {path.name} in the --lung_segmenter folder"
        mask = np.asarray(Image.open(path).convert("L")) >= 128
        return mask if mask.any() else f"the lung mask {path.name} is empty"


def lung_finder(folder: str | Path) -> LungFinder:
    """A segmenter folder (lung_segmenter.json) or a folder of masks."""
    folder = Path(folder)
    if holds_segmenter(folder):
        return SegmenterLungs(LungSegmenter.from_pretrained(folder))
    if folder.is_dir() and any(folder.glob("*.png")):
        return FolderLungs(folder)
    raise FileNotFoundError(
        f"--lung_segmenter {folder}: neither a lung segmenter (covid-cxr train-lungs) nor a folder of <stem>.png "
        "lung masks"
    )
