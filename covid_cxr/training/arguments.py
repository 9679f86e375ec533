"""The argument dataclasses of `train/finetune.py`, parsed by `HfArgumentParser` (CLI, JSON or YAML).

The defaults are the CPU recipe of the README's main job; `train/configs/gpu.yaml` is the full fine-tune.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments

from covid_cxr.hub import HubArguments
from covid_cxr.modeling.backbones import DEFAULT_BACKBONE
from covid_cxr.modeling.backbones.cache import backbone_root


@dataclass
class ModelArguments:
    """Which backbone to start from, whether a lung segmenter joins it (lungs first), and how much of it to train."""

    _argument_group_name = "model"  # the --help section (HfArgumentParser)

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
            "help": "Square input side in px (a multiple of 14 for DINOv2) that the whole film is squashed "
            "to (never centre-cropped: a crop cuts the lung edges); None keeps the processor's side. 168 fits "
            "the 15-minute CPU budget; use 224 or 448 on a GPU."
        },
    )
    lung_segmenter: str | None = field(
        default=None,
        metadata={
            "help": "Lung segmenter folder (`covid-cxr train-lungs`; in a checkout `make lungs`): the model is "
            "trained lungs first (see --lung_focus), and the card reports the share of the Grad-CAM heat inside the "
            "lung fields and the occlusion test on the test split. Without one the model sees whole films and "
            "those figures are left out."
        },
    )
    trainable_blocks: int = field(
        default=2, metadata={"help": "Train only the last N backbone blocks (+ head); -1 trains everything."}
    )
    layer_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise learning-rate decay: the head trains at --learning_rate and each block at this "
            "times the rate of the block above it, so the pretrained early layers move least (0.65-0.8 is usual "
            "with --trainable_blocks -1); 1 gives every trained layer the same rate."
        },
    )
    source_adversary: float = field(
        default=0.0,
        metadata={
            "help": "Domain-adversarial training against the source shortcut: a source classifier on the label "
            "head's input learns through a gradient-reversal layer scaled by this value, pushing the trained "
            "blocks towards features that do not tell the hospital (training only; the saved model is the plain "
            "classifier). 0 turns it off."
        },
    )
    source_adversary_ramp: bool = field(
        default=False,
        metadata={
            "help": "Raise the adversary's reversal scale from 0 to --source_adversary along DANN's schedule "
            "(2 / (1 + exp(-10 p)) - 1 at training progress p), so the early steps learn the label before the "
            "features are pushed away from the source."
        },
    )
    backbone_dir: str = field(
        default_factory=lambda: str(backbone_root()),
        metadata={"help": "Where offline backbones are converted: the user cache ($COVID_CXR_CACHE moves it)."},
    )


@dataclass
class DataArguments:
    """The dataset made by `covid-cxr build` (a folder) or a Hub dataset with the same features."""

    _argument_group_name = "data"

    dataset: str = field(
        metadata={
            "help": "A `covid-cxr build` output folder (save_to_disk) or a Hub dataset id with the same features."
        }
    )
    dataset_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id that the model card names as its training data; None: the id the local dataset "
            "was pushed to (recorded by build_dataset.py --push_to_hub), or --dataset itself when it is a Hub id."
        },
    )
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
    lung_focus: bool = field(
        default=True,
        metadata={
            "help": "Lungs first whenever --lung_segmenter is given: the saved model is one transformers model that "
            "finds the lung fields with that segmenter (frozen, inside it) and blurs everything outside them before "
            "classifying, in training (after augmentation) and in every use, `pipeline()` included. --no_lung_focus "
            "trains the plain DINOv2 classifier on whole films even with a segmenter (which then only measures where "
            "it looks). Without a segmenter the model always sees the whole film."
        },
    )
    mixed_label_weight: float = field(
        default=1.0,
        metadata={
            "help": "Draw training images of the sources that hold both labels this many times as often as the "
            "others (weighted sampling with replacement; the class-weighted loss is unchanged), so the images where "
            "the source gives the label away count less; 1 keeps the plain shuffle."
        },
    )


@dataclass
class EvaluationArguments(HubArguments):
    """Calibration, operating point, baselines, early stopping and publishing."""

    _argument_group_name = "evaluation and publishing"

    target_sensitivity: float = field(default=0.90, metadata={"help": "Validation sensitivity the threshold targets."})
    linear_probe: bool = field(default=True, metadata={"help": "Fit the frozen-feature label and source probes."})
    cross_validation_report: str | None = field(
        default=None,
        metadata={
            "help": "A cross-validation report (in the source repository `make whole-film` writes "
            "study/results/whole_film.json, which `make train` passes, and `make quality` writes "
            "study/results/quality.json): when it measured this run's recipe, backbone and dataset, the card and the "
            "Space quote its mixed-label ROC AUC and CI beside the test split's. Without one the card says the recipe "
            "was not cross-validated on this data."
        },
    )
    early_stopping_patience: int = field(default=3, metadata={"help": "Epochs without AUC gain before stopping."})
    onnx: bool = field(
        default=True,
        metadata={
            "help": "Export the calibrated model as onnx/model.onnx (the layout transformers.js and Optimum read; "
            "a lungs-first model's whole forward, segmenter and focus included), checked against PyTorch; the Space "
            "and `covid-cxr predict` then run it. --no_onnx skips it."
        },
    )


# Trainer's own Hub flags, which this project does not honour, and why: hidden from --help, refused when given
REFUSED_TRAINER_FLAGS = {
    "push_to_hub": "it would upload the uncalibrated Trainer checkpoints; use --hub_repo_id org/name",
    "hub_model_id": "use --hub_repo_id org/name, which pushes the calibrated model folder and its card",
    "hub_strategy": "the calibrated model is pushed once, at the end (--hub_repo_id)",
    "hub_token": "log in with `hf auth login` or set HF_TOKEN (a token on the command line lands in shell history)",
    "hub_private_repo": "use --hub_private",
    "hub_always_push": "the calibrated model is pushed once, at the end (--hub_repo_id)",
    "hub_revision": "the model is pushed to the main branch of --hub_repo_id",
}


@dataclass
class CxrTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments with this project's CPU recipe as defaults (all still overridable)."""

    _argument_group_name = "training (transformers.TrainingArguments, with this project's defaults)"

    output_dir: str = field(metadata={"help": "Where the model folder, its card, the reports and the checkpoints go."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs (early stopping may end sooner)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training images per device per step."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation images per device per step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate of the head (AdamW)."})
    optim: str = field(default="adamw_torch_fused", metadata={"help": "Optimizer (transformers' OptimizerNames)."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Linear warm-up: steps (an integer) or a share of all steps (below 1)."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warm-up."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on validation (no/steps/epoch)."})
    save_strategy: str = field(
        default="epoch", metadata={"help": "When to checkpoint (no/steps/epoch/best); a crashed run resumes from it."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one always among them)."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "End with the best checkpoint by --metric_for_best_model, not the last."}
    )
    metric_for_best_model: str | None = field(
        default="roc_auc", metadata={"help": "Validation metric that picks the best checkpoint."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False: the data collator needs the dataset's image columns."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP's unused-parameter search (off: frozen blocks are excluded anyway)."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the head's initialisation, the shuffle and augmentation."})
    resume: Literal["auto", "restart_on_change", "never"] = field(
        default="auto",
        metadata={
            "help": "What to do with the checkpoints already in --output_dir. auto: resume the newest complete one "
            "if this same run wrote it (same dataset, arguments, backbone and covid_cxr code, recorded in "
            "run_fingerprint.json), do nothing when that run has finished, and stop, saying what changed, when "
            "they belong to another run; restart_on_change: the same, but start a changed run over (its old "
            "checkpoints removed) instead of stopping, as `make train` does; never: always start over, removing "
            "the old checkpoints, even when the run has finished. --resume_from_checkpoint PATH overrides all three."
        },
    )

    def __post_init__(self) -> None:
        # Trainer's own push uploads uncalibrated checkpoints and a pickled training_args.bin: one way only.
        if self.push_to_hub or self.hub_model_id:
            raise ValueError(f"--push_to_hub/--hub_model_id are not used: {REFUSED_TRAINER_FLAGS['push_to_hub']}")
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; without one torch warns every epoch
        super().__post_init__()


GROUPS = (ModelArguments, DataArguments, EvaluationArguments, CxrTrainingArguments)  # the parser fills them in order


@dataclass
class RunArguments:
    """A fine-tune's four argument groups, passed whole: `RunArguments(*parser.parse_args_into_dataclasses())` for
    a parser of GROUPS."""

    model: ModelArguments
    data: DataArguments
    evaluation: EvaluationArguments
    training: CxrTrainingArguments

    def groups(self) -> dict[str, dict]:
        """The arguments by group, as plain dicts: what run_config.json records and the fingerprint hashes."""
        return {
            "model": asdict(self.model),
            "data": asdict(self.data),
            "evaluation": asdict(self.evaluation),
            "training": self.training.to_dict(),
        }
