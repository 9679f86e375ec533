"""The whole film in: the processor the fine-tune saves squashes the film to its square instead of cropping its
centre, so no lung pixel is cut, and `pipeline()` frames it the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from covid_cxr.data.processor_size import processor_size, set_processor_size
from study.yardstick import centre_crop

# a real wide film (512 x 340) whose lungs reach close to its left and right edges, with its CC BY lung mask
WIDE_FILM_MASK = "masks/ieee8023__F63AB6CE-1968-4154-A70F-913AF154F53D.png"


def lung_columns(pixels: np.ndarray) -> tuple[float, float]:
    """The leftmost and rightmost lung column, as fractions of the width."""
    columns = np.flatnonzero(pixels.any(axis=0))
    return columns[0] / pixels.shape[1], (columns[-1] + 1) / pixels.shape[1]


def seen(processor, image: Image.Image) -> np.ndarray:
    """The processor's output before rescaling, as a lung mask (it was given one)."""
    pixels = processor([image.convert("RGB")], do_rescale=False, do_normalize=False, return_tensors="np")
    return pixels["pixel_values"][0, 0] >= 128


@pytest.fixture(scope="module")
def wide_mask(cxr_root: Path) -> Image.Image:
    mask = Image.open(cxr_root.parent / "cxr-lung-masks" / WIDE_FILM_MASK).convert("L")
    assert mask.width > 1.4 * mask.height
    return mask


def test_the_whole_film_keeps_every_lung_pixel_the_centre_crop_cuts(backbone: Path, wide_mask: Image.Image) -> None:
    lungs = np.asarray(wide_mask) >= 128
    whole = AutoImageProcessor.from_pretrained(backbone)
    set_processor_size(whole, 168)
    view = seen(whole, wide_mask)
    assert view.shape == (168, 168) and processor_size(whole) == 168
    np.testing.assert_allclose(lung_columns(view), lung_columns(lungs), atol=0.02)  # both lateral edges kept
    assert abs(view.mean() - lungs.mean()) < 0.02  # squashing keeps the lungs' share of the film

    cropped = AutoImageProcessor.from_pretrained(backbone)
    centre_crop(cropped, 168)
    left, right = lung_columns(seen(cropped, wide_mask))
    assert left == 0 and right == 1  # the lungs run off both borders of the crop: their edges were cut


def test_the_trained_model_and_pipeline_frame_the_whole_film(trained: tuple[Path, dict]) -> None:
    folder, _ = trained
    processor = AutoImageProcessor.from_pretrained(folder)
    assert not processor.do_center_crop
    assert processor.size == {"height": 56, "width": 56}
