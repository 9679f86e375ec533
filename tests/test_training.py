"""Backbone conversion, fine-tuning, calibration, resume and the saved model, on a small real subset (CPU)."""

from __future__ import annotations

import csv
import json
import shutil
import stat
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    pipeline,
)

from covid_cxr.audit.report import inside_lines
from covid_cxr.cli.predict import main as predict
from covid_cxr.data.predecode import predecode
from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.data.sampling import mixed_label_weights
from covid_cxr.data.transforms import Augmentation, DevicePixels
from covid_cxr.evaluation.grouped import mixed_label_sources
from covid_cxr.evaluation.keys import MIXED, TEMPERATURE, TEST_N, TEST_SENSITIVITY, TEST_SPECIFICITY
from covid_cxr.labels import LABEL2ID
from covid_cxr.model_folder import CONFORMAL
from covid_cxr.modeling.backbones import dinov2_onnx, materialise
from covid_cxr.modeling.calibration import TEMPERATURE_BOUNDS, choose_threshold, fit_temperature, fold_temperature
from covid_cxr.modeling.conformal import Conformal
from covid_cxr.modeling.inference import CovidClassifier, run_model
from covid_cxr.modeling.scope_guard import MIN_REFERENCES, ScopeGuard
from covid_cxr.outputs import OutputFolderError
from covid_cxr.training.adversary import AdversaryRamp, SourceAdversary, attach_source_adversary
from covid_cxr.training.arguments import RunArguments
from covid_cxr.training.run import fit, run
from covid_cxr.training.trainer import build_trainer, freeze_backbone, load_model
from pages.results import body as results_page
from pages.results import collect
from study.whole_film_markdown import TRAINED_ROWS
from tests.conftest import CARD_DATASET_ID, LAUNCH, LAUNCH_ENV, REPO_ROOT, Crash, tiny_run_arguments


def test_converter_matches_the_onnx_graph(backbone: Path) -> None:
    facts = json.loads((backbone / "provenance.json").read_text())
    assert facts["max_relative_error_vs_source"] < 1e-4
    model = AutoModelForImageClassification.from_pretrained(backbone, num_labels=2)
    assert model.dinov2.embeddings.position_embeddings.shape == (1, 1370, 384)


def test_converter_fails_loudly_on_a_wrong_mapping(tmp_path: Path, monkeypatch) -> None:
    swapped = dict(dinov2_onnx._RENAMES)
    swapped["attention.attention.query"], swapped["attention.attention.key"] = "attention.k_proj", "attention.q_proj"
    monkeypatch.setattr(dinov2_onnx, "_RENAMES", swapped)
    with pytest.raises(dinov2_onnx.ConversionError, match="relative error"):
        dinov2_onnx.convert(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_freeze_keeps_last_blocks_and_head_trainable(backbone: Path) -> None:
    model = load_model(str(backbone))
    freeze_backbone(model, 2)
    trainable = {name.split(".weight")[0].split(".bias")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert any("layer.10." in n for n in trainable) and any("layer.11." in n for n in trainable)
    assert not any("layer.9." in n or "embeddings" in n for n in trainable)
    assert {"classifier", "dinov2.layernorm"} <= trainable


def test_the_weights_are_as_readable_as_the_other_files_written(trained: tuple[Path, dict], backbone: Path) -> None:
    """safetensors writes 0600 whatever the umask (safetensors#782); a model on a shared machine must not be."""
    for folder in (trained[0], backbone):
        expected = stat.S_IMODE((folder / "config.json").stat().st_mode)
        weights = list(folder.glob("*.safetensors"))
        assert weights and all(stat.S_IMODE(w.stat().st_mode) == expected for w in weights), folder


def test_two_step_training_writes_a_calibrated_model(trained: tuple[Path, dict]) -> None:
    output, results = trained
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "non_covid", "1": "covid"}
    assert 0.0 < config["decision_threshold"] <= 1.0
    assert config["calibration_temperature"] > 0
    assert config["threshold_validation_sensitivity"] >= config["threshold_target_sensitivity"]

    def refuse(constant: str) -> None:
        raise ValueError(f"all_results.json holds {constant}, which is not JSON")

    all_results = json.loads((output / "all_results.json").read_text(), parse_constant=refuse)
    for key in (
        "test_roc_auc",
        "test_sensitivity",
        "test_specificity",
        "test_mixed_sources_roc_auc",
        "test_ieee8023_sensitivity",
        "eval_ece",
        "probe_test_roc_auc",
        "probe_source_accuracy",
        "test_lung_attention_mean",
    ):
        assert key in all_results, key
    assert 0.0 <= all_results["probe_source_accuracy"] <= 1.0
    read = [key for key, _ in TRAINED_ROWS] + [TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_N]  # the study's, the Space's
    assert not [key for key in read if key not in all_results]
    assert "patients never seen in training" in results_page(collect(output))  # it reads every figure it shows
    assert 0.0 <= all_results["test_lung_attention_below_half"] <= 1.0
    assert 0.0 < all_results["test_lung_attention_mean"] < 1.0
    card = (output / "README.md").read_text()
    meta = ModelCard.load(output / "README.md").data
    assert meta.pipeline_tag == "image-classification" and meta.datasets == [CARD_DATASET_ID]
    assert {r.dataset_name for r in meta.eval_results} == {CARD_DATASET_ID}  # model-index names a real dataset
    assert (meta.license, meta.license_link) == ("other", "LICENSE.md") and (output / "LICENSE.md").is_file()
    assert meta.base_model == "facebook/dinov2-small"  # the offline default's lineage
    assert "(cosine)" in card and "SchedulerType" not in card
    state, flat = json.loads((output / "trainer_state.json").read_text()), " ".join(card.split())
    assert f"It ran {state['global_step']} of the {state['max_steps']} steps planned. The model is" in flat
    assert f"the checkpoint of step {state['best_global_step']}, the best validation `roc_auc`" in flat
    assert f"{results['test_roc_auc']:.3f}" in card and "Not a medical device" in card
    assert f"{100 * results['test_lung_attention_mean']:.0f}% of the\nmodel's attention is on the lungs" in card
    assert "{{" not in card
    for figure in ("roc_curve.png", "confusion_matrix.png"):
        assert Image.open(output / figure).size[0] > 300
    assert json.loads((output / "run_config.json").read_text())["model"]["image_size"] == 56
    # the export beside the safetensors, checked against PyTorch; and the occlusion test of the card
    assert (output / "onnx" / "model.onnx").is_file()
    assert all_results["onnx_max_probability_difference"] < 1e-4
    assert "## What the model reads: the occlusion test" in card and "| all images |" in card
    # the projection, sex and age figures on test, as `covid-cxr audit` words them
    inside = json.loads((output / "inside_results.json").read_text())
    assert inside["strata"]["subset"] == MIXED and set(inside["strata"]) == {
        "subset",
        "projection",
        "sex",
        "age",
    }
    assert "## Inside the mixed-label sources: projection, sex, age" in card
    assert "\n".join(inside_lines(inside["strata"], inside["projection_probe"])) in card
    # a validation split under MIN_REFERENCES films: the scope guard is topped up with training films, as the card says
    splits = datasets.load_from_disk(json.loads((output / "run_config.json").read_text())["data"]["dataset"])
    fitted_on = min(MIN_REFERENCES, splits["validation"].num_rows + splits["train"].num_rows)
    assert splits["validation"].num_rows < MIN_REFERENCES and ScopeGuard.load(output).reference.shape[0] == fitted_on
    assert f"those of {fitted_on} reference X-rays: the {splits['validation'].num_rows} validation images and" in flat


def test_prediction_sets_are_fitted_on_validation_alone_and_measured_on_test(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    """The model folder holds the validation films' calibrated probabilities, and nothing else: the card's coverage
    is measured on test; predict writes each film's set, and a model without them claims none."""
    output, _ = trained
    splits = datasets.load_from_disk(json.loads((output / "run_config.json").read_text())["data"]["dataset"])
    conformal = Conformal.load(output)
    validation = np.asarray(splits["validation"]["label"]) == LABEL2ID["covid"]
    assert (len(conformal.covid), len(conformal.other)) == (validation.sum(), (~validation).sum())
    probabilities = CovidClassifier.from_pretrained(output).predict(splits["validation"]["image"])
    by_class = sorted(p["probabilities"]["covid"] for p, covid in zip(probabilities, validation, strict=True) if covid)
    np.testing.assert_allclose(conformal.covid, by_class, atol=1e-5)  # the validation films, as the model scores them
    card = " ".join((output / "README.md").read_text().split())
    assert "## Uncertain answers: prediction sets" in card and "| all |" in card and "coverage" in card
    films = tmp_path / "films"
    films.mkdir()
    for index, image in enumerate(splits["test"]["image"][:4]):
        image.save(films / f"{index}.png")
    predict(["--model", str(output), "--inputs", str(films), "--output", str(tmp_path / "s.csv")])
    rows = [row for row in csv.DictReader((tmp_path / "s.csv").open()) if row["status"] == "ok"]
    floor, ceiling = conformal.bounds()
    for row in rows:
        p = float(row["covid_probability"])
        kept = [name for name, inside in (("covid", p >= floor), ("non_covid", p <= ceiling)) if inside]
        assert row["prediction_set"] == ("|".join(kept) or "none")
    foreign = shutil.copytree(output, tmp_path / "foreign", ignore=shutil.ignore_patterns("checkpoint-*"))
    (foreign / CONFORMAL).unlink()
    predict(["--model", str(foreign), "--inputs", str(films), "--output", str(tmp_path / "f.csv")])
    assert {row["prediction_set"] for row in csv.DictReader((tmp_path / "f.csv").open())} == {""}


def test_pipeline_and_predict_agree(trained: tuple[Path, dict], cxr_root: Path, metadata) -> None:
    output, _ = trained
    rows = [metadata[0], metadata[-1], next(r for r in metadata if r["source"] == "ieee8023")]
    images = [Image.open(cxr_root / r["file_name"]) for r in rows]
    classifier = CovidClassifier.from_pretrained(output)
    ours = classifier.predict(images)
    theirs = pipeline("image-classification", model=str(output), device="cpu")(images)
    for mine, hub in zip(ours, theirs, strict=True):
        scores = {entry["label"]: entry["score"] for entry in hub}
        assert scores == pytest.approx(mine["probabilities"], abs=1e-5)
        assert mine["covid_detected"] == (mine["probabilities"]["covid"] >= classifier.threshold)
    assert classifier.threshold == json.loads((output / "config.json").read_text())["decision_threshold"]


def test_the_card_never_calls_a_temperature_on_its_bound_a_calibration(trained: tuple[Path, dict]) -> None:
    """The tiny run's 12 validation films leave the temperature on the edge of its range: the card says the
    calibration did not converge, and nowhere that the probabilities are calibrated (the threshold, the strata
    section and the usage example included)."""
    assert trained[1][TEMPERATURE] == pytest.approx(max(TEMPERATURE_BOUNDS), rel=1e-3)
    card = (trained[0] / "README.md").read_text()
    assert "**The calibration did not converge**" in card
    assert card.count("calibrated") == card.count("not as calibrated probabilities") == 1


def test_saved_head_holds_the_temperature(trained: tuple[Path, dict], backbone: Path, cxr_root: Path) -> None:
    output, results = trained
    best = json.loads((output / "trainer_state.json").read_text())["best_model_checkpoint"]
    uncalibrated = AutoModelForImageClassification.from_pretrained(best)
    calibrated = AutoModelForImageClassification.from_pretrained(output)
    classifier = CovidClassifier.from_pretrained(output)
    image = [Image.open(next((cxr_root / "images").glob("hannover__*.jpg")))]
    raw = run_model(uncalibrated, classifier.processor, image).logits
    folded = run_model(calibrated, classifier.processor, image).logits
    np.testing.assert_allclose(folded, raw / results["temperature"], rtol=1e-4, atol=1e-5)


def test_checkpoints_reload_exactly(trained: tuple[Path, dict]) -> None:
    output, _ = trained
    checkpoint = json.loads((output / "trainer_state.json").read_text())["best_model_checkpoint"]
    model = AutoModelForImageClassification.from_pretrained(checkpoint)
    with safe_open(str(Path(checkpoint) / "model.safetensors"), "pt") as handle:
        stored = set(handle.keys())
    # what Trainer's plain load_state_dict expects: every weight, but those stored once (and copied on loading)
    assert stored | set(model._keys_to_ignore_on_save or []) == set(model.state_dict())
    assert not stored & set(model._keys_to_ignore_on_save or [])


class FirstStep(TrainerCallback):
    def __init__(self) -> None:
        self.first: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        self.first = state.global_step if self.first is None else self.first


def test_crashed_training_resumes_from_last_checkpoint(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    args = tiny_run_arguments(backbone, small_dataset, tmp_path, max_steps=4, eval_steps=2, save_steps=2)
    args[2].linear_probe = False
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(*args, callbacks=(Crash(),))
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "config.json").exists()
    # two later saves of step 3, each killed after the weights but before trainer_state.json
    for folder in ("incomplete-checkpoint-3", "checkpoint-3"):
        (tmp_path / folder).mkdir()
        shutil.copy(tmp_path / "checkpoint-2" / "model.safetensors", tmp_path / folder)
    first = FirstStep()
    run(*args, callbacks=(first,))
    assert first.first == 3  # steps 1-2 came from checkpoint-2, not the half-written checkpoint-3
    assert not list(tmp_path.glob("incomplete-*"))  # set aside, then removed once checkpoint-4 was saved whole
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 4


class FirstLoss(TrainerCallback):
    def __init__(self) -> None:
        self.loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.loss is None and "loss" in logs:
            self.loss = logs["loss"]


def test_one_seed_gives_one_first_loss(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    splits = datasets.load_from_disk(str(small_dataset))
    losses = []
    for name in ("first", "second"):
        args = tiny_run_arguments(backbone, small_dataset, tmp_path / name, max_steps=1, load_best_model_at_end=False)
        first = FirstLoss()
        fit(RunArguments(*args), splits=datasets.DatasetDict(splits), callbacks=(first,))
        losses.append(first.loss)
    assert losses[0] is not None and losses[0] == losses[1]  # the fresh head is drawn after seeding


@pytest.mark.parametrize("inside", [True, False])
def test_an_output_dir_in_or_around_the_dataset_is_refused(tmp_path: Path, inside: bool) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    output = dataset / "model" if inside else tmp_path
    with pytest.raises(OutputFolderError, match="--dataset"):
        run(*tiny_run_arguments(tmp_path / "no-backbone", dataset, output))
    assert {p.name for p in tmp_path.rglob("*")} == {"dataset"}  # refused before anything was read or written


def test_two_process_accelerate_run_agrees(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    command = [
        *LAUNCH,
        str(REPO_ROOT / "tests" / "ddp_worker.py"),
        str(backbone),
        str(small_dataset),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=LAUNCH_ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    assert ranks[0]["trainable_checksum"] == pytest.approx(ranks[1]["trainable_checksum"], rel=1e-6)
    assert (tmp_path / "model.safetensors").is_file()


def test_temperature_and_threshold_maths() -> None:
    rng = np.random.default_rng(0)
    true_log_odds = rng.normal(0, 1.5, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_log_odds))).astype(int)
    logits = np.stack([np.zeros(4000), 3.0 * true_log_odds], axis=1)  # three times over-confident
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)
    linear = torch.nn.Linear(4, 2)
    model = torch.nn.Module()
    model.classifier = linear
    x = torch.randn(3, 4)
    before = linear(x).detach()
    fold_temperature(model, 2.0)
    torch.testing.assert_close(linear(x).detach(), before / 2.0)
    probabilities = 1 / (1 + np.exp(-true_log_odds))
    threshold = choose_threshold(probabilities, labels, 0.9)
    achieved = (probabilities[labels == 1] >= threshold.value).mean()
    assert achieved >= 0.9 and achieved == pytest.approx(threshold.sensitivity)


def test_mobilenet_converter_matches_tfjs_and_trains(tmp_path: Path, small_dataset: Path) -> None:
    folder = materialise("mobilenet-v2-nsfwjs", tmp_path / "backbones")
    assert json.loads((folder / "provenance.json").read_text())["max_relative_error_vs_source"] < 1e-3
    model = load_model(str(folder))
    freeze_backbone(model, 2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("mobilenet_v2.layer.15.") for n in trainable)
    assert not any(n.startswith("mobilenet_v2.layer.13.") for n in trainable)
    args = tiny_run_arguments(folder, small_dataset, tmp_path / "model")
    args[0].image_size = 96
    args[0].layer_decay, args[0].source_adversary = 0.8, 0.5  # the quality levers run on this backbone too
    args[0].source_adversary_ramp = True
    args[1].mixed_label_weight = 5.0
    args[2].linear_probe = False
    results = run(*args)
    assert "test_roc_auc" in results and (tmp_path / "model" / "model.safetensors").is_file()
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Layer-wise learning-rate decay 0.8" in card and "drawn 5.0 x as often" in card
    assert "gradient-reversal" in card and "DANN's" in card
    checkpoint = next((tmp_path / "model").glob("checkpoint-*/model.safetensors"))
    with safe_open(checkpoint, "pt") as trained, safe_open(tmp_path / "model" / "model.safetensors", "pt") as saved:
        trained_names, saved_names = trained.keys(), saved.keys()
    assert any(name.startswith("source_adversary.") for name in trained_names)  # resume restores it
    assert not any("adversary" in name for name in saved_names)  # the published model is the plain classifier


def test_source_adversary_reverses_the_gradient_it_sends_back() -> None:
    torch.manual_seed(0)
    features = torch.randn(6, 4, requires_grad=True)
    sources = torch.tensor([0, 1, 2, 0, 1, 2])
    adversary = SourceAdversary(4, 3, scale=0.5)
    torch.nn.functional.cross_entropy(adversary(features), sources).backward()
    reversed_gradient, head_gradient = features.grad.clone(), adversary.head.weight.grad.clone()
    features.grad, adversary.head.weight.grad = None, None
    torch.nn.functional.cross_entropy(adversary.head(features), sources).backward()
    torch.testing.assert_close(reversed_gradient, -0.5 * features.grad)  # the backbone unlearns the source
    torch.testing.assert_close(head_gradient, adversary.head.weight.grad)  # the head itself learns it


def test_adversary_ramp_raises_the_reversal_scale_from_zero() -> None:
    model = torch.nn.Module()
    model.classifier = torch.nn.Linear(4, 2)
    attach_source_adversary(model, 3, scale=0.5)
    ramp, scales = AdversaryRamp(0.5), []
    for step in (0, 10, 20, 50, 100):
        ramp.on_step_begin(None, TrainerState(global_step=step, max_steps=100), None, model=model)
        scales.append(model.source_adversary.scale)
    assert scales[0] == 0 and scales == sorted(scales)  # no push at first, then rising
    assert scales[2] == pytest.approx(0.5 * 0.7616, abs=1e-4) and 0.49 < scales[3] < scales[4] <= 0.5


def test_layer_decay_lowers_the_rate_block_by_block(tmp_path: Path, backbone: Path) -> None:
    model = load_model(str(backbone))
    freeze_backbone(model, -1)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.05, report_to="none")
    optimizer = build_trainer(model, args, [], np.array([0, 1]), layer_decay=0.5).create_optimizer()
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert len(rate) == len(named)  # every trainable parameter is optimised, once
    assert rate[id(model.classifier.weight)] == rate[id(model.dinov2.layernorm.weight)] == 1e-3
    assert rate[id(named["dinov2.encoder.layer.11.mlp.fc1.weight"])] == pytest.approx(1e-3 * 0.5)
    assert rate[id(named["dinov2.encoder.layer.0.mlp.fc1.weight"])] == pytest.approx(1e-3 * 0.5**12)
    assert rate[id(model.dinov2.embeddings.patch_embeddings.projection.weight)] == pytest.approx(1e-3 * 0.5**13)
    assert decay[id(named["dinov2.encoder.layer.0.mlp.fc1.weight"])] == 0.05
    assert decay[id(named["dinov2.encoder.layer.0.mlp.fc1.bias"])] == 0.0


def test_mixed_label_weight_changes_what_training_draws(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    train = datasets.load_from_disk(str(small_dataset))["train"]
    sources, labels = np.asarray(train["source"]), np.asarray(train["label"])
    mixed = np.isin(sources, mixed_label_sources(sources, labels))
    assert 0 < mixed.mean() < 1
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", seed=3)

    def mixed_share(weights: np.ndarray | None) -> float:
        trainer = build_trainer(
            load_model(str(backbone)), args, list(range(len(labels))), labels, sample_weights=weights
        )
        sampler = trainer._get_train_sampler()
        drawn = np.concatenate([list(sampler) for _ in range(200)])
        return mixed[drawn].mean()

    expected = 5 * mixed.sum() / (5 * mixed.sum() + (~mixed).sum())
    assert mixed_share(None) == pytest.approx(mixed.mean())  # plain shuffle: every image once an epoch
    assert mixed_share(mixed_label_weights(mixed, 5.0)) == pytest.approx(expected, abs=0.02)


def test_gradient_accumulation_equals_one_big_batch(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    splits = datasets.load_from_disk(str(small_dataset))
    processor = AutoImageProcessor.from_pretrained(backbone)
    set_processor_size(processor, 56)
    eight = torch.utils.data.Subset(predecode(splits["train"], processor, train=True), range(8))
    labels = np.asarray(splits["train"]["label"])
    no_augmentation = DevicePixels(processor, Augmentation((1, 1), (1, 1), 0, 0, 0))

    def one_step(batch: int, accumulation: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = load_model(str(backbone))
        freeze_backbone(model, 1)
        args = TrainingArguments(
            output_dir=str(tmp_path / f"{batch}x{accumulation}"),
            max_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,  # no clipping: the step is the raw gradient
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            remove_unused_columns=False,
        )
        build_trainer(model, args, eight, labels, device_pixels=no_augmentation).train()
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    big, accumulated = one_step(8, 1), one_step(4, 2)
    torch.manual_seed(0)
    start = load_model(str(backbone)).classifier.weight.detach()
    assert (big["classifier.weight"] - start).abs().max() > 1e-3  # the step moved the head
    for name, value in big.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_class_folders_train_with_the_probes_on(backbone: Path, fixture_root: Path, tmp_path: Path) -> None:
    """Class folders are one source: the label probe runs, the source probe is left out and the card says why."""
    from covid_cxr.data.build import BuildConfig, build_dataset

    for image in (fixture_root / "images").glob("*.jpg"):
        label = "covid" if image.name.startswith("ieee8023") else "non_covid"
        (tmp_path / "folders" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, tmp_path / "folders" / label / image.name)
    build_dataset(BuildConfig(input_dir=tmp_path / "folders", output_dir=tmp_path / "dataset", max_size=96))
    metrics = run(*tiny_run_arguments(backbone, tmp_path / "dataset", tmp_path / "model"))
    assert "probe_test_roc_auc" in metrics and not any(key.startswith("probe_source") for key in metrics)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "**Shortcut check**: left out. The training data comes from one source" in card


def test_the_occlusion_test_takes_the_whole_view_the_run_scored(
    trained: tuple[Path, dict], small_dataset: Path, lungs_folder: Path
) -> None:
    """A fine-tune hands its occlusion test the test films' calibrated probabilities it already has: the figures
    equal those of scoring the whole films again (the audit's way, from the saved folder), and a view it is given
    is the one it measures (flipped probabilities flip the whole view's ROC AUC)."""
    from covid_cxr.audit.occlusion import LUNGS_HIDDEN, WHOLE
    from covid_cxr.audit.run import occlusion_test
    from covid_cxr.labels import POSITIVE
    from covid_cxr.lungs.segmenter import LungSegmenter
    from covid_cxr.modeling.inference import load_folder, softmax

    output, _ = trained
    splits, lungs = datasets.load_from_disk(str(small_dataset)), LungSegmenter.from_pretrained(lungs_folder)
    model, processor = load_folder(output)
    known = softmax(run_model(model, processor, splits["test"]["image"]).logits)[:, POSITIVE]
    again, given = (occlusion_test(output, splits, lungs, rounds=50, whole=w) for w in (None, known))
    for view in (WHOLE, LUNGS_HIDDEN):
        assert given["all"][view]["roc_auc"]["value"] == pytest.approx(again["all"][view]["roc_auc"]["value"], abs=1e-6)
    flipped = occlusion_test(output, splits, lungs, rounds=50, whole=1 - known)["all"][WHOLE]["roc_auc"]["value"]
    assert flipped == pytest.approx(1 - given["all"][WHOLE]["roc_auc"]["value"])


def test_a_fresh_head_loads_without_transformers_load_report(backbone: Path) -> None:
    """The backbone's missing head is the load's purpose: transformers' load report (a table printed into every
    fine-tune's output) is not written then, and is written again for any load after it."""
    import logging

    from transformers import AutoModelForImageClassification

    from covid_cxr.training.trainer import MODELING_LOGGER

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    reporter = logging.getLogger(MODELING_LOGGER)
    reporter.addHandler(handler)
    try:
        load_model(str(backbone))
        assert not [r for r in records if "LOAD REPORT" in r.getMessage()]
        AutoModelForImageClassification.from_pretrained(str(backbone), num_labels=2, use_safetensors=True)
        assert [r for r in records if "LOAD REPORT" in r.getMessage()]  # the level is back where it was
    finally:
        reporter.removeHandler(handler)
