"""Intensity normalisation of a radiograph: none, global histogram equalisation, or CLAHE.

Hospitals differ in exposure, detector and post-processing, and a classifier can learn those differences instead
of the disease. Equalising the grey-level histogram (globally, or per tile with CLAHE) removes part of them.
A lever of the study only (no training recipe normalises): CLAHE comes from scikit-image, in the ``dev`` extra,
imported only when CLAHE is asked for.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

INTENSITY_METHODS: tuple[str, ...] = ("none", "histogram", "clahe")
CLAHE_CLIP = 0.01  # scikit-image's default contrast limit


def normalise_intensity(image: Image.Image, method: str) -> Image.Image:
    """The image as a grey 8-bit image with the chosen normalisation ("none" only converts to grey)."""
    if method not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity normalisation {method!r}; choose one of {list(INTENSITY_METHODS)}")
    grey = image.convert("L")
    if method == "histogram":
        return ImageOps.equalize(grey)
    if method == "clahe":
        try:
            from skimage import exposure
        except ImportError as err:
            raise ImportError("CLAHE needs scikit-image: pip install 'covid-cxr[dev]' (or scikit-image)") from err
        equalised = exposure.equalize_adapthist(np.asarray(grey), clip_limit=CLAHE_CLIP)
        return Image.fromarray(np.round(equalised * 255).astype(np.uint8))
    return grey
