"""The fine-tune from start to finish: data, model, Trainer, then the report steps and the card.

`train/finetune.py` parses the argument dataclasses (covid_cxr.training.arguments) and calls :func:`run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import PartialState
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    BaseImageProcessor,
    EarlyStoppingCallback,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    enable_full_determinism,
    set_seed,
)

from covid_cxr.audit.card import card_figures
from covid_cxr.audit.report import inside_lines
from covid_cxr.audit.run import inside_test, occlusion_test
from covid_cxr.cards.cross_validation import cross_validated
from covid_cxr.cards.facts import DataFacts, data_facts
from covid_cxr.cards.model import ModelCardContext, Recipe, TrainingRun, render_model_card, research_only_terms
from covid_cxr.data.digest import dataset_digest
from covid_cxr.data.processor_size import WHOLE_FILM, check_input_side, processor_size, set_processor_size
from covid_cxr.data.sampling import mixed_label_weights
from covid_cxr.evaluation.grouped import Evaluation, mixed_label_sources
from covid_cxr.evaluation.keys import GUARD_FALSE_REJECTS, TEMPERATURE, THRESHOLD
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.lungs.segmenter import LungSegmenter, holds_segmenter
from covid_cxr.model_folder import (
    CARD,
    INSIDE_RESULTS,
    LICENSE,
    OCCLUSION_RESULTS,
    RUN_CONFIG,
    SEGMENTER_CONFIG,
    read_results,
)
from covid_cxr.modeling.backbones import provenance, resolve_backbone
from covid_cxr.modeling.calibration import Calibration, fold_temperature
from covid_cxr.modeling.lungs_first import LungsFirstForImageClassification
from covid_cxr.modeling.onnx_export import export_onnx, exportable
from covid_cxr.outputs import check_output_dir
from covid_cxr.training.adversary import (
    AdversaryRamp,
    WithSources,
    attach_source_adversary,
    detach_source_adversary,
    source_ids,
)
from covid_cxr.training.arguments import (
    CxrTrainingArguments,
    DataArguments,
    EvaluationArguments,
    ModelArguments,
    RunArguments,
)
from covid_cxr.training.checkpoints import (
    TidyCheckpoints,
    finish_run,
    plan_resume,
    run_fingerprint,
    start_run,
    up_to_date,
)
from covid_cxr.training.inputs import dataset_hub_id, load_splits, prepare_inputs
from covid_cxr.training.report import (
    ScoredSplit,
    calibrate,
    evaluate,
    fit_guard,
    lung_attention_summary,
    mixed_sources_of,
    plot_results,
    probe_baseline,
    save_model_folder,
    strict_json,
)
from covid_cxr.training.trainer import build_trainer, class_weights, freeze_backbone, load_model

logger = logging.getLogger(__name__)


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    eval_args: EvaluationArguments,
    training_args: CxrTrainingArguments,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> dict[str, float]:
    """Train, calibrate, evaluate and save; returns the flat metrics on the main process (empty elsewhere). A
    finished run with the same fingerprint (covid_cxr.training.checkpoints) is left as it is."""
    arguments = RunArguments(model_args, data_args, eval_args, training_args)
    _refuse_output_in_dataset(arguments)
    splits = load_splits(data_args)
    output_dir = Path(training_args.output_dir)
    fingerprint = run_fingerprint(arguments, splits, _backbone(model_args))
    if (
        training_args.resume != "never"
        and not training_args.resume_from_checkpoint
        and up_to_date(output_dir, fingerprint)
    ):
        logger.warning(
            "%s is up to date: this run (same dataset, arguments, backbone and code) has finished; "
            "pass --resume never to train it again",
            output_dir,
        )
        if eval_args.hub_repo_id and training_args.process_index == 0:  # a finished model can still be published
            logger.warning(eval_args.publish(output_dir))
        return _recorded_results(output_dir) if training_args.process_index == 0 else {}
    lungs = lung_segmenter(model_args)
    focus = lungs if data_args.lung_focus else None
    logger.warning(lung_focus_line(lungs, data_args))
    trainer, processor, model_path = fit(arguments, splits, callbacks, fingerprint, focus)
    if not trainer.is_world_process_zero():
        return {}

    # Calibrate, evaluate, write the model folder and its card, push
    for split in ("train", "validation"):
        splits[split].reset_format()
    finished = trainer.accelerator.unwrap_model(trainer.model)
    results = finalise(finished, processor, splits, model_path, arguments, trainer, lungs)
    finish_run(output_dir, fingerprint)
    return results


def fit(
    arguments: RunArguments,
    splits: datasets.DatasetDict,
    callbacks: tuple[TrainerCallback, ...] = (),
    fingerprint: dict | None = None,
    lungs: LungSegmenter | None = None,
) -> tuple[Trainer, BaseImageProcessor, str]:
    """Fine-tune on ``splits["train"]`` (early stopping on ``splits["validation"]``), lungs first when given the
    segmenter `lungs` (the one model of covid_cxr.modeling.lungs_first, which focuses each film in its forward),
    resuming from the newest complete checkpoint of this same run (``--resume``; `fingerprint` is the run's when the
    caller has computed it, as `run` has); returns the trainer holding the best model, the processor and the
    backbone's path."""
    model_args, data_args, training_args = arguments.model, arguments.data, arguments.training
    model_path, resume_from = _start(arguments, splits, fingerprint)

    # Seeded before the fresh head is drawn (Trainer seeds only once the model exists)
    seed = training_args.seed
    enable_full_determinism(seed) if training_args.full_determinism else set_seed(seed)
    processor = AutoImageProcessor.from_pretrained(model_path)
    set_processor_size(processor, model_args.image_size or processor_size(processor))  # the whole film, no crop
    model = load_model(model_path, lungs, model_args.trainable_blocks)
    freeze_backbone(model, model_args.trainable_blocks)
    train_labels = np.asarray(splits["train"]["label"])
    train_data, eval_data, device_pixels = prepare_inputs(splits, processor, data_args, training_args)
    train_data, sample_weights, source_callbacks = _against_sources(
        model, model_args, data_args, splits["train"], train_data
    )

    if training_args.process_index == 0:  # the resolved configuration, beside the outputs
        _write_run_config(arguments, train_labels, model_path)

    # Training, resumed from the planned checkpoint if there is one
    trainer = build_trainer(
        model,
        training_args,
        train_data,
        train_labels,
        eval_data=eval_data,
        device_pixels=device_pixels,
        processor=processor,
        callbacks=[
            EarlyStoppingCallback(arguments.evaluation.early_stopping_patience),
            TidyCheckpoints(),
            *source_callbacks,
            *callbacks,
        ],
        sample_weights=sample_weights,
        layer_decay=model_args.layer_decay,
    )
    if resume_from:
        logger.warning("Resuming from %s", resume_from)
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    detach_source_adversary(trainer.accelerator.unwrap_model(trainer.model))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    return trainer, processor, model_path


def _start(
    arguments: RunArguments,
    splits: datasets.DatasetDict,
    fingerprint: dict | None,
) -> tuple[str, str | None]:
    """Before anything trains: the output folder and input side checked, the resume planned and the run started;
    returns the backbone's path and the checkpoint to resume from (None: a fresh start)."""
    model_args, training_args = arguments.model, arguments.training
    _refuse_output_in_dataset(arguments)
    output_dir = Path(training_args.output_dir)
    model_path = _backbone(model_args)
    if model_args.image_size:  # before anything is written: a side the patches do not tile is refused
        check_input_side(model_args.image_size, getattr(AutoConfig.from_pretrained(model_path), "patch_size", None))
    if fingerprint is None:
        fingerprint = run_fingerprint(arguments, splits, model_path)
    resume_from = training_args.resume_from_checkpoint or plan_resume(
        output_dir, fingerprint, arguments.training.resume
    )
    if training_args.world_size > 1:
        PartialState().wait_for_everyone()  # every process has planned from the folder as it was
    if training_args.process_index == 0:
        start_run(output_dir, fingerprint, resume_from)
    return model_path, resume_from


def _write_run_config(arguments: RunArguments, train_labels: np.ndarray, model_path: str) -> None:
    resolved = arguments.groups() | {
        "class_weights": class_weights(train_labels).tolist(),
        "model_path": model_path,
    }
    (Path(arguments.training.output_dir) / RUN_CONFIG).write_text(json.dumps(resolved, indent=2, default=str) + "\n")


def lung_segmenter(model_args: ModelArguments) -> LungSegmenter | None:
    """The segmenter --lung_segmenter names (None when none is named), or a clear error before any work."""
    if not model_args.lung_segmenter:
        return None
    if not holds_segmenter(model_args.lung_segmenter):
        raise FileNotFoundError(
            f"--lung_segmenter {model_args.lung_segmenter}: no lung segmenter there ({SEGMENTER_CONFIG} missing); "
            "`covid-cxr train-lungs` writes one"
        )
    return LungSegmenter.from_pretrained(model_args.lung_segmenter)


def lung_focus_line(lungs: LungSegmenter | None, data_args: DataArguments) -> str:
    """The log's one line on what the model will see: lungs first whenever a segmenter is given."""
    if lungs is None:
        return "Whole film: no --lung_segmenter given, so the model is trained on the films as they are"
    if not data_args.lung_focus:
        return "Whole film (--no_lung_focus): the segmenter only measures where the model looks"
    return "Lungs first: the model finds the lungs with the given segmenter and blurs the rest of each film itself"


def _refuse_output_in_dataset(arguments: RunArguments) -> None:
    """Before any work: the run must not write into, over or around a local dataset folder (a Hub id has none)."""
    if Path(arguments.data.dataset).exists():
        check_output_dir(arguments.training.output_dir, {"--dataset": arguments.data.dataset})


def _recorded_results(output_dir: Path) -> dict[str, float]:
    """A finished run's figures as `finalise` returned them (an undefined one NaN)."""
    return {name: math.nan if value is None else value for name, value in read_results(output_dir).items()}


def _backbone(model_args: ModelArguments) -> str:
    return resolve_backbone(model_args.model_name_or_path, Path(model_args.backbone_dir))


def _against_sources(
    model: PreTrainedModel,
    model_args: ModelArguments,
    data_args: DataArguments,
    train_split: datasets.Dataset,
    train_data: torch.utils.data.Dataset,
) -> tuple[torch.utils.data.Dataset, np.ndarray | None, list[TrainerCallback]]:
    """The source-shortcut levers: images of the mixed-label sources drawn more often (the per-image draw weights;
    None keeps the plain shuffle) and a source adversary (attached to `model`; the examples then carry their
    source; its scale's ramp, if asked for, is a Trainer callback)."""
    sources, labels = np.asarray(train_split["source"]), np.asarray(train_split["label"])
    weights, callbacks = None, []
    if data_args.mixed_label_weight != 1.0:
        mixed = np.isin(sources, mixed_label_sources(sources, labels))
        weights = mixed_label_weights(mixed, data_args.mixed_label_weight)
    if model_args.source_adversary:
        ids = source_ids(sources)
        attach_source_adversary(model, int(ids.max()) + 1, model_args.source_adversary)
        train_data = WithSources(train_data, ids)
        if model_args.source_adversary_ramp:
            callbacks.append(AdversaryRamp(model_args.source_adversary))
    return train_data, weights, callbacks


def finalise(
    model: PreTrainedModel,
    processor,
    splits: datasets.DatasetDict,
    model_path: str,
    arguments: RunArguments,
    trainer: Trainer,
    lungs: LungSegmenter | None = None,
) -> dict[str, float]:
    """score validation and test -> calibrate -> evaluate -> fold the temperature -> save the folder, ONNX, terms,
    plots -> probes -> the cross-validation the card may quote -> heat inside the lungs, occlusion test, projection,
    sex and age on test -> log every figure -> card -> push. Returns the figures."""
    eval_args, training_args = arguments.evaluation, arguments.training
    output_dir, batch = Path(training_args.output_dir), training_args.per_device_eval_batch_size
    validation = ScoredSplit.score(model, processor, splits["validation"], batch, "Validation")
    test = ScoredSplit.score(model, processor, splits["test"], batch, "Test")
    calibration = calibrate(validation, eval_args.target_sensitivity)
    guard = fit_guard(model, processor, validation, splits["train"], batch)
    evaluation = evaluate(validation, test, calibration, mixed_sources_of(splits), guard)
    fold_temperature(model, calibration.temperature)  # from here on the model answers calibrated, as saved
    backbone, hub_dataset, data = provenance(model_path), dataset_hub_id(arguments.data), training_data_facts(splits)
    save_model_folder(output_dir, model, processor, calibration, guard, config_facts(backbone, hub_dataset, data))
    onnx_check = export_checked(output_dir, model, splits["validation"]) if eval_args.onnx else {}
    (output_dir / LICENSE).write_text(research_only_terms(data), encoding="utf-8")
    plot_results(output_dir, validation, test, calibration, evaluation)
    baseline = _baseline(model, model_path, lungs, processor, splits, evaluation, arguments)
    recipe = recipe_of(arguments)
    cross_validation = cross_validated(
        eval_args.cross_validation_report, recipe, str(backbone["description"]), dataset_digest(splits)
    )
    known = test.probabilities(calibration.temperature)  # the test films whole, as the saved model answers them
    attention, occlusion = lung_figures(model, processor, splits, lungs, evaluation.mixed_sources, output_dir, known)
    sections = {"calibration": calibration_figures(calibration, evaluation), **evaluation.by_split()}
    sections |= {"probe": baseline, "lung_attention": attention, "cross_validation": cross_validation}
    results = log_sections(trainer, sections | {"onnx": onnx_check})
    context = ModelCardContext(
        evaluation=evaluation,
        calibration=calibration,
        baseline=baseline,
        lung_attention=attention,
        occlusion=occlusion,
        inside=inside_figures(splits, known, test.features, output_dir),
        cross_validation=cross_validation,
        backbone=backbone,
        base_model=_base_model(arguments.model.model_name_or_path, backbone),
        dataset_hub_id=hub_dataset,
        facts=data,
        hub_repo_id=eval_args.hub_repo_id,
        model_folder=training_args.output_dir,
        split_sizes={split: splits[split].num_rows for split in ("train", "validation", "test")},
        test_without_patient=sum(not patient for patient in splits["test"]["patient_id"]),
        guard_references=guard.reference.shape[0],
        recipe=recipe,
        run=TrainingRun.of(trainer.state, training_args.load_best_model_at_end, training_args.metric_for_best_model),
        hardware=_hardware(),
    )
    render_model_card(context).save(output_dir / CARD)
    if eval_args.hub_repo_id:
        logger.warning(eval_args.publish(output_dir))
    return results


def _baseline(
    model: PreTrainedModel,
    model_path: str,
    lungs: LungSegmenter | None,
    processor: BaseImageProcessor,
    splits: datasets.DatasetDict,
    evaluation: Evaluation,
    arguments: RunArguments,
) -> dict[str, float]:
    """The frozen-feature probes (--linear_probe), on the films as this model sees them (lungs first: focused)."""
    if not arguments.evaluation.linear_probe:
        return {}
    frozen = load_model(model_path, lungs if isinstance(model, LungsFirstForImageClassification) else None)
    target, batch = arguments.evaluation.target_sensitivity, arguments.training.per_device_eval_batch_size
    return probe_baseline(frozen, processor, splits, evaluation.mixed_sources, target, batch)


def calibration_figures(calibration: Calibration, evaluation: Evaluation) -> dict[str, float]:
    return {
        TEMPERATURE: calibration.temperature,
        THRESHOLD: calibration.threshold.value,
        GUARD_FALSE_REJECTS: evaluation.scope_false_reject_rate,
    }


def config_facts(backbone: dict[str, object], hub_dataset: str | None, data: DataFacts) -> dict[str, object]:
    """What config.json records beside the weights, for the Space to say of the model as the card does."""
    return {
        "backbone_description": str(backbone["description"]),
        "training_dataset": hub_dataset or "a local dataset",  # never a local path
        "training_sources": data.sources,
        "training_data_public_collection": data.public_collection,
        "training_data_confounded": data.confounded,
    }


def export_checked(output_dir: Path, model: PreTrainedModel, validation: datasets.Dataset) -> dict[str, object]:
    """onnx/model.onnx, checked against PyTorch on validation films (their answers' largest differences)."""
    if not exportable(model):
        logger.warning("No ONNX export for a %s: the Space and predict serve it through PyTorch", type(model).__name__)
        return {}
    films = validation.select(range(min(32, validation.num_rows)))["image"]
    return {k: v for k, v in export_onnx(output_dir, films).items() if k != "weights_sha256"}


def lung_figures(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    splits: datasets.DatasetDict,
    lungs: LungSegmenter | None,
    mixed_sources: list[str],
    output_dir: Path,
    whole: np.ndarray,
) -> tuple[dict[str, float], dict[str, dict]]:
    """The Grad-CAM heat inside the lungs and the occlusion test on test (written beside the model; `whole`, the
    test films' calibrated probabilities, is its whole view), when there is a segmenter to find the lungs; else
    none, said in the log."""
    if lungs is None:
        logger.warning("No --lung_segmenter: the card leaves out the heat inside the lungs and the occlusion test")
        return {}, {}
    attention = lung_attention_summary(model, processor, splits["test"], lungs, mixed_sources)
    occlusion = card_figures(occlusion_test(output_dir, splits, lungs, whole=whole))
    (output_dir / OCCLUSION_RESULTS).write_text(json.dumps(occlusion, indent=2) + "\n", encoding="utf-8")
    return attention, occlusion


def inside_figures(splits: datasets.DatasetDict, whole: np.ndarray, features: np.ndarray, output_dir: Path) -> str:
    """The projection, sex and age figures on test (written beside the model), in the card's words."""
    inside = inside_test(splits, whole, features)
    (output_dir / INSIDE_RESULTS).write_text(json.dumps(inside, indent=2) + "\n", encoding="utf-8")
    return "\n".join(inside_lines(inside["strata"], inside["projection_probe"]))


def log_sections(trainer: Trainer, sections: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each non-empty section logged and saved into all_results.json (and its own <section>_results.json)."""
    results: dict[str, float] = {}
    for name, values in sections.items():
        if values:
            trainer.log_metrics(name, values)
            trainer.save_metrics(name, strict_json(values), combined=True)
            results |= values
    return results


def training_data_facts(splits: datasets.DatasetDict) -> DataFacts:
    """What the card may say of the data: sources, labels and licences of every split."""
    rows = datasets.concatenate_datasets(
        [splits[name].select_columns(["source", "label", "license"]) for name in splits]
    )
    return data_facts(rows["source"], [CLASS_NAMES[label] for label in rows["label"]], rows["license"])


def recipe_of(arguments: RunArguments) -> Recipe:
    """What the card and the study record of a run's recipe (the cross-validation it may quote must match it)."""
    model_args, data_args, eval_args, training_args = (
        arguments.model,
        arguments.data,
        arguments.evaluation,
        arguments.training,
    )
    scheduler = training_args.lr_scheduler_type
    return Recipe(
        image_size=model_args.image_size,
        framing=WHOLE_FILM,
        trainable_blocks=model_args.trainable_blocks,
        epochs=training_args.num_train_epochs,
        max_steps=training_args.max_steps,
        batch_size=training_args.per_device_train_batch_size,
        learning_rate=training_args.learning_rate,
        scheduler=str(getattr(scheduler, "value", scheduler)),  # the enum's name would read "SchedulerType.COSINE"
        weight_decay=training_args.weight_decay,
        seed=training_args.seed,
        precision="bf16" if training_args.bf16 else ("fp16" if training_args.fp16 else "fp32"),
        early_stopping_patience=eval_args.early_stopping_patience,
        lung_focus=data_args.lung_focus and bool(model_args.lung_segmenter),
        focus_in_model=data_args.lung_focus and bool(model_args.lung_segmenter),
        layer_decay=model_args.layer_decay,
        mixed_label_weight=data_args.mixed_label_weight,
        source_adversary=model_args.source_adversary,
        source_adversary_ramp=bool(model_args.source_adversary and model_args.source_adversary_ramp),
    )


def _base_model(name_or_path: str, backbone: dict[str, object]) -> str | None:
    """The Hub repo the weights derive from: recorded for an offline backbone, else the Hub id trained from."""
    if "base_model" in backbone:
        return backbone["base_model"]  # type: ignore[return-value]
    return name_or_path if not Path(name_or_path).exists() and "/" in name_or_path else None


def _hardware() -> str:
    return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
