"""The fast data path: pre-decoded uint8 pixels and on-device augmentation, on real X-rays."""

from __future__ import annotations

import pickle
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor

from covid_cxr.data.predecode import PixelDataset, predecode, train_side
from covid_cxr.data.processor_size import presized, set_processor_size
from covid_cxr.data.transforms import Augmentation, DevicePixels, train_transform
from covid_cxr.training.arguments import DataArguments
from covid_cxr.training.run import run
from covid_cxr.training.trainer import collate
from tests.conftest import tiny_run_arguments

SIDE = 56
IDENTITY = Augmentation(scale=(1, 1), ratio=(1, 1), max_rotation=0, brightness=0, contrast=0)


@pytest.fixture(scope="module")
def processor(backbone: Path):
    processor = AutoImageProcessor.from_pretrained(backbone)
    set_processor_size(processor, SIDE)
    return processor


@pytest.fixture(scope="module")
def splits(small_dataset: Path) -> datasets.DatasetDict:
    return datasets.load_from_disk(str(small_dataset))


def first_pixels(dataset: PixelDataset, n: int) -> torch.Tensor:
    return collate([dataset[i] for i in range(n)])["pixel_values"]


def normalise(processor, grey: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    return (grey.expand(-1, 3, -1, -1) - mean) / std


def test_evaluation_pixels_match_the_processor(processor, splits) -> None:
    batch = collate(list(predecode(splits["validation"], processor, train=False)))
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape[1:] == (1, SIDE, SIDE)
    assert batch["labels"].tolist() == splits["validation"]["label"]
    ours = DevicePixels(processor, Augmentation())(batch["pixel_values"], train=False)
    images = [image.convert("RGB") for image in splits["validation"]["image"]]
    expected = processor(images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_identity_augmentation_is_a_plain_resize(processor, splits) -> None:
    stored = first_pixels(predecode(splits["train"], processor, train=True), 8)
    assert stored.shape[-1] == train_side(SIDE) > SIDE
    ours = DevicePixels(processor, IDENTITY)(stored, train=True)
    resized = F.interpolate(stored.float() / 255, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours, normalise(processor, resized), atol=1e-4, rtol=0)


def test_crop_keeps_most_of_the_image_at_about_its_aspect() -> None:
    """Pixels that hold their own coordinates show which part of the image each augmented output came from."""
    side, aug = 64, Augmentation()
    ramp = torch.linspace(0, 1, 4 * side)
    where = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy")).expand(200, 2, -1, -1)  # 200 draws
    crop = Augmentation(aug.scale, aug.ratio, max_rotation=0, brightness=0, contrast=0).module(side)
    kept = crop(where)
    width, height = (kept[:, axis].amax(dim=(1, 2)) - kept[:, axis].amin(dim=(1, 2)) for axis in (0, 1))
    slack = 2 / side  # a pixel either side
    assert (width * height >= aug.scale[0] - slack).all() and (width * height <= 1).all()
    assert (width / height >= aug.ratio[0] - slack).all() and (width / height <= aug.ratio[1] + slack).all()
    assert (width * height).std() > 0.03  # the crop varies


def test_augmentation_is_random_bounded_and_seeded(processor, splits) -> None:
    stored = first_pixels(predecode(splits["train"], processor, train=True), 8)
    device_pixels = DevicePixels(processor, Augmentation())
    torch.manual_seed(0)
    first, second = device_pixels(stored, train=True), device_pixels(stored, train=True)
    torch.manual_seed(0)
    again = device_pixels(stored, train=True)
    assert first.shape == (8, 3, SIDE, SIDE) and torch.isfinite(first).all()
    assert (first - second).abs().mean() > 0.01
    torch.testing.assert_close(first, again)
    torch.manual_seed(1)
    assert (device_pixels(stored, train=True) - first).abs().mean() > 0.01
    low, high = normalise(processor, torch.zeros(1, 1, 1, 1)), normalise(processor, torch.ones(1, 1, 1, 1))
    assert (first >= low - 1e-5).all() and (first <= high + 1e-5).all()


def test_pil_path_augments_as_the_device_path_does(processor, splits) -> None:
    n = 6
    stored = first_pixels(predecode(splits["train"], processor, train=True), n)
    pil = splits["train"].select(range(n))
    pil.set_transform(train_transform(processor, Augmentation()))
    torch.manual_seed(3)
    device = DevicePixels(processor, Augmentation())(stored, train=True)
    torch.manual_seed(3)
    torch.testing.assert_close(pil[:n]["pixel_values"], device, atol=1e-5, rtol=0)


def test_predecoding_is_cached_beside_the_dataset(processor, small_dataset: Path) -> None:
    split = datasets.load_from_disk(str(small_dataset))["test"]
    predecode(split, processor, train=False)
    cached = set((small_dataset / "test").glob("cache-*.arrow"))
    assert cached
    again = predecode(split, processor, train=False)
    assert set((small_dataset / "test").glob("cache-*.arrow")) == cached
    assert len(again) == split.num_rows


def test_pixels_are_read_in_place_and_pickle_as_a_file_reference(processor, splits) -> None:
    decoded = predecode(splits["train"], processor, train=True)
    pixel_bytes = len(decoded) * train_side(SIDE) ** 2
    payload = pickle.dumps(decoded)  # what a spawned dataloader worker receives
    assert len(payload) < pixel_bytes / 4
    copy = pickle.loads(payload)
    for index in (0, len(decoded) // 2, len(decoded) - 1):
        assert torch.equal(copy[index]["pixel_values"], decoded[index]["pixel_values"])
        assert copy[index]["labels"] == decoded[index]["labels"] == splits["train"][index]["label"]


def test_device_pixels_refuses_undecoded_input(processor) -> None:
    with pytest.raises(ValueError, match="expected grey uint8 batches"):
        DevicePixels(processor, Augmentation())(torch.rand(2, 3, SIDE, SIDE), train=True)


def test_pil_data_path_still_trains(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    model_args, _, eval_args, training_args = tiny_run_arguments(backbone, small_dataset, tmp_path, max_steps=1)
    eval_args.linear_probe = False
    results = run(model_args, DataArguments(dataset=str(small_dataset), predecode=False), eval_args, training_args)
    assert 0.0 <= results["test_roc_auc"] <= 1.0
    assert (tmp_path / "model.safetensors").is_file()


def test_pil_augmentation_differs_across_workers_and_epochs(processor, splits) -> None:
    same_xray = splits["train"].select([0] * 4)
    same_xray.set_transform(train_transform(processor, Augmentation()))
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(same_xray, batch_size=1, num_workers=2, collate_fn=collate)
    first, second = (torch.cat([batch["pixel_values"] for batch in loader]) for _ in range(2))
    # items 0 and 1 are drawn by different workers; with one Random copied into both they would be equal
    assert (first[0] - first[1]).abs().mean() > 0.01
    assert (first - second).abs().mean() > 0.01  # and a new epoch draws new augmentations


def test_a_presized_film_gives_the_processor_s_own_pixels(
    processor, splits: datasets.DatasetDict, backbone: Path
) -> None:
    """The Space resizes a full-size film in its own mode before the processor: the same pixels to the bit as the
    processor's resize of the RGB film (what pipeline() gives it), for a grey and a colour film."""
    film = splits["test"][0]["image"]
    large = film.resize((2048, 2048 * film.height // film.width), Image.Resampling.BICUBIC)
    for image in (large.convert("L"), large.convert("RGB")):
        expected = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
        assert torch.equal(processor(presized(image, processor), return_tensors="pt")["pixel_values"], expected)
    cropping = AutoImageProcessor.from_pretrained(backbone)  # as shipped: shortest edge, then a centre crop
    assert cropping.do_center_crop and presized(large, cropping).size == large.size  # left to the processor
