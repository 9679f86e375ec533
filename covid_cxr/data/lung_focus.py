"""Training-time shortcut removal: everything outside a dilated lung mask is blurred away.

Text labels, markers, film borders and the rest of what tells one hospital from another mostly lie outside the
lungs (DeGrave et al., Nature Machine Intelligence 2021). Training on images whose outside is blurred leaves the
model little to learn there but coarse shapes, while inference still sees the whole image, as `pipeline()` gives
it. The lungs are dilated first, so their borders, where COVID-19 opacities often are, stay sharp; the blur fades
in over a few pixels so that no hard edge becomes a new shortcut.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

MASK_COLUMN = "lung_mask"  # a dataset column of uint8 0/1 masks of the whole image squashed to a square
DILATION = 0.05  # of the image side: the margin kept sharp around the lungs
BLUR = 0.04  # Gaussian sigma outside, of the image side: enough to wipe out text at training resolution
FEATHER = 0.015  # sigma of the fade from sharp to blurred, of the image side


def blur_outside(pixels: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """A grey uint8 image (h, w) with everything outside the dilated lung mask blurred.

    `lungs` is a boolean mask of the whole image at any resolution (it is resized to the image). Pixels inside the
    dilated mask are returned unchanged.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a grey uint8 image (h, w), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape
    side = max(height, width)
    mask = np.asarray(Image.fromarray(lungs.astype(np.uint8) * 255).resize((width, height))) >= 128
    kept = ndimage.binary_dilation(mask, iterations=max(1, round(DILATION * side)))
    weight = np.maximum(ndimage.gaussian_filter(kept.astype(np.float32), FEATHER * side), kept)
    blurred = ndimage.gaussian_filter(pixels.astype(np.float32), BLUR * side)
    mixed = weight * pixels + (1 - weight) * blurred
    return np.where(kept, pixels, np.clip(np.rint(mixed), 0, 255).astype(np.uint8))


def blur_image_outside(image: Image.Image, lungs: np.ndarray) -> Image.Image:
    """The same for a PIL image (the `--no_predecode` path): grey, blurred outside the lungs."""
    return Image.fromarray(blur_outside(np.asarray(image.convert("L")), np.asarray(lungs, dtype=bool)))
