"""Lung fields on real X-rays: the segmenter's output, its held-out Dice against a constant mask, the attention
share, and the command that writes masks for a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.cli.lungs import main as lungs_cli
from covid_cxr.lungs.fitting import cross_validate, fit_head, read_mask
from covid_cxr.lungs.measures import attention_ratio, attention_share, attention_warning, components, dice
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import SEGMENTER_CV
from covid_cxr.serving.wording import attention_words
from tests.conftest import fit_standard


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
    assert results["dice_mean"] > results["mean_mask_dice"] + 0.05  # well past one fixed lung-shaped mask


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
    from covid_cxr.lungs.standard import lung_probability

    chosen = lung_data[1]
    project = LungSegmenter.from_pretrained(lungs_folder)
    standard, stages = fit_standard(lung_data, lungs_folder, tmp_path / "pipeline")
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


def small_mask_folder(cxr_root: Path, target: Path, count: int = 12) -> list[Path]:
    """`count` of the project's lung masks (one per patient) as a mask folder of their own; their images."""
    import csv

    from covid_cxr.lungs.fitting import read_pairs

    masks_root = cxr_root.parent / "cxr-lung-masks"
    chosen = list({p.patient_id: p for p in read_pairs(masks_root, cxr_root)}.values())[:count]
    (target / "masks").mkdir(parents=True)
    with (target / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mask_file", "image_file"])
        for pair in chosen:
            shutil.copy(pair.mask, target / "masks" / pair.mask.name)
            writer.writerow([f"masks/{pair.mask.name}", pair.image.relative_to(cxr_root).as_posix()])
    return [pair.image for pair in chosen]


def test_train_lungs_pushes_the_standard_segmenter_with_its_card(
    cxr_root: Path, backbone: Path, tmp_path: Path, fake_hub
) -> None:
    """`covid-cxr train-lungs --hub_repo_id` uploads pipeline/ in one commit: weights, processor, a card whose Dice
    is the run's cross-validated one and whose data are the masked images', and the terms; `pipeline()` then loads
    what was uploaded, offline and without remote code, and finds the lungs on a real film."""
    import json

    from transformers import pipeline

    from covid_cxr.cli.train_lungs import main as train_lungs
    from covid_cxr.data.imaging import load_image
    from covid_cxr.hub import HUB_ID_FILE, HubArguments

    masks, output = tmp_path / "masks", tmp_path / "lungs"
    images = small_mask_folder(cxr_root, masks)
    arguments = ["--masks", str(masks), "--images", str(cxr_root), "--output_dir", str(output)]
    arguments += ["--backbone", str(backbone), "--folds", "2", "--masks_license", "CC BY 4.0 (test)"]
    train_lungs([*arguments, "--hub_repo_id", "me/cxr-lungs"])
    (commit,) = fake_hub.commits
    expected = {"README.md", "LICENSE.md", "config.json", "model.safetensors", "preprocessor_config.json"}
    assert commit["repo_id"] == "me/cxr-lungs" and set(commit["added"]) == expected
    assert (output / HUB_ID_FILE).read_text().strip() == "me/cxr-lungs"
    card = " ".join((fake_hub.root / "me/cxr-lungs" / "README.md").read_text().split())  # prose, not line breaks
    dice_mean = json.loads((output / SEGMENTER_CV).read_text())["pipeline"]["dice_mean"]
    assert f"mean Dice **{dice_mean:.3f}**" in card and "12 lung masks of 12 patients" in card
    assert "| ieee8023 | covid | 12 |" in card and "all labelled `covid`" in card
    assert 'pipeline("image-segmentation", model="me/cxr-lungs")' in card and "licensed CC BY 4.0 (test)" in card
    assert card.startswith("--- base_model: facebook/dinov2-small") and "pipeline_tag: image-segmentation" in card
    assert "not a medical device" in (fake_hub.root / "me/cxr-lungs" / "LICENSE.md").read_text()

    dry = HubArguments(hub_repo_id="me/other", dry_run=str(tmp_path / "up"))
    dry.publish(output / "pipeline")  # a dry run writes the same files and pushes nothing
    assert {p.name for p in (tmp_path / "up").iterdir()} == expected and len(fake_hub.commits) == 1

    segment = pipeline("image-segmentation", model=str(fake_hub.root / "me/cxr-lungs"), trust_remote_code=False)
    found = {r["label"]: np.asarray(r["mask"]) > 0 for r in segment(load_image(images[0]).image.convert("RGB"))}
    assert 0.1 < found["lung"].mean() < 0.6  # a lung field, neither nothing nor the whole film


def test_train_lungs_stops_before_fitting_when_the_push_or_the_input_side_cannot_be(
    cxr_root: Path, backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from covid_cxr.cli.train_lungs import main as train_lungs

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token either
    arguments = ["--masks", str(cxr_root.parent / "cxr-lung-masks"), "--images", str(cxr_root)]
    arguments += ["--output_dir", str(tmp_path / "lungs"), "--backbone", str(backbone)]
    with pytest.raises(SystemExit, match="not a valid Hub repo id"):
        train_lungs([*arguments, "--hub_repo_id", "no owner"])
    with pytest.raises(SystemExit, match="no Hugging Face token"):
        train_lungs([*arguments, "--hub_repo_id", "me/cxr-lungs"])
    with pytest.raises(SystemExit, match="give --hub_repo_id"):
        train_lungs([*arguments, "--dry_run", str(tmp_path / "upload")])
    with pytest.raises(SystemExit, match="--image_size 230 is not a multiple of the backbone's 14 px patches"):
        train_lungs([*arguments, "--image_size", "230"])
    assert not (tmp_path / "lungs").exists()
