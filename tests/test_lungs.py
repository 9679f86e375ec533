"""Lung fields on real X-rays: the segmenter's output, its held-out Dice against a constant mask, the attention
share, and the command that writes masks for a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.lungs.__main__ import main as lungs_cli
from covid_cxr.lungs.fitting import cross_validate, read_mask
from covid_cxr.lungs.measures import attention_share, components, dice
from covid_cxr.lungs.segmenter import LungSegmenter


def test_held_out_dice_beats_a_constant_mask(lung_data) -> None:
    segmenter, chosen, features, masks = lung_data
    results = cross_validate(segmenter, features, masks, [p.patient_id for p in chosen], folds=4)
    low, high = results["dice_ci95"]
    assert low <= results["dice_mean"] <= high
    assert results["mean_mask_dice"] < 0.85 < results["dice_mean"]  # a fixed lung-shaped mask cannot get there


def test_segmenter_round_trips_and_masks_have_the_image_size(lung_data, tmp_path: Path) -> None:
    segmenter, chosen, _, _ = lung_data
    segmenter.save_pretrained(tmp_path / "lungs")
    assert {p.name for p in (tmp_path / "lungs").iterdir()} == {"lung_segmenter.json", "lung_segmenter.safetensors"}
    loaded = LungSegmenter.from_pretrained(tmp_path / "lungs")  # bf16 backbone on disk: the same weights
    image = Image.open(chosen[0].image)
    (probability,) = loaded.probabilities([image])
    assert probability.shape == (image.height, image.width)
    assert probability.min() >= 0 and probability.max() <= 1
    (reference,) = segmenter.probabilities([image])
    np.testing.assert_allclose(probability, reference, atol=1e-5)


def test_cli_writes_one_binary_mask_per_readable_input(lung_data, lungs_folder: Path, tmp_path: Path, capsys) -> None:
    _, chosen, _, _ = lung_data
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for pair in chosen[:3]:
        shutil.copy(pair.image, inputs)
    (inputs / "broken.png").write_bytes(b"not an image")
    (inputs / "notes.txt").write_text("ignored: not an image type")
    assert (
        lungs_cli(["--model", str(lungs_folder), "--input_dir", str(inputs), "--output_dir", str(tmp_path / "out")])
        == 0
    )
    written = sorted((tmp_path / "out").iterdir())
    assert [p.stem for p in written] == sorted(p.image.stem for p in chosen[:3])
    for pair in chosen[:3]:
        mask = Image.open(tmp_path / "out" / f"{pair.image.stem}.png")
        assert mask.mode == "L" and mask.size == Image.open(pair.image).size
        values = np.unique(np.asarray(mask))
        assert set(values) <= {0, 255} and len(values) == 2
        assert dice(np.asarray(mask) > 0, read_mask(pair.mask)) > 0.7
    assert "skipped broken.png: not a PNG, JPEG or DICOM" in capsys.readouterr().out


def test_attention_share_and_components() -> None:
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:28, 2:14] = mask[4:28, 18:30] = True
    inside, outside = np.where(mask, 1.0, 0.0), np.where(mask, 0.0, 1.0)
    assert attention_share(inside, mask) == 1.0 and attention_share(outside, mask) == 0.0
    assert attention_share(inside + outside, mask) == pytest.approx(mask.mean())
    assert components(mask) == 2 and components(np.zeros_like(mask)) == 0
