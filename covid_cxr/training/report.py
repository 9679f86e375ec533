"""The report steps after training: score a split, calibrate, evaluate, save the model folder and its plots, the
frozen-feature probes, the heat inside the lungs, and the cross-validation a card may quote.

Each step is a function over small dataclasses, so each can be tested or reused without running the others;
`covid_cxr.training.run.finalise` runs them in order, then renders the card and pushes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from transformers import BaseImageProcessor, PreTrainedModel

from covid_cxr.audit.measures import set_figures
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.grouped import MIXED, Evaluation, flatten, grouped_metrics, mixed_label_sources
from covid_cxr.evaluation.keys import ALL, PROBE, PROBE_TEST, TEST, metric_key
from covid_cxr.evaluation.plots import plot_confusion, plot_roc
from covid_cxr.evaluation.probes import label_probe, source_probe
from covid_cxr.labels import CLASS_NAMES, POSITIVE
from covid_cxr.lungs.attention import lung_attention
from covid_cxr.lungs.measures import RATIO_WARNING
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import CONFUSION_MATRIX, ROC_CURVE
from covid_cxr.modeling.calibration import (
    TEMPERATURE_BOUNDS,
    Calibration,
    choose_threshold,
    fit_temperature,
)
from covid_cxr.modeling.conformal import DEFAULT_COVERAGE, Conformal
from covid_cxr.modeling.inference import run_model, softmax
from covid_cxr.modeling.scope_guard import ScopeGuard, references
from covid_cxr.outputs import share_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredSplit:
    """One split as the fine-tuned model scored it, before calibration."""

    labels: np.ndarray
    sources: np.ndarray
    logits: np.ndarray
    scope: np.ndarray  # middle-layer features, for the scope guard
    features: np.ndarray  # penultimate features, for the projection probe
    groups: np.ndarray  # patient groups, for the bootstrap

    @classmethod
    def score(
        cls, model: PreTrainedModel, processor: BaseImageProcessor, split: datasets.Dataset, batch: int, desc: str
    ) -> ScoredSplit:
        outputs = run_model(model, processor, split["image"], batch, desc=desc, scope=True)
        labels, sources, groups = (np.asarray(split[column]) for column in ("label", "source", "patient_group"))
        return cls(labels, sources, outputs.logits, outputs.scope, outputs.features, groups)

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Calibrated P(covid) for every image."""
        return softmax(self.logits / temperature)[:, POSITIVE]


def fit_guard(
    model: PreTrainedModel, processor: BaseImageProcessor, validation: ScoredSplit, train: datasets.Dataset, batch: int
) -> ScopeGuard:
    """The scope guard on the validation films, topped up with training films (a fixed draw) when they are fewer
    than MIN_REFERENCES: a small own dataset still gets a guard that does not refuse its own kind of film."""
    order = np.random.default_rng(0).permutation(train.num_rows)

    def training(n: int) -> np.ndarray:
        films = train.select(order[:n])["image"]
        return run_model(model, processor, films, batch, desc="Scope guard references", scope=True).scope

    fitted_on = references(validation.scope, training)
    if len(fitted_on) > len(validation.scope):
        logger.info("The scope guard's %d validation films are topped up with training films", len(validation.scope))
    return ScopeGuard.fit(fitted_on)


def calibrate(validation: ScoredSplit, target_sensitivity: float) -> Calibration:
    """Fit the temperature on validation and choose the threshold on the calibrated validation probabilities (the
    caller folds the temperature into the model it saves: covid_cxr.modeling.calibration.fold_temperature)."""
    temperature = fit_temperature(validation.logits, validation.labels)
    calibrated = validation.probabilities(temperature)
    threshold = choose_threshold(calibrated, validation.labels, target_sensitivity)
    conformal = Conformal.fit(calibrated, validation.labels == POSITIVE)
    calibration = Calibration(temperature, threshold, conformal)
    if calibration.temperature_at_bound:
        logger.warning(
            "The temperature fit stopped at the edge of its range (T = %.3f, range %s-%s): the validation split "
            "(%d images) does not calibrate this model; its probabilities are not calibrated (the card says so)",
            temperature,
            *TEMPERATURE_BOUNDS,
            len(validation.labels),
        )
    return calibration


def evaluate(
    validation: ScoredSplit, test: ScoredSplit, calibration: Calibration, mixed_sources: list[str], guard: ScopeGuard
) -> Evaluation:
    """Metrics at the stored threshold, overall, per source and on the mixed-label sources."""
    metric = load_cxr_metric()

    def grouped(split: ScoredSplit) -> dict[str, dict[str, float]]:
        probabilities = split.probabilities(calibration.temperature)
        return grouped_metrics(
            metric, probabilities, split.labels, list(split.sources), calibration.threshold.value, mixed_sources
        )

    rejected = float((guard.scores(test.scope) > guard.threshold).mean())
    sets = calibration.conformal.sets(test.probabilities(calibration.temperature), DEFAULT_COVERAGE)
    covered = set_figures(sets, test.labels == POSITIVE, test.sources, test.groups, mixed_sources)
    return Evaluation(mixed_sources, grouped(validation), grouped(test), rejected, covered)


def mixed_sources_of(splits: datasets.DatasetDict) -> list[str]:
    sources = [s for split in splits.values() for s in split["source"]]
    labels = [label for split in splits.values() for label in split["label"]]
    return mixed_label_sources(sources, labels)


def strict_json(values: dict[str, object]) -> dict[str, object]:
    """NaN (an undefined metric, e.g. ROC AUC on one class) as null: JSON readers other than Python's refuse NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def save_model_folder(
    output_dir: Path,
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    calibration: Calibration,
    guard: ScopeGuard,
    facts: dict[str, str],
) -> None:
    """The calibrated model with its operating point in `config.json`, the processor and the scope guard."""
    threshold = calibration.threshold
    config = model.config
    config.calibration_temperature = calibration.temperature
    config.decision_threshold = threshold.value
    config.threshold_target_sensitivity = threshold.target_sensitivity
    config.threshold_validation_sensitivity = threshold.sensitivity
    config.threshold_validation_specificity = threshold.specificity
    for key, value in facts.items():
        setattr(config, key, value)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    guard.save(output_dir)
    if calibration.conformal is not None:
        calibration.conformal.save(output_dir)
    share_weights(output_dir)


def plot_results(
    output_dir: Path, validation: ScoredSplit, test: ScoredSplit, calibration: Calibration, evaluation: Evaluation
) -> None:
    """ROC curves (validation, test, test on the mixed-label sources) with the test operating point, and the test
    confusion matrix; the mixed-label sources and the operating point are the evaluation's own."""
    temperature, threshold = calibration.temperature, calibration.threshold.value
    val_probs, test_probs = validation.probabilities(temperature), test.probabilities(temperature)
    mixed = np.isin(test.sources, evaluation.mixed_sources)
    overall = evaluation.test[ALL]
    plot_roc(
        {
            "validation": (validation.labels, val_probs),
            "test": (test.labels, test_probs),
            f"test, {MIXED}": (test.labels[mixed], test_probs[mixed]),
        },
        (1 - overall["specificity"], overall["sensitivity"]),
        output_dir / ROC_CURVE,
    )
    decisions = (test_probs >= threshold).astype(int)
    plot_confusion(test.labels, decisions, CLASS_NAMES, threshold, output_dir / CONFUSION_MATRIX)


def probe_baseline(
    frozen: PreTrainedModel,
    processor: BaseImageProcessor,
    splits: datasets.DatasetDict,
    mixed_sources: list[str],
    target_sensitivity: float,
    batch: int,
) -> dict[str, float]:
    """Frozen pretrained features + logistic regression: the label baseline and the source (shortcut) probe; the
    latter only when the training split holds two sources or more (class folders hold one), said in the log."""
    features = {
        split: run_model(frozen, processor, splits[split]["image"], batch, desc=f"Probe features ({split})").features
        for split in ("train", "validation", "test")
    }
    labels = {split: np.asarray(splits[split]["label"]) for split in features}
    val_probs, test_probs = label_probe(features["train"], labels["train"], features["validation"], features["test"])
    threshold = choose_threshold(val_probs, labels["validation"], target_sensitivity)
    sources = list(splits["test"]["source"])
    grouped = grouped_metrics(load_cxr_metric(), test_probs, labels["test"], sources, threshold.value, mixed_sources)
    kept = ("roc_auc", "sensitivity", "specificity", "accuracy")
    flat = flatten(PROBE_TEST, {subset: grouped[subset] for subset in (ALL, MIXED) if subset in grouped}, kept)
    train_sources = list(splits["train"]["source"])
    if len(set(train_sources)) < 2:
        logger.warning("The training split has one source: the source probe, which tells sources apart, is left out")
        return flat
    shortcut = source_probe(features["train"], train_sources, features["test"], sources)
    return flat | {metric_key(PROBE, ALL, k): v for k, v in shortcut.items()}


def lung_attention_summary(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    test: datasets.Dataset,
    lungs: LungSegmenter,
    mixed_sources: list[str],
) -> dict[str, float]:
    """How much of the COVID-19 Grad-CAM heat lies inside the lung fields on the test split: the mean share and the
    median ratio (share over the lungs' share of the image), overall and on the mixed-label sources, the share of
    images where most heat lies outside, and how often the attention warning fires (covid_cxr.lungs.measures),
    overall and per source and label."""
    attention = lung_attention(model, processor, test["image"], lungs, POSITIVE, desc="Lung attention (test)")
    warned = attention.warned
    sources, labels = np.asarray(test["source"]), np.asarray([CLASS_NAMES[label] for label in test["label"]])
    subsets = {ALL: np.ones(len(sources), bool), MIXED: np.isin(sources, mixed_sources)}
    figures = {
        metric_key(TEST, ALL, "lung_attention_below_half"): float((attention.share < 0.5).mean()),
        metric_key(TEST, ALL, "lung_attention_warning_below"): RATIO_WARNING,  # the rule, beside how often it fired
    }
    for name, subset in subsets.items():
        if not subset.any():
            continue
        figures |= {
            metric_key(TEST, name, "lung_attention_mean"): float(attention.share[subset].mean()),
            metric_key(TEST, name, "lung_attention_ratio_median"): float(np.nanmedian(attention.ratio[subset])),
            metric_key(TEST, name, "lung_attention_warned"): float(warned[subset].mean()),
        }
    for source, label in sorted(set(zip(sources, labels, strict=True))):
        group = (sources == source) & (labels == label)
        figures[metric_key(TEST, f"{source}_{label}", "lung_attention_warned")] = float(warned[group].mean())
    return figures
