"""Fine-tuning with the transformers Trainer, then calibration, honest evaluation and the model card.

`train/finetune.py` parses the argument dataclasses below and calls :func:`run`. The defaults are the CPU
recipe of the README's main job; `train/configs/gpu.yaml` is the full fine-tune for a GPU.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from covid_cxr.backbones import BACKBONE_ROOT, DEFAULT_BACKBONE, provenance, resolve_model
from covid_cxr.calibration import choose_threshold, fit_temperature, fold_temperature
from covid_cxr.evaluation import MIXED, flatten, grouped_metrics, mixed_label_sources, plot_confusion, plot_roc
from covid_cxr.guard import ScopeGuard
from covid_cxr.inference import run_model, softmax
from covid_cxr.labels import CLASS_NAMES, ID2LABEL, LABEL2ID
from covid_cxr.metrics import load_cxr_metric
from covid_cxr.predecode import predecode
from covid_cxr.probes import label_probe, source_probe
from covid_cxr.transforms import Augmentation, DevicePixels, eval_transform, set_processor_size, train_transform

logger = logging.getLogger(__name__)
REPORTED = ("roc_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "ece", "brier", "n")
RUN_CONFIG = "run_config.json"


@dataclass
class ModelArguments:
    """Which backbone to start from and how much of it to train."""

    model_name_or_path: str = field(
        default=DEFAULT_BACKBONE,
        metadata={
            "help": f"Offline backbone name ({DEFAULT_BACKBONE}), a local model folder or a Hub id "
            "(facebook/dinov2-small, google/vit-base-patch16-224-in21k, microsoft/resnet-50, ...)."
        },
    )
    image_size: int | None = field(
        default=168,
        metadata={
            "help": "Square input side in px (a multiple of 14 for DINOv2); None keeps the "
            "processor's. 168 fits the 15-minute CPU budget; use 224 or 448 on a GPU."
        },
    )
    trainable_blocks: int = field(
        default=2, metadata={"help": "Train only the last N backbone blocks (+ head); -1 trains everything."}
    )
    backbone_dir: str = field(default=str(BACKBONE_ROOT), metadata={"help": "Where offline backbones are converted."})


@dataclass
class DataArguments:
    """The dataset made by train/build_dataset.py (a folder) or a Hub dataset with the same features."""

    dataset: str = field(default="build/dataset", metadata={"help": "save_to_disk folder or Hub dataset id."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (quick runs, tests)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test."})
    predecode: bool = field(
        default=True,
        metadata={
            "help": "Decode images once into uint8 tensors (cached beside the dataset) and augment them on the "
            "training device; --no_predecode decodes and augments with PIL every epoch (the slower path, "
            "for datasets larger than memory)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for pre-decoding (datasets.map num_proc)."}
    )


@dataclass
class EvaluationArguments:
    """Calibration, operating point, baselines and publishing."""

    target_sensitivity: float = field(default=0.90, metadata={"help": "Validation sensitivity the threshold targets."})
    linear_probe: bool = field(default=True, metadata={"help": "Fit the frozen-feature label and source probes."})
    early_stopping_patience: int = field(default=3, metadata={"help": "Epochs without AUC gain before stopping."})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."})
    hub_repo_id: str | None = field(default=None, metadata={"help": "Push the final model and card to this repo."})


@dataclass
class CxrTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments with this project's defaults (all still overridable)."""

    output_dir: str = field(default="build/model", metadata={"help": "Where the model and reports go."})
    num_train_epochs: float = 3.0
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    learning_rate: float = 5e-4
    optim: str = "adamw_torch_fused"
    weight_decay: float = 0.05
    warmup_steps: float = 0.1
    lr_scheduler_type: str = "cosine"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "roc_auc"
    logging_steps: float = 10
    remove_unused_columns: bool = False
    ddp_find_unused_parameters: bool | None = False  # frozen blocks are excluded from DDP anyway
    seed: int = 42


class CxrTrainer(Trainer):
    """Trainer that turns pre-decoded uint8 batches into model inputs on the device, and whose checkpoints
    keep transformers 5.x weight names.

    `save_pretrained` writes renamed weights (e.g. DINOv2's `attention.q_proj`) back in their 4.x names for
    the Hub, but Trainer reloads checkpoints (resume, best model) with a plain `load_state_dict`, which then
    silently skips those weights. Checkpoints saved in the model's own names reload exactly.
    """

    def __init__(self, *args, device_pixels: DevicePixels | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device_pixels = device_pixels

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.device_pixels is not None:
            inputs = {**inputs, "pixel_values": self.device_pixels(inputs["pixel_values"], train=model.training)}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained = partial(type(model).save_pretrained, model, save_original_format=False)
        try:
            super()._save(output_dir, state_dict)
        finally:
            del model.save_pretrained


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    path = Path(data_args.dataset)
    if path.exists():
        splits = datasets.load_from_disk(str(path))
    elif "/" in data_args.dataset:
        splits = datasets.load_dataset(data_args.dataset)
    else:
        raise FileNotFoundError(
            f"dataset {path} not found: build it with `make data` "
            "(python train/build_dataset.py --output_dir build/dataset)"
        )
    missing = {"train", "validation", "test"} - set(splits)
    if missing:
        raise ValueError(f"{data_args.dataset} lacks split(s) {sorted(missing)}")
    names = splits["train"].features["label"].names
    if tuple(names) != CLASS_NAMES:
        raise ValueError(f"{data_args.dataset}: label names {names} differ from {list(CLASS_NAMES)}")
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_eval_samples),
    ):
        if limit is not None:
            splits[split] = splits[split].shuffle(seed=0).select(range(min(limit, splits[split].num_rows)))
    return splits


def prepare_inputs(
    splits: datasets.DatasetDict,
    processor,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, DevicePixels | None]:
    """Train and validation data for Trainer: pre-decoded tensors (+ device transform) or PIL transforms."""
    augmentation = Augmentation()
    if not data_args.predecode:
        splits["train"].set_transform(train_transform(processor, augmentation, training_args.seed))
        splits["validation"].set_transform(eval_transform(processor))
        return splits["train"], splits["validation"], None
    with training_args.main_process_first(desc="pre-decoding images"):
        train = predecode(splits["train"], processor, True, data_args.preprocessing_num_workers, "Train")
        validation = predecode(splits["validation"], processor, False, data_args.preprocessing_num_workers, "Val")
    return train, validation, DevicePixels(processor, augmentation)


def freeze_backbone(model: PreTrainedModel, trainable_blocks: int) -> None:
    """Freeze the backbone except its last `trainable_blocks` blocks and whatever follows them (final norm)."""
    if trainable_blocks < 0:
        return
    blocks = max((m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)), key=len)
    keep = {id(p) for block in list(blocks)[len(blocks) - trainable_blocks :] for p in block.parameters()}
    last_block_param = id(list(blocks[-1].parameters())[-1])
    after_blocks = False
    for parameter in model.base_model.parameters():
        parameter.requires_grad = id(parameter) in keep or after_blocks
        after_blocks = after_blocks or id(parameter) == last_block_param


def weighted_cross_entropy(train_labels: np.ndarray):
    """Class-balanced loss: each class weighs n / (2 * count), so the minority class is not ignored."""
    counts = np.bincount(train_labels, minlength=len(CLASS_NAMES))
    weights = torch.tensor(len(train_labels) / (len(CLASS_NAMES) * np.maximum(counts, 1)), dtype=torch.float32)

    def loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"].float()
        return F.cross_entropy(logits, labels, weight=weights.to(logits.device))

    return loss, weights.tolist()


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([e["labels"] for e in examples]),
    }


def metrics_for_trainer(metric):
    def compute(prediction: EvalPrediction) -> dict[str, float]:
        probabilities = softmax(prediction.predictions)[:, LABEL2ID["covid"]]
        values = metric.compute(predictions=probabilities, references=prediction.label_ids, threshold=0.5)
        return {k: values[k] for k in ("roc_auc", "accuracy", "brier")}

    return compute


def load_model(model_path: str, **kwargs) -> PreTrainedModel:
    """The backbone with a fresh two-class head (safetensors only); kwargs go to `from_pretrained`."""
    return AutoModelForImageClassification.from_pretrained(
        model_path,
        num_labels=len(CLASS_NAMES),
        id2label=ID2LABEL,
        label2id=LABEL2ID,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        **kwargs,
    )


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    eval_args: EvaluationArguments,
    training_args: CxrTrainingArguments,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> dict[str, float]:
    """Train, calibrate, evaluate and save; returns the flat metrics on the main process (empty elsewhere)."""
    output_dir = Path(training_args.output_dir)
    model_path = resolve_model(model_args.model_name_or_path, Path(model_args.backbone_dir))
    splits = load_splits(data_args)
    processor = AutoImageProcessor.from_pretrained(model_path)
    if model_args.image_size:
        set_processor_size(processor, model_args.image_size)
    model = load_model(model_path)
    freeze_backbone(model, model_args.trainable_blocks)

    train_labels = np.asarray(splits["train"]["label"])
    loss_func, class_weights = weighted_cross_entropy(train_labels)
    train_data, eval_data, device_pixels = prepare_inputs(splits, processor, data_args, training_args)

    if training_args.process_index == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        resolved = {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "evaluation": asdict(eval_args),
            "training": training_args.to_dict(),
            "class_weights": class_weights,
            "model_path": model_path,
        }
        (output_dir / RUN_CONFIG).write_text(json.dumps(resolved, indent=2, default=str) + "\n")

    trainer = CxrTrainer(
        model=model,
        args=training_args,
        data_collator=collate,
        train_dataset=train_data,
        eval_dataset=eval_data,
        device_pixels=device_pixels,
        processing_class=processor,
        compute_loss_func=loss_func,
        compute_metrics=metrics_for_trainer(load_cxr_metric()),
        callbacks=[EarlyStoppingCallback(eval_args.early_stopping_patience), *callbacks],
    )
    last_checkpoint = get_last_checkpoint(str(output_dir)) if eval_args.resume and output_dir.is_dir() else None
    resume_from = training_args.resume_from_checkpoint or last_checkpoint
    if resume_from:
        logger.warning("Resuming from %s", resume_from)
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    if not trainer.is_world_process_zero():
        return {}

    for split in ("train", "validation"):
        splits[split].reset_format()
    finished = trainer.accelerator.unwrap_model(trainer.model)
    return finalise(finished, processor, splits, model_path, model_args, data_args, eval_args, training_args, trainer)


def finalise(
    model: PreTrainedModel,
    processor,
    splits: datasets.DatasetDict,
    model_path: str,
    model_args: ModelArguments,
    data_args: DataArguments,
    eval_args: EvaluationArguments,
    training_args: CxrTrainingArguments,
    trainer: Trainer,
) -> dict[str, float]:
    """Calibrate on validation, choose the threshold, measure everything, save the model folder and card."""
    from covid_cxr.cards import render_model_card

    output_dir = Path(training_args.output_dir)
    metric = load_cxr_metric()
    positive = LABEL2ID["covid"]
    batch = training_args.per_device_eval_batch_size
    val, test = splits["validation"], splits["test"]
    val_labels, test_labels = np.asarray(val["label"]), np.asarray(test["label"])
    mixed = mixed_label_sources(
        list(splits["train"]["source"]) + list(val["source"]) + list(test["source"]),
        list(splits["train"]["label"]) + list(val_labels) + list(test_labels),
    )

    val_out = run_model(model, processor, val["image"], batch, desc="Validation", scope=True)
    test_out = run_model(model, processor, test["image"], batch, desc="Test", scope=True)
    temperature = fit_temperature(val_out.logits, val_labels)
    fold_temperature(model, temperature)
    val_probs = softmax(val_out.logits / temperature)[:, positive]
    test_probs = softmax(test_out.logits / temperature)[:, positive]
    threshold = choose_threshold(val_probs, val_labels, eval_args.target_sensitivity)

    model.config.calibration_temperature = temperature
    model.config.decision_threshold = threshold.value
    model.config.threshold_target_sensitivity = threshold.target_sensitivity
    model.config.threshold_validation_sensitivity = threshold.sensitivity
    model.config.threshold_validation_specificity = threshold.specificity
    model.config.backbone_description = provenance(model_path)["description"]
    model.config.training_dataset = data_args.dataset
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    guard = ScopeGuard.fit(val_out.scope)
    guard.save(output_dir)

    grouped = {
        "eval": grouped_metrics(metric, val_probs, val_labels, list(val["source"]), threshold.value, mixed),
        "test": grouped_metrics(metric, test_probs, test_labels, list(test["source"]), threshold.value, mixed),
    }
    results: dict[str, float] = {
        "temperature": temperature,
        "threshold": threshold.value,
        "scope_guard_test_false_reject_rate": float((guard.scores(test_out.scope) > guard.threshold).mean()),
    }
    trainer.save_metrics("calibration", results, combined=True)
    for split, values in grouped.items():
        flat = flatten(split, values, REPORTED)
        trainer.log_metrics(split, flat)
        trainer.save_metrics(split, flat, combined=True)
        results |= flat

    test_mixed = np.isin(np.asarray(test["source"]), mixed)
    test_all = grouped["test"]["all"]
    plot_roc(
        {
            "validation": (val_labels, val_probs),
            "test": (test_labels, test_probs),
            f"test, {MIXED}": (test_labels[test_mixed], test_probs[test_mixed]),
        },
        (1 - test_all["specificity"], test_all["sensitivity"]),
        output_dir / "roc_curve.png",
    )
    plot_confusion(
        test_labels,
        (test_probs >= threshold.value).astype(int),
        CLASS_NAMES,
        threshold.value,
        output_dir / "confusion_matrix.png",
    )

    baseline = {}
    if eval_args.linear_probe:
        baseline = probe_baseline(model_path, processor, splits, mixed, eval_args, metric, batch)
        trainer.save_metrics("probe", baseline, combined=True)
        results |= baseline

    card = render_model_card(
        results=results,
        grouped=grouped,
        baseline=baseline,
        threshold=threshold,
        mixed_sources=mixed,
        model_path=model_path,
        backbone=provenance(model_path),
        model_args=model_args,
        training_args=training_args,
        eval_args=eval_args,
        splits=splits,
        dataset=data_args.dataset,
    )
    card.save(output_dir / "README.md")
    if eval_args.hub_repo_id:
        from covid_cxr.hub import push_model

        push_model(output_dir, eval_args.hub_repo_id)
    return results


def probe_baseline(
    model_path: str,
    processor,
    splits: datasets.DatasetDict,
    mixed: list[str],
    eval_args: EvaluationArguments,
    metric,
    batch: int,
) -> dict[str, float]:
    """Frozen pretrained features + logistic regression: the label baseline and the source (shortcut) probe."""
    frozen = load_model(model_path)
    features = {
        split: run_model(frozen, processor, splits[split]["image"], batch, desc=f"Probe features ({split})").features
        for split in ("train", "validation", "test")
    }
    labels = {split: np.asarray(splits[split]["label"]) for split in features}
    val_probs, test_probs = label_probe(features["train"], labels["train"], features["validation"], features["test"])
    threshold = choose_threshold(val_probs, labels["validation"], eval_args.target_sensitivity)
    sources = list(splits["test"]["source"])
    grouped = grouped_metrics(metric, test_probs, labels["test"], sources, threshold.value, mixed)
    flat = {
        k: v
        for k, v in flatten("probe_test", grouped, REPORTED).items()
        if k.startswith(
            ("probe_test_roc", "probe_test_sens", "probe_test_spec", "probe_test_acc", f"probe_test_{MIXED}_")
        )
    }
    shortcut = source_probe(features["train"], list(splits["train"]["source"]), features["test"], sources)
    return flat | {f"probe_{k}": v for k, v in shortcut.items()}
