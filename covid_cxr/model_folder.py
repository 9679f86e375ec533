"""Every file a model folder holds, named once: what writes it and what reads it import the name from here.

A fine-tune's folder (covid-cxr finetune) holds the standard transformers files, the project's own beside them,
and, while it runs, Trainer's checkpoints; a lung segmenter's folder (covid-cxr train-lungs) holds the project's
segmenter and, in PIPELINE_FOLDER, the standard image-segmentation model. The readers here are the ones more than
one part of the package needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import CONFIG_NAME, IMAGE_PROCESSOR_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

# The standard files, as transformers names them
CONFIG = CONFIG_NAME  # config.json
WEIGHTS = SAFE_WEIGHTS_NAME  # model.safetensors
WEIGHTS_INDEX = SAFE_WEIGHTS_INDEX_NAME  # model.safetensors.index.json, when the weights are sharded
PROCESSOR = IMAGE_PROCESSOR_NAME  # preprocessor_config.json
CARD = "README.md"  # the model card (huggingface_hub's ModelCard.save)
TRAINER_STATE = "trainer_state.json"  # Trainer's, in the folder and in each checkpoint
CHECKPOINT_PREFIX = PREFIX_CHECKPOINT_DIR  # checkpoint-N
INCOMPLETE_PREFIX = "incomplete-"  # incomplete-checkpoint-N: a checkpoint a killed run left half written

# What the fine-tune writes beside them
LICENSE = "LICENSE.md"  # the terms of the data, which a card's `license_link` points to when its licence is "other"
SCOPE_GUARD = "scope_guard.safetensors"  # covid_cxr.modeling.scope_guard
RESULTS_SUFFIX = "_results.json"  # Trainer.save_metrics: <section>_results.json ...
ALL_RESULTS = "all_results.json"  # ... and, combined, every figure of a finished run
TRAIN_RESULTS = "train_results.json"
OCCLUSION_RESULTS = "occlusion_results.json"  # the occlusion test on test (covid-cxr audit's), as the card shows it
CONFORMAL = "conformal_validation.json"  # the validation films' calibrated P(covid), for prediction sets
INSIDE_RESULTS = "inside_results.json"  # projection, sex and age figures on test (covid-cxr audit's "strata")
RUN_CONFIG = "run_config.json"  # the resolved arguments (names local folders: never pushed)
FINGERPRINT = "run_fingerprint.json"  # what a checkpoint may be resumed under (covid_cxr.training.checkpoints)
ROC_CURVE = "roc_curve.png"
CONFUSION_MATRIX = "confusion_matrix.png"
ONNX_DIR = "onnx"  # the layout transformers.js and Optimum read
ONNX_MODEL = "model.onnx"
ONNX_CHECK = "export_check.json"  # what the export was checked against, and the weights it came from
FINISHED = (WEIGHTS, ALL_RESULTS)  # what a finished run leaves

# A lung segmenter's folder
SEGMENTER_CONFIG = "lung_segmenter.json"
SEGMENTER_WEIGHTS = "lung_segmenter.safetensors"
SEGMENTER_CV = "cv_results.json"  # its cross-validation, read by the fine-tune's card and the benchmarks
PIPELINE_FOLDER = "pipeline"  # the standard image-segmentation model inside it


def read_config(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CONFIG).read_text(encoding="utf-8"))


def read_results(folder: str | Path) -> dict[str, float | None]:
    """A finished run's figures (None where a figure is undefined, as all_results.json writes it); {} for a folder
    without them."""
    path = Path(folder) / ALL_RESULTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_run_config(folder: str | Path) -> dict:
    return json.loads((Path(folder) / RUN_CONFIG).read_text(encoding="utf-8"))
