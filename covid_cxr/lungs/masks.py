"""Lung-field masks for a folder of X-rays, one PNG per file (what `covid-cxr lungs` writes, and the occlusion
test of `covid-cxr audit` reads): mode L, 0 (background) or 255 (lung), at the input image's width and height.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from covid_cxr.data.imaging import ImageError, fault_reason, image_files, load_image


class Segmenter(Protocol):
    """What `write_masks` needs of a segmenter (LungSegmenter, or a stand-in in tests)."""

    def masks(self, images: list[Image.Image]) -> list[np.ndarray]: ...


def write_masks(segmenter: Segmenter, input_dir: Path, output_dir: Path) -> tuple[int, dict[str, str]]:
    """Masks for every supported file directly in `input_dir`; returns (written, {file name: why skipped}).

    No file stops the folder: one that cannot be read, or that trips a fault, is skipped with the reason."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = image_files(input_dir)
    skipped: dict[str, str] = {}
    written: set[str] = set()  # stems with a mask: only these block a later file of the same stem
    for path in tqdm(files, desc="Lung masks", unit="img"):
        if path.stem in written:
            skipped[path.name] = f"another file is also named {path.stem}.*: its mask would overwrite that one"
            continue
        try:
            (mask,) = segmenter.masks([load_image(path).image])
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(output_dir / f"{path.stem}.png")
        except ImageError as err:
            skipped[path.name] = str(err)
            continue
        except Exception as err:  # a fault in this code or a library, not in the file: skip it, keep the traceback
            skipped[path.name] = fault_reason(path, err)
            continue
        written.add(path.stem)
    return len(written), skipped
