"""A training run quotes a cross-validated figure only from a report it is given, and only when that report
measured its recipe on its dataset; otherwise its card says the recipe was not cross-validated on this data."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import datasets
import pytest
from huggingface_hub import ModelCard

from covid_cxr.data.digest import dataset_digest
from covid_cxr.evaluation.grouped import ALL, MIXED
from covid_cxr.modeling.backbones import provenance
from covid_cxr.training.arguments import RunArguments
from covid_cxr.training.run import recipe_of, run
from tests.conftest import tiny_run_arguments

NOT_CROSS_VALIDATED = "This recipe was not cross-validated on this data"


def tiny_arguments(backbone: Path, dataset: Path, output_dir: Path, report: Path | None) -> tuple:
    """The tiny run of tests/conftest.py without probes, given `report` (or none)."""
    model_args, data_args, eval_args, training_args = tiny_run_arguments(backbone, dataset, output_dir)
    eval_args = dataclasses.replace(
        eval_args, linear_probe=False, cross_validation_report=str(report) if report else None
    )
    return model_args, data_args, eval_args, training_args


def write_report(path: Path, arguments: tuple, backbone: Path, digest: str) -> Path:
    """A report as study/quality.py writes its headline: the recipe, backbone and dataset it measured."""
    metrics = {"n": 40, "roc_auc": 0.71, "roc_auc_low": 0.61, "roc_auc_high": 0.81}
    headline = {
        "recipe": asdict(recipe_of(RunArguments(*arguments))),
        "backbone": str(provenance(str(backbone))["description"]),
        "dataset_digest": digest,
        "folds": 5,
        "metrics": {MIXED: metrics, ALL: metrics},
    }
    path.write_text(json.dumps({"headline": headline}))
    return path


def test_the_digest_follows_images_and_labels_not_their_split_or_order(small_dataset: Path) -> None:
    splits = datasets.load_from_disk(str(small_dataset))
    whole = datasets.concatenate_datasets(list(splits.values()))
    assert dataset_digest(splits) == dataset_digest(whole.shuffle(seed=1))
    assert dataset_digest(whole.select(range(whole.num_rows - 1))) != dataset_digest(whole)
    relabelled = whole.map(lambda row, i: {"label": 1 - row["label"]} if i == 0 else {}, with_indices=True)
    assert dataset_digest(relabelled) != dataset_digest(whole)


@pytest.mark.parametrize("report", ["none", "same dataset", "another dataset"])
def test_the_card_quotes_a_cross_validation_only_of_its_recipe_on_its_data(
    tmp_path: Path, backbone: Path, small_dataset: Path, report: str
) -> None:
    output = tmp_path / "model"
    path = None
    if report != "none":
        digest = dataset_digest(datasets.load_from_disk(str(small_dataset)))
        if report == "another dataset":
            digest = "0" * len(digest)
        path = write_report(
            tmp_path / "quality.json", tiny_arguments(backbone, small_dataset, output, None), backbone, digest
        )
    results = run(*tiny_arguments(backbone, small_dataset, output, path))
    card = ModelCard.load(output / "README.md").content
    if report == "same dataset":
        assert results["cv_mixed_sources_roc_auc"] == 0.71
        assert "Cross-validated: mixed-label ROC AUC 0.710 (95% CI 0.610-0.810), 5-fold" in card
        assert NOT_CROSS_VALIDATED not in card
    else:
        assert not any(key.startswith("cv_") for key in results)
        assert "Cross-validated" not in card
        assert NOT_CROSS_VALIDATED in card
