"""The Trainer and what it is built from: the model with a fresh head, the loss, the collator, the metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    Dinov2Model,
    EvalPrediction,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from covid_cxr.data.transforms import DevicePixels
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.labels import CLASS_NAMES, ID2LABEL, LABEL2ID, POSITIVE
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.inference import softmax
from covid_cxr.modeling.lungs_first import LungsFirstConfig, LungsFirstForImageClassification
from covid_cxr.training.adversary import adversary_losses, classifier_inputs

MODELING_LOGGER = "transformers.modeling_utils"  # the logger transformers' load report is written to


class CxrTrainer(Trainer):
    """Trainer that turns pre-decoded uint8 batches into model inputs on the device, whose checkpoints keep
    transformers 5.x weight names, and which holds the quality levers: training images drawn with per-image
    weights, layer-wise learning-rate decay, and a source adversary's loss when the batches carry source ids.

    `save_pretrained` writes renamed weights (e.g. DINOv2's `attention.q_proj`) back in their 4.x names for
    the Hub, but Trainer reloads checkpoints (resume, best model) with a plain `load_state_dict`, which then
    silently skips those weights. Checkpoints saved in the model's own names reload exactly.
    """

    def __init__(
        self,
        *args,
        device_pixels: DevicePixels | None = None,
        sample_weights: np.ndarray | None = None,
        layer_decay: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.device_pixels = device_pixels
        self.sample_weights = sample_weights
        self.layer_decay = layer_decay

    def _get_train_sampler(self, train_dataset=None) -> torch.utils.data.Sampler | None:
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(self.args.seed)
        weights = torch.as_tensor(self.sample_weights, dtype=torch.double)
        return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None and self.layer_decay != 1.0:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            decay_names = set(self.get_decay_parameter_names(opt_model))
            groups = layer_decay_groups(
                opt_model, decay_names, self.args.learning_rate, self.args.weight_decay, self.layer_decay
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.device_pixels is not None:
            inputs = {**inputs, "pixel_values": self.device_pixels(inputs["pixel_values"], train=model.training)}
        if "source_ids" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        sources = inputs.pop("source_ids")
        unwrapped = self.accelerator.unwrap_model(model)
        with classifier_inputs(unwrapped) as features:
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        loss = loss + step_mean(adversary_losses(unwrapped, features[0], sources), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained = partial(type(model).save_pretrained, model, save_original_format=False)
        try:
            super()._save(output_dir, state_dict)
        finally:
            del model.save_pretrained


def load_model(
    model_path: str, lungs: LungSegmenter | None = None, trainable_blocks: int = -1, **kwargs
) -> PreTrainedModel:
    """The backbone with a fresh two-class head (safetensors only); kwargs go to `from_pretrained`. With a lung
    segmenter, the lungs-first model (covid_cxr.modeling.lungs_first) over that backbone, holding the segmenter
    (sharing with it the blocks that `trainable_blocks`, as freeze_backbone reads it, leaves frozen)."""
    if lungs is not None:
        return lungs_first_model(model_path, lungs, trainable_blocks)
    with fresh_head_expected():
        return AutoModelForImageClassification.from_pretrained(
            model_path,
            num_labels=len(CLASS_NAMES),
            id2label=ID2LABEL,
            label2id=LABEL2ID,
            ignore_mismatched_sizes=True,
            use_safetensors=True,
            **kwargs,
        )


@contextmanager
def fresh_head_expected() -> Iterator[None]:
    """transformers' load report silenced while a backbone gets its fresh head: what it reports of a backbone (the
    head missing from the checkpoint, or another head's sizes) is this load's purpose, and it printed a table into
    every fine-tune's output as if something were wrong."""
    reporter = logging.getLogger(MODELING_LOGGER)
    level = reporter.level
    reporter.setLevel(logging.ERROR)
    try:
        yield
    finally:
        reporter.setLevel(level)


def lungs_first_model(model_path: str, lungs: LungSegmenter, trainable_blocks: int) -> LungsFirstForImageClassification:
    """A DINOv2 backbone and a lung segmenter as one lungs-first model: the backbone's weights, a fresh head, and
    the segmenter frozen inside, its blocks the classifier's own where those are the segmenter's (up to its bf16
    rounding) and stay frozen; refused, saying why, for another backbone or another normalisation."""
    backbone = AutoConfig.from_pretrained(model_path)
    if backbone.model_type != "dinov2":
        raise ValueError(
            f"{model_path} holds a {backbone.model_type} model: lungs first needs a DINOv2 backbone "
            "(pass --no_lung_focus to train this one on the whole film)"
        )
    processor = AutoImageProcessor.from_pretrained(model_path)
    if list(processor.image_mean) != list(lungs.config.image_mean) or list(processor.image_std) != list(
        lungs.config.image_std
    ):
        raise ValueError(f"{model_path} normalises its input otherwise than the lung segmenter it would hold")
    pretrained = Dinov2Model.from_pretrained(model_path, use_safetensors=True)
    frozen = 0 if trainable_blocks < 0 else 1 + max(backbone.num_hidden_layers - trainable_blocks, 0)
    shared = min(lungs.shared_layers(pretrained), frozen)  # hidden states: the embeddings', then each block's
    finder = lungs.finder_settings() | {"shared_modules": shared}
    head = {"id2label": ID2LABEL, "label2id": LABEL2ID, "lung_finder": finder}
    settings = {k: v for k, v in backbone.to_dict().items() if k not in ("model_type", "architectures", *head)}
    model = LungsFirstForImageClassification(LungsFirstConfig(**settings, **head))
    model.dinov2.load_state_dict(pretrained.state_dict())
    model.lungs.load_state_dict(lungs.state_dict())
    finder = model.lungs.backbone.state_dict()  # the shared blocks' one copy holds the finder's rounded weights
    model.dinov2.load_state_dict({name: finder[name] for name in model.shared_finder_weights}, strict=False)
    return model


def block_depths(model: PreTrainedModel) -> tuple[dict[int, int], int]:
    """Each parameter's depth in the network (by `id`) and the number of blocks: 0 for what comes before the
    blocks (embeddings), i for block i (1-based), blocks + 1 for what follows them (final norm, head)."""
    blocks = max((m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)), key=len)
    depths = {id(p): i for i, block in enumerate(blocks, start=1) for p in block.parameters()}
    depth = 0
    for parameter in model.parameters():
        if id(parameter) in depths:
            depth = len(blocks) + 1  # what follows the last block seen so far
        else:
            depths[id(parameter)] = depth
    return depths, len(blocks)


def freeze_backbone(model: PreTrainedModel, trainable_blocks: int) -> None:
    """Freeze the backbone except its last `trainable_blocks` blocks and whatever follows them (final norm)."""
    if trainable_blocks < 0:
        return
    depths, n_blocks = block_depths(model)
    for parameter in model.base_model.parameters():
        parameter.requires_grad = depths[id(parameter)] > max(n_blocks - trainable_blocks, 0)  # never embeddings


def layer_decay_groups(
    model: PreTrainedModel, decay_names: set[str], learning_rate: float, weight_decay: float, layer_decay: float
) -> list[dict]:
    """Optimizer groups for layer-wise learning-rate decay: the head trains at `learning_rate`, each block
    below it at `layer_decay` times the rate of the block above, so the pretrained early layers move least."""
    depths, n_blocks = block_depths(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth, decays = depths[id(parameter)], name in decay_names
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": learning_rate * layer_decay ** (n_blocks + 1 - depth),
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
    return list(groups.values())


def class_weights(train_labels: np.ndarray) -> torch.Tensor:
    """n / (2 x class count): each class carries half of the loss, so the minority class is not ignored."""
    counts = np.bincount(train_labels, minlength=len(CLASS_NAMES))
    return torch.tensor(len(train_labels) / (len(CLASS_NAMES) * np.maximum(counts, 1)), dtype=torch.float32)


def weighted_cross_entropy(weights: torch.Tensor) -> Callable:
    """Class-weighted cross-entropy, summed over the batch and divided by the number of images in the whole
    optimizer step (`num_items_in_batch`, which Trainer counts over every accumulated micro-batch and rank).

    Trainer does not divide a custom loss by the accumulation steps, so a per-micro-batch mean would make
    gradients N times too large under `gradient_accumulation_steps=N`. Without `num_items_in_batch`
    (evaluation) it is the mean over the batch.
    """

    def loss(outputs, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
        logits = outputs["logits"].float()
        per_image = F.cross_entropy(logits, labels, weight=weights.to(logits.device), reduction="none")
        return step_mean(per_image, num_items_in_batch)

    return loss


def step_mean(per_image: torch.Tensor, num_items_in_batch: int | torch.Tensor | None) -> torch.Tensor:
    """Per-image losses summed and divided by the images in the whole optimizer step (see weighted_cross_entropy);
    by the batch's own size without `num_items_in_batch`."""
    denominator = num_items_in_batch if num_items_in_batch is not None else len(per_image)
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(per_image.device)
    return per_image.sum() / denominator


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    batch = {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor([e["labels"] for e in examples]),
    }
    if "source_ids" in examples[0]:
        batch["source_ids"] = torch.tensor([e["source_ids"] for e in examples])
    return batch


def metrics_for_trainer() -> Callable[[EvalPrediction], dict[str, float]]:
    """ROC AUC (the model-selection metric), accuracy and Brier score from the local `evaluate` module."""
    metric = load_cxr_metric()

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        probabilities = softmax(prediction.predictions)[:, POSITIVE]
        values = metric.compute(predictions=probabilities, references=prediction.label_ids, threshold=0.5)
        return {k: values[k] for k in ("roc_auc", "accuracy", "brier")}

    return compute


def build_trainer(
    model: PreTrainedModel,
    args: TrainingArguments,
    train_data: torch.utils.data.Dataset,
    train_labels: np.ndarray,
    *,
    eval_data: torch.utils.data.Dataset | None = None,
    device_pixels: DevicePixels | None = None,
    processor=None,
    callbacks: Sequence[TrainerCallback] = (),
    sample_weights: np.ndarray | None = None,
    layer_decay: float = 1.0,
) -> CxrTrainer:
    """The project's Trainer: class-weighted loss, its collator, and the metrics when there is eval data;
    `sample_weights` (one per training image) replace the plain shuffle by weighted draws with replacement."""
    return CxrTrainer(
        model=model,
        args=args,
        data_collator=collate,
        train_dataset=train_data,
        eval_dataset=eval_data,
        device_pixels=device_pixels,
        sample_weights=sample_weights,
        layer_decay=layer_decay,
        processing_class=processor,
        compute_loss_func=weighted_cross_entropy(class_weights(train_labels)),
        compute_metrics=metrics_for_trainer() if eval_data is not None else None,
        callbacks=list(callbacks),
    )
