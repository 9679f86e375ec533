"""Lung fields on real X-rays: the segmenter's output, its held-out Dice against a constant mask, the attention
share, and the command that writes masks for a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.lungs.__main__ import main as lungs_cli
from covid_cxr.lungs.fitting import cross_validate, fit_head, read_mask
from covid_cxr.lungs.measures import attention_ratio, attention_share, attention_warning, components, dice
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.serving.wording import attention_words


def test_held_out_dice_beats_a_constant_mask(lung_data) -> None:
    segmenter, chosen, features, masks = lung_data
    results = cross_validate(
        lambda x, y, seed: fit_head(segmenter, x, y, seed=seed),
        segmenter.decode,
        features,
        masks,
        [p.patient_id for p in chosen],
        folds=4,
    )
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


def test_the_attention_ratio_tells_an_even_spread_from_heat_on_the_lungs() -> None:
    """Against the lungs' share of the image: an even map is 'no more on the lungs than elsewhere', a map inside the
    lungs is on the lungs, even though the even map's share inside (the lungs' area) looks respectable."""
    lungs = np.zeros((64, 64), dtype=bool)
    lungs[8:56, 6:28] = lungs[8:56, 36:58] = True  # about half the image, as on a tight chest film
    even, inside = np.ones(lungs.shape), np.where(lungs, 1.0, 0.0)
    assert attention_share(even, lungs) == pytest.approx(lungs.mean())
    assert attention_ratio(even, lungs) == pytest.approx(1.0)
    assert attention_warning(attention_ratio(even, lungs))
    assert attention_ratio(inside, lungs) == pytest.approx(1 / lungs.mean())
    assert not attention_warning(attention_ratio(inside, lungs))
    assert attention_warning(attention_ratio(np.zeros(lungs.shape), lungs))  # no heat at all: nothing on the lungs


def test_the_space_words_the_ratio_for_a_clinician() -> None:
    assert "no more than on the rest of the image" in attention_words(0.45, 1.0)
    words = attention_words(0.9, 2.4)
    assert "2.4 times as concentrated there" in words and "no more" not in words


def test_the_standard_pipeline_model_finds_the_lungs_the_project_segmenter_finds(
    lung_data, lungs_folder: Path, tmp_path: Path
) -> None:
    """Fitted as `covid-cxr train-lungs` fits it, saved, and loaded back by `pipeline()` offline, from safetensors,
    without remote code or this package: its lung mask agrees with the project's segmenter's on real films."""
    from transformers import pipeline

    from covid_cxr.data.imaging import load_image
    from covid_cxr.lungs.fitting import TARGET_SCALE, mask_targets, train_head
    from covid_cxr.lungs.standard import (
        lung_logits,
        lung_probability,
        save_standard,
        stage_features,
        standard_model,
    )

    _, chosen, features, masks = lung_data
    project = LungSegmenter.from_pretrained(lungs_folder)
    standard, stages = standard_model(project), stage_features(project, features)
    targets = mask_targets(masks, features.shape[-1] * TARGET_SCALE)
    train_head(standard.decode_head, lambda batch: lung_logits(standard, batch), stages, targets)
    save_standard(standard, project, tmp_path / "pipeline")
    assert not list((tmp_path / "pipeline").glob("*.bin")) and not list((tmp_path / "pipeline").glob("*.py"))

    segment = pipeline("image-segmentation", model=str(tmp_path / "pipeline"), trust_remote_code=False)
    films = [load_image(p.image).image for p in chosen[:6]]
    for i, (film, expected) in enumerate(zip(films, project.masks(films), strict=True)):
        found = {r["label"]: np.asarray(r["mask"]) > 0 for r in segment(film.convert("RGB"))}
        assert found["lung"].shape == expected.shape
        # the pipeline computes exactly what the head was fitted on (its backbone's feature maps are ours)
        assert dice(found["lung"], lung_probability(standard, stages[i], expected.shape) >= 0.5) > 0.99
        assert dice(found["lung"], expected) > 0.8  # two heads fitted on the same 40 masks: the same lungs


def test_the_segmenter_refuses_a_backbone_that_is_not_dinov2(tmp_path: Path) -> None:
    from transformers import MobileNetV2Config

    MobileNetV2Config().save_pretrained(tmp_path / "mobilenet")
    with pytest.raises(ValueError, match="holds a mobilenet_v2 model: the lung segmenter needs a DINOv2 backbone"):
        LungSegmenter.from_backbone(tmp_path / "mobilenet")
