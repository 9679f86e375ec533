"""`--lung_focus` on real X-rays: in-lung pixels untouched, the rest blurred; masks predicted once and cached beside
the dataset; training inputs only."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage
from transformers import AutoImageProcessor

from covid_cxr.data.lung_focus import MASK_COLUMN, blur_outside
from covid_cxr.data.predecode import predecode, train_side
from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.lungs.dataset_masks import MASK_SIDE, with_lung_masks
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.training.arguments import DataArguments
from covid_cxr.training.inputs import prepare_inputs
from tests.conftest import FIXTURE_ROOT, tiny_run_arguments

SIDE = 56


def labelled_xray(side: int = 192) -> np.ndarray:
    """A real chest X-ray from the CC BY fixture with a burnt-in corner label, as many hospitals print one."""
    path = sorted((FIXTURE_ROOT / "images").glob("*.jpg"))[0]
    image = Image.open(path).convert("L").resize((side, side))
    ImageDraw.Draw(image).text((4, 4), "L PORTABLE AP", fill=255)
    return np.asarray(image)


def lung_like_mask(side: int) -> np.ndarray:
    mask = np.zeros((side, side), dtype=bool)
    mask[side // 4 : 3 * side // 4, side // 8 : 7 * side // 16] = True
    mask[side // 4 : 3 * side // 4, 9 * side // 16 : 7 * side // 8] = True
    return mask


def detail(pixels: np.ndarray) -> float:
    """Fine structure (text, edges): the spread of the Laplacian."""
    return float(ndimage.laplace(pixels.astype(np.float32)).std())


def test_blur_outside_keeps_the_lungs_and_wipes_the_corner_label() -> None:
    pixels = labelled_xray()
    lungs = lung_like_mask(MASK_SIDE)  # at the cache's resolution, not the image's
    focused = blur_outside(pixels, lungs)
    inside = np.asarray(Image.fromarray(lungs).resize(pixels.shape[::-1])) > 0
    assert focused.dtype == np.uint8 and focused.shape == pixels.shape
    np.testing.assert_array_equal(focused[inside], pixels[inside])
    corner = (slice(0, 16), slice(0, 96))  # the label
    assert detail(focused[corner]) < detail(pixels[corner]) / 3
    assert np.abs(focused[~inside].astype(int) - pixels[~inside]).mean() > 1


def test_blur_outside_refuses_anything_but_grey_uint8() -> None:
    with pytest.raises(ValueError, match="grey uint8"):
        blur_outside(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool))


@pytest.fixture(scope="module")
def processor(backbone: Path):
    processor = AutoImageProcessor.from_pretrained(backbone)
    set_processor_size(processor, SIDE)
    return processor


def test_masks_are_predicted_once_and_cached_beside_the_dataset(
    lungs_folder: Path, small_dataset: Path, monkeypatch
) -> None:
    split = datasets.load_from_disk(str(small_dataset))["validation"]
    before = set((small_dataset / "validation").glob("cache-*.arrow"))
    segmenter = LungSegmenter.from_pretrained(lungs_folder)
    masked = with_lung_masks(split, segmenter)
    masks = np.asarray(masked[MASK_COLUMN])
    assert masks.shape == (split.num_rows, MASK_SIDE, MASK_SIDE) and set(np.unique(masks)) <= {0, 1}
    assert 0.1 < np.median(masks.mean(axis=(1, 2))) < 0.7  # real X-rays: lungs, not nothing or everything
    assert set((small_dataset / "validation").glob("cache-*.arrow")) - before

    def no_second_pass(*_args):
        raise AssertionError("the masks were predicted again instead of read from the cache")

    monkeypatch.setattr(segmenter, "tokens", no_second_pass)
    np.testing.assert_array_equal(np.asarray(with_lung_masks(split, segmenter)[MASK_COLUMN]), masks)


def test_lung_focus_changes_training_pixels_outside_the_lungs_only(
    processor, backbone: Path, small_dataset: Path, lungs_folder: Path
) -> None:
    _, _, _, training_args = tiny_run_arguments(backbone, small_dataset, small_dataset.parent / "unused")
    lungs = LungSegmenter.from_pretrained(lungs_folder)

    def train_pixels(focus: bool) -> np.ndarray:
        splits = datasets.load_from_disk(str(small_dataset))
        args = DataArguments(dataset=str(small_dataset), lung_focus=focus)
        train, validation, _ = prepare_inputs(splits, processor, args, training_args, lungs)
        assert len(validation) == splits["validation"].num_rows
        return np.stack([train[i]["pixel_values"][0].numpy() for i in range(len(train))])

    plain, focused = train_pixels(False), train_pixels(True)
    side = train_side(SIDE)
    masks = with_lung_masks(datasets.load_from_disk(str(small_dataset))["train"], lungs)[MASK_COLUMN]
    inside = np.stack([np.asarray(Image.fromarray(np.uint8(m) * 255).resize((side, side))) >= 128 for m in masks])
    np.testing.assert_array_equal(focused[inside], plain[inside])
    assert np.abs(focused[~inside].astype(int) - plain[~inside]).mean() > 1


def test_lung_focus_is_for_training_only_and_needs_a_segmenter(processor, backbone: Path, small_dataset: Path) -> None:
    splits = datasets.load_from_disk(str(small_dataset))
    with pytest.raises(ValueError, match="training only"):
        predecode(splits["validation"], processor, train=False, lung_focus=True)
    _, _, _, training_args = tiny_run_arguments(backbone, small_dataset, small_dataset.parent / "unused")
    args = DataArguments(dataset=str(small_dataset), lung_focus=True)
    with pytest.raises(FileNotFoundError, match="make lungs"):
        prepare_inputs(splits, processor, args, training_args, None)
