"""Hub cards rendered from templates with computed numbers (never typed by hand)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import torch
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from covid_cxr.dataset_build import FEATURES, HISTOGRAM_NAME, BuildConfig, BuildResult
from covid_cxr.dataset_stats import (
    confounding,
    counts_table,
    demographics,
    patients_per_split,
    records_frame,
    view_counts,
)
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.splits import SPLIT_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_CARD_TEMPLATE = REPO_ROOT / "dataset_card.md"

# Provenance of the public sources this project knows (see ../shared/cxr/SOURCES.md).
KNOWN_SOURCES: dict[str, dict[str, str]] = {
    "ieee8023": {
        "name": "COVID-19 Image Data Collection (ieee8023/covid-chestxray-dataset)",
        "citation": 'J. P. Cohen, P. Morrison, L. Dao, K. Roth, T. Q. Duong, M. Ghassemi, "COVID-19 Image Data '
        'Collection: Prospective Predictions Are the Future", arXiv:2006.11988 (2020)',
    },
    "figure1": {
        "name": "Figure 1 COVID-19 Chest X-ray Dataset Initiative (agchung/Figure1-COVID-chestxray-dataset)",
        "citation": 'L. Wang, Z. Q. Lin, A. Wong, "COVID-Net: a tailored deep convolutional neural network design '
        'for detection of COVID-19 cases from chest X-ray images", Sci. Rep. 10, 19549 (2020)',
    },
    "hannover": {
        "name": "COVID-19 Image Repository, Hannover Medical School (ml-workgroup/covid-19-image-repository)",
        "citation": 'H. B. Winther, H. Laser, S. Gerbel, et al., "COVID-19 Image Repository", Hannover Medical '
        "School, doi:10.25835/0090041",
    },
    "covid_cxnet": {
        "name": "COVID-CXNet image collection (armiro/COVID-CXNet)",
        "citation": 'A. Haghanifar, M. M. Majdabadi, Y. Choi, S. Deivalakshmi, S. Ko, "COVID-CXNet: Detecting '
        'COVID-19 in frontal chest X-ray images using deep learning", Multimedia Tools and Applications (2022), '
        "doi:10.1007/s11042-022-12156-z",
    },
    "nih_cxr14": {
        "name": "NIH ChestX-ray14 subset (via muhammedtalo/COVID-19)",
        "citation": 'X. Wang, Y. Peng, L. Lu, Z. Lu, M. Bagheri, R. M. Summers, "ChestX-ray8: Hospital-scale Chest '
        'X-ray Database and Benchmarks", CVPR 2017; T. Ozturk, M. Talo, et al., Comput. Biol. Med. 121:103792 '
        "(2020)",
    },
}


def hub_license_id(text: str) -> str:
    """Map a source's licence text to a Hub licence id; unversioned or custom terms become "other"."""
    match = re.search(r"CC BY(-NC)?(-SA|-ND)?\s+(\d\.\d)", text, flags=re.IGNORECASE)
    if match:
        return "cc-by" + (match.group(1) or "").lower() + (match.group(2) or "").lower() + "-" + match.group(3)
    return "unknown" if not text.strip() else "other"


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub table, without needing the optional `tabulate` dependency."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in frame.iterrows()]
    return "\n".join(lines)


def dataset_card_data(result: BuildResult, pretty_name: str) -> DatasetCardData:
    licences = sorted({hub_license_id(r.license) for r in result.records})
    return DatasetCardData(
        pretty_name=pretty_name,
        license=licences,
        task_categories=["image-classification"],
        size_categories=[size_category(len(result.records))],
        tags=["medical", "chest-x-ray", "covid-19", "radiology"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in SPLIT_NAMES],
            }
        ],
        dataset_info={
            "features": FEATURES._to_yaml_list(),
            "splits": [{"name": split, "num_examples": result.dataset[split].num_rows} for split in SPLIT_NAMES],
        },
    )


def render_dataset_card(
    result: BuildResult, config: BuildConfig, pretty_name: str = "COVID-19 chest X-rays (frontal, curated)"
) -> DatasetCard:
    """Fill ``dataset_card.md`` with the numbers of this build."""
    frame = records_frame(result.records, result.splits)
    sources = sorted(frame["source"].unique())
    licences = (
        frame.assign(license=frame["license"].replace("", "unknown (not stated by the source)"))
        .groupby(["source", "license"])
        .size()
        .rename("images")
        .reset_index()
        .set_index("source")
    )
    return DatasetCard.from_template(
        dataset_card_data(result, pretty_name),
        template_path=str(DATASET_CARD_TEMPLATE),
        pretty_name=pretty_name,
        total_images=len(result.records),
        class_names=CLASS_NAMES,
        counts_table=_markdown(counts_table(frame)),
        patients=patients_per_split(frame),
        views_table=_markdown(view_counts(frame)),
        demographics=demographics(frame),
        confounding=confounding(frame),
        licence_table=_markdown(licences),
        sources=[
            {"id": s, **KNOWN_SOURCES.get(s, {"name": s, "citation": "see the source's own documentation"})}
            for s in sources
        ],
        skipped_count=len(result.skipped),
        near_duplicate_count=len(result.near_duplicates),
        config=config,
        histogram_file=HISTOGRAM_NAME,
    )


MODEL_CARD_TEMPLATE = REPO_ROOT / "model_card.md"
_TABLE_KEYS = ("n", "roc_auc", "sensitivity", "specificity", "accuracy", "ppv", "npv", "ece")


def _metric_table(grouped: dict[str, dict[str, float]]) -> str:
    frame = pd.DataFrame({group: {k: values[k] for k in _TABLE_KEYS} for group, values in grouped.items()}).T
    frame.index.name = "subset"
    formatted = frame.apply(
        lambda col: col.map(lambda v: f"{v:.0f}" if col.name == "n" else ("n/a" if pd.isna(v) else f"{v:.3f}"))
    )
    return _markdown(formatted)


def render_model_card(
    *,
    results,
    grouped,
    baseline,
    threshold,
    mixed_sources,
    model_path,
    backbone,
    model_args,
    training_args,
    eval_args,
    splits,
    dataset,
) -> ModelCard:
    """Fill ``model_card.md`` with this run's measured metrics (test split at the stored threshold)."""
    hub_base = backbone.get("hub_equivalent") if "/" in str(model_args.model_name_or_path) else None
    eval_results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=key,
            metric_name=f"{key} ({subset})",
            metric_value=round(values[key], 4),
        )
        for split in ("test",)
        for subset, values in grouped[split].items()
        if subset in ("all", "mixed_sources")
        for key in ("roc_auc", "sensitivity", "specificity")
        if not pd.isna(values[key])
    ]
    card_data = ModelCardData(
        model_name="covid-cxr",
        license="other",
        license_name="research-only",
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=hub_base,
        datasets=[dataset] if "/" in dataset and not Path(dataset).exists() else None,
        metrics=["roc_auc", "accuracy", "sensitivity", "specificity", "f1"],
        tags=["medical", "chest-x-ray", "covid-19", "research-only", "not-for-clinical-use"],
        eval_results=eval_results,
    )
    counts = {split: splits[split].num_rows for split in ("train", "validation", "test")}
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        results=results,
        test_table=_metric_table(grouped["test"]),
        eval_table=_metric_table(grouped["eval"]),
        test=grouped["test"],
        baseline=baseline,
        threshold=threshold,
        mixed_sources=mixed_sources,
        backbone=backbone,
        model_args=model_args,
        training_args=training_args,
        eval_args=eval_args,
        counts=counts,
        dataset=dataset,
        device="GPU: " + torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({os.cpu_count()} cores)",
    )
