"""The cross-validation yardstick: every image scored once by a model that never saw its patient group, with
thresholds and intervals that behave."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import datasets
import numpy as np

from covid_cxr.cards.cross_validation import cross_validated
from covid_cxr.cards.model import Recipe
from covid_cxr.evaluation.bootstrap import roc_auc_difference_ci
from covid_cxr.evaluation.grouped import MIXED, reported_subsets
from covid_cxr.evaluation.keys import (
    CV_FOLDS,
    CV_N,
    CV_ROC_AUC,
    CV_ROC_AUC_HIGH,
    CV_ROC_AUC_LOW,
    TEST_N,
    TEST_SENSITIVITY,
    TEST_SPECIFICITY,
)
from study.folds import OutOfFold, dataset_folds, fold_roles, summarise


def toy_dataset(n_groups: int = 60, films: int = 2, seed: int = 0) -> datasets.Dataset:
    """Patients with a few films each, from a single-class source and a mixed-label one."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        source = "mixed" if g % 2 else "one_class"
        label = int(rng.integers(2)) if source == "mixed" else 0
        rows += [{"patient_group": f"g{g}", "source": source, "label": label} for _ in range(films)]
    return datasets.Dataset.from_list(rows)


def test_rounds_partition_the_images_and_never_share_a_group() -> None:
    dataset = toy_dataset()
    folds = dataset_folds(dataset, n_folds=5)
    groups = np.asarray(dataset["patient_group"])
    tested = []
    for k in range(5):
        train, validation, test = fold_roles(folds, k)
        assert len(train) + len(validation) + len(test) == dataset.num_rows
        for a, b in ((train, validation), (train, test), (validation, test)):
            assert not set(groups[a]) & set(groups[b])
        tested += test.tolist()
    assert sorted(tested) == list(range(dataset.num_rows))


def test_each_image_is_scored_once_out_of_fold() -> None:
    dataset = toy_dataset()
    labels = np.asarray(dataset["label"])
    folds = dataset_folds(dataset, n_folds=4)
    seen_in_training: list[set[int]] = []

    def remembering(k, train, validation, test):
        seen_in_training.append(set(train.tolist()))
        return labels[validation] * 0.8 + 0.1, labels[test] * 0.8 + 0.1

    out_of_fold = OutOfFold.collect(remembering, folds, labels, target_sensitivity=0.9)
    assert not np.isnan(out_of_fold.probabilities).any()
    for k, trained in enumerate(seen_in_training):
        assert not trained & set(np.flatnonzero(folds == k).tolist())
    subsets = reported_subsets(dataset["source"], ["mixed"])
    metrics = summarise(out_of_fold, labels, dataset["patient_group"], subsets, rounds=200)
    assert metrics[MIXED]["roc_auc"] == 1.0 and metrics[MIXED]["sensitivity"] == 1.0
    assert np.isnan(metrics["one_class"]["roc_auc"])  # one class: no AUC, but specificity is defined
    assert metrics["one_class"]["specificity"] == 1.0


def test_summary_interval_brackets_the_pooled_auc() -> None:
    dataset = toy_dataset(n_groups=200)
    labels = np.asarray(dataset["label"])
    scores = np.random.default_rng(1).normal(labels * 1.0, 1.0)
    out_of_fold = OutOfFold(1 / (1 + np.exp(-scores)), np.full(len(labels), 0.5))
    subsets = reported_subsets(dataset["source"], ["mixed"])
    metrics = summarise(out_of_fold, labels, dataset["patient_group"], subsets, rounds=300)
    mixed = metrics[MIXED]
    assert mixed["roc_auc_low"] < mixed["roc_auc"] < mixed["roc_auc_high"]
    assert 0.6 < mixed["roc_auc"] < 0.9


def test_change_interval_is_zero_for_the_same_scores_and_positive_for_a_real_gain() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(400) % 2
    patients = np.arange(400) // 2
    weak, strong = rng.normal(labels * 0.5, 1.0), rng.normal(labels * 2.0, 1.0)
    assert roc_auc_difference_ci(labels, weak, weak, patients, rounds=200) == (0.0, 0.0)
    low, high = roc_auc_difference_ci(labels, strong, weak, patients, rounds=300)
    assert 0 < low < high


def test_card_quotes_the_cross_validation_only_for_the_recipe_it_measured(tmp_path: Path) -> None:
    recipe = Recipe(168, 2, 3.0, 32, 5e-4, "cosine", 0.05, 42, "fp32", 3)
    metrics = {"n": 463, "roc_auc": 0.7, "roc_auc_low": 0.65, "roc_auc_high": 0.75}
    headline = {"recipe": asdict(recipe), "backbone": "ViT-S", "folds": 5, "metrics": {MIXED: metrics, "all": metrics}}
    report = tmp_path / "quality.json"
    headline["dataset_digest"] = "abc"
    report.write_text(json.dumps({"headline": headline}))
    figures = cross_validated(str(report), replace(recipe, seed=1), "ViT-S", "abc")  # another seed: the same recipe
    assert figures[CV_ROC_AUC] == 0.7 and figures[CV_FOLDS] == 5
    assert cross_validated(str(report), replace(recipe, image_size=224), "ViT-S", "abc") == {}
    assert cross_validated(str(report), replace(recipe, max_steps=2), "ViT-S", "abc") == {}
    assert cross_validated(str(report), recipe, "MobileNetV2", "abc") == {}
    assert cross_validated(str(report), recipe, "ViT-S", "another dataset") == {}
    assert cross_validated(str(tmp_path / "missing.json"), recipe, "ViT-S", "abc") == {}
    assert cross_validated(None, recipe, "ViT-S", "abc") == {}
    assert cross_validated(str(report), replace(recipe, source_adversary=0.5), "ViT-S", "abc") == {}
    for field in ("source_adversary", "max_steps"):  # written before the field existed: measured at its default
        del headline["recipe"][field]
    report.write_text(json.dumps({"headline": headline}))
    assert cross_validated(str(report), recipe, "ViT-S", "abc") == figures
    del headline["dataset_digest"]  # written before reports named their dataset: it may be another one
    report.write_text(json.dumps({"headline": headline}))
    assert cross_validated(str(report), recipe, "ViT-S", "abc") == {}
    report.write_text(json.dumps({"probes": {}}))  # a study that has not fine-tuned the default recipe yet
    assert cross_validated(str(report), recipe, "ViT-S", "abc") == {}


FACTS = {
    "threshold": 0.6,
    TEST_SENSITIVITY: 0.9,
    TEST_SPECIFICITY: 0.5,
    TEST_N: 67.0,
    CV_ROC_AUC: None,
    CV_ROC_AUC_LOW: None,
    CV_ROC_AUC_HIGH: None,
    CV_FOLDS: None,
    CV_N: None,
}  # what the Space's "How good is this model?" reads from a Predictor's facts


def test_space_quotes_the_cross_validated_figure_beside_the_test_one() -> None:
    from covid_cxr.serving.wording import quality_markdown

    cv = {CV_ROC_AUC: 0.68, CV_ROC_AUC_LOW: 0.63, CV_ROC_AUC_HIGH: 0.73, CV_FOLDS: 5.0}
    quoted = quality_markdown(FACTS | cv | {CV_N: 463.0}, 0.1)
    assert "**Sensitivity 90%**" in quoted and "67 held-out test X-rays" in quoted
    assert "**0.68** (95% interval 0.63 to 0.73), from 5-fold cross-validation over 463 X-rays" in quoted
    assert "cross-validation" not in quality_markdown(FACTS, 0.1)


def test_the_reports_headline_measured_the_recipe_make_train_runs() -> None:
    """The headline `make train` hands its card (--cross_validation_report) is the yardstick's fine-tune of that
    very recipe: the fine-tune's defaults with the segmenter the Makefile gives (lungs first, in the model), so the
    card quotes it instead of warning that it measured another recipe."""
    from transformers import HfArgumentParser

    from covid_cxr.cards.cross_validation import HEADLINE, measured_other
    from covid_cxr.training.arguments import GROUPS, RunArguments
    from covid_cxr.training.run import recipe_of
    from study.whole_film import STUDY_DIR

    command = ["--dataset", "build/dataset", "--output_dir", "build/model", "--lung_segmenter", "build/lungs"]
    recipe = recipe_of(RunArguments(*HfArgumentParser(GROUPS).parse_args_into_dataclasses(args=command)))
    headline = json.loads((STUDY_DIR / "results" / "whole_film.json").read_text())[HEADLINE]
    assert recipe.focus_in_model and headline["recipe"]["focus_in_model"]
    assert measured_other(headline, recipe, headline["backbone"], headline["dataset_digest"]) is None
