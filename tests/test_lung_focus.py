"""Lungs first (`--lung_focus`) on real X-rays: in-lung pixels untouched, the rest blurred, in every path (dataset
splits, cross-validation, one film for the Space and predict); masks predicted once and cached beside the dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage
from transformers import AutoImageProcessor

from covid_cxr.cli.predict import main as predict_main
from covid_cxr.data.lung_focus import MASK_COLUMN, blur_outside
from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.hub import HUB_ID_FILE
from covid_cxr.lungs.dataset_masks import MASK_SIDE, segmenter_fingerprint, with_lung_masks
from covid_cxr.lungs.focus import NoLungsError, focus_on_lungs, focused_by_pipeline, lungs_first, lungs_first_splits
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.lungs.standard import PIPELINE_FOLDER
from covid_cxr.serving.predictor import NeedsLungSegmenter, Predictor
from covid_cxr.serving.wording import LUNGS_FIRST_WORDS, verdict_markdown
from covid_cxr.training.run import run
from tests.conftest import FIXTURE_ROOT, fit_standard, tiny_run_arguments

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


def grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")).astype(int)


def test_lungs_first_keeps_the_lungs_and_blurs_the_rest_in_every_split(lungs_folder: Path, small_dataset: Path) -> None:
    splits = datasets.load_from_disk(str(small_dataset))
    segmenter = LungSegmenter.from_pretrained(lungs_folder)
    focused = lungs_first_splits(splits, segmenter)
    blurred_films = 0
    for name, split in splits.items():
        assert focused[name].num_rows == split.num_rows  # no film lost: one with no plausible lungs stays whole
        masks = with_lung_masks(split, segmenter)[MASK_COLUMN]
        for before, after, mask in zip(split["image"], focused[name]["image"], masks, strict=True):
            lungs = np.asarray(Image.fromarray(np.uint8(mask) * 255).resize(before.size)) >= 128
            np.testing.assert_array_equal(grey(after)[lungs], grey(before)[lungs])
            if not lungs.all():  # a plausible mask: what lies outside the lungs (and their margin) is blurred
                assert np.abs(grey(after)[~lungs] - grey(before)[~lungs]).mean() > 1
                blurred_films += 1
    assert blurred_films > 0.8 * sum(split.num_rows for split in splits.values())


def test_one_film_is_focused_as_the_dataset_focuses_it(lungs_folder: Path, small_dataset: Path) -> None:
    """The Space and `covid-cxr predict` call focus_on_lungs: the same pixels the model was trained on."""
    split = datasets.load_from_disk(str(small_dataset))["test"]
    segmenter = LungSegmenter.from_pretrained(lungs_folder)
    focused = lungs_first(split, segmenter)
    masks = with_lung_masks(split, segmenter)[MASK_COLUMN]
    index = next(i for i, mask in enumerate(masks) if not np.asarray(mask).all())
    alone = grey(focus_on_lungs(split[index]["image"], segmenter))
    assert (alone == grey(focused[index]["image"])).mean() > 0.99  # batched and single passes may flip a mask pixel


def test_a_film_without_lungs_cannot_be_focused(lungs_folder: Path) -> None:
    with pytest.raises(NoLungsError, match="no plausible lung fields"):
        focus_on_lungs(Image.new("L", (300, 300), 128), LungSegmenter.from_pretrained(lungs_folder))


def test_the_cross_validation_trains_and_scores_focused_films(
    lungs_folder: Path, small_dataset: Path, backbone: Path, monkeypatch
) -> None:
    from study import finetune_rounds

    dataset = datasets.concatenate_datasets(list(datasets.load_from_disk(str(small_dataset)).values()))
    arguments = tiny_run_arguments(backbone, small_dataset, small_dataset.parent / "unused", lung_focus=True)
    segmenter = LungSegmenter.from_pretrained(lungs_folder)
    with pytest.raises(ValueError, match="needs the lung segmenter"):
        finetune_rounds.finetune_scorer(arguments, dataset, small_dataset.parent / "cv")

    class Trained(Exception):
        pass

    def fit(*args):
        raise Trained(args[4])  # the splits the round would train on

    monkeypatch.setattr(finetune_rounds, "fit", fit)
    scorer = finetune_rounds.finetune_scorer(arguments, dataset, small_dataset.parent / "cv", segmenter)
    train = np.arange(0, dataset.num_rows, 2)
    with pytest.raises(Trained) as trained:
        scorer(0, train, np.array([1]), np.array([3]))
    expected = lungs_first(dataset, segmenter).select(train)
    for seen, wanted in zip(trained.value.args[0]["train"]["image"], expected["image"], strict=True):
        np.testing.assert_array_equal(grey(seen), grey(wanted))


@pytest.fixture(scope="module")
def lungs_with_standard(tmp_path_factory, lung_data, lungs_folder: Path) -> Path:
    """The test segmenter with its standard pipeline model, pushed to (as recorded) `me/cxr-lungs`."""
    folder = tmp_path_factory.mktemp("lungs-with-standard")
    shutil.copytree(lungs_folder, folder, dirs_exist_ok=True)
    fit_standard(lung_data, lungs_folder, folder / PIPELINE_FOLDER)
    (folder / HUB_ID_FILE).write_text("me/cxr-lungs\n")
    return folder


@pytest.fixture(scope="module")
def lungs_first_model(tmp_path_factory, backbone: Path, small_dataset: Path, lungs_with_standard: Path) -> Path:
    output = tmp_path_factory.mktemp("lungs-first")
    run(*tiny_run_arguments(backbone, small_dataset, output, lungs=lungs_with_standard, lung_focus=True))
    return output


def test_a_lungs_first_model_records_its_focus_and_its_unfocused_figures(
    lungs_first_model: Path, lungs_folder: Path
) -> None:
    config = json.loads((lungs_first_model / "config.json").read_text())
    assert config["lung_focus"]["segmenter_fingerprint"] == segmenter_fingerprint(
        LungSegmenter.from_pretrained(lungs_folder)
    )
    assert config["lung_focus"]["standard_segmenter"] == "me/cxr-lungs"
    results = json.loads((lungs_first_model / "all_results.json").read_text())
    assert {"test_unfocused_roc_auc", "test_unfocused_mixed_sources_roc_auc"} <= results.keys()
    assert {"test_pipeline_focus_roc_auc", "test_pipeline_focus_max_probability_difference"} <= results.keys()
    card = (lungs_first_model / "README.md").read_text()
    assert "lungs first" in card and 'pipeline("image-segmentation", model="me/cxr-lungs")' in card
    gap = f"differs from the package's by up to {results['test_pipeline_focus_max_probability_difference']:.3f} on one"
    assert gap in " ".join(card.split())


def test_the_card_states_what_the_callers_calls_give(
    lungs_first_model: Path, lungs_with_standard: Path, small_dataset: Path
) -> None:
    """The card's calls, run as a caller runs them on every real test film: the two-pipeline call keeps in-lung
    pixels and blurs the rest exactly as `focused_by_pipeline` (what the card measured) does; the recorded figures
    (whole films, the two-pipeline call, and its largest gap from the package path) are what those calls give."""
    from transformers import pipeline

    from covid_cxr.data.lung_focus import blur_image_outside

    test = datasets.load_from_disk(str(small_dataset))["test"]
    segment = pipeline("image-segmentation", model=str(lungs_with_standard / PIPELINE_FOLDER))
    classifier = pipeline("image-classification", model=str(lungs_first_model))
    segmenter = LungSegmenter.from_pretrained(lungs_with_standard)
    recorded = json.loads((lungs_first_model / "all_results.json").read_text())
    threshold = json.loads((lungs_first_model / "config.json").read_text())["decision_threshold"]

    def covid(film: Image.Image) -> float:
        return next(r["score"] for r in classifier(film.convert("RGB")) if r["label"] == "covid")

    measured = focused_by_pipeline(test, lungs_with_standard / PIPELINE_FOLDER)["image"]
    whole, by_pipelines, by_package = [], [], []
    for film, as_measured in zip(test["image"], measured, strict=True):
        lungs = next(r["mask"] for r in segment(film.convert("RGB")) if r["label"] == "lung")
        focused = blur_image_outside(film, np.asarray(lungs) > 0)
        np.testing.assert_array_equal(grey(focused), grey(as_measured))
        inside = np.asarray(lungs) > 0  # the film's own pixels there; blurred detail elsewhere
        np.testing.assert_array_equal(grey(focused)[inside], grey(film)[inside])
        assert 0 < inside.mean() < 1 and detail(grey(focused)) < detail(grey(film))
        whole.append(covid(film))
        by_pipelines.append(covid(focused))
        by_package.append(covid(focus_on_lungs(film, segmenter)))
    labels = np.asarray(test["label"]) == 1
    for key, scores in (("test_unfocused", whole), ("test_pipeline_focus", by_pipelines)):
        detected = np.asarray(scores) >= threshold
        assert recorded[f"{key}_sensitivity"] == pytest.approx(detected[labels].mean())
        assert recorded[f"{key}_specificity"] == pytest.approx((~detected[~labels]).mean())
    gap = np.abs(np.asarray(by_pipelines) - np.asarray(by_package))
    assert recorded["test_pipeline_focus_max_probability_difference"] == pytest.approx(gap.max(), abs=1e-4)


def test_a_lungs_first_model_is_served_on_focused_films_only(
    lungs_first_model: Path, lungs_folder: Path, small_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    with pytest.raises(NeedsLungSegmenter, match="trained lungs first"):
        Predictor(lungs_first_model)
    segmenter = LungSegmenter.from_pretrained(lungs_folder)
    predictor = Predictor(lungs_first_model, segmenter)
    film = datasets.load_from_disk(str(small_dataset))["test"][0]["image"]
    film.save(tmp_path / "film.png")
    given = []
    forward = predictor.forward
    monkeypatch.setattr(predictor, "forward", lambda pixels, heatmap: given.append(pixels) or forward(pixels, heatmap))
    answer = predictor.analyse(tmp_path / "film.png")
    expected = predictor.processor(focus_on_lungs(film, segmenter).convert("RGB"), return_tensors="pt")
    np.testing.assert_allclose(given[0].numpy(), expected["pixel_values"].numpy(), atol=1e-5)
    assert answer.lungs_first and LUNGS_FIRST_WORDS in verdict_markdown(answer, predictor.threshold)  # said plainly


def test_predict_refuses_a_lungs_first_model_without_a_segmenter(lungs_first_model: Path, tmp_path: Path) -> None:
    image = sorted((FIXTURE_ROOT / "images").glob("*.jpg"))[0]
    with pytest.raises(SystemExit, match="lung segmenter"):
        predict_main(["--model", str(lungs_first_model), "--inputs", str(image), "--output", str(tmp_path / "o.csv")])


def test_lungs_first_without_a_segmenter_stops_before_training(backbone: Path, small_dataset: Path, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--lung_focus needs a lung segmenter"):
        run(*tiny_run_arguments(backbone, small_dataset, tmp_path / "model", lung_focus=True))
    assert not list((tmp_path / "model").glob("checkpoint-*"))
