"""The dataset card: `dataset_card.md` filled with the figures of one build, and the licence file it links to."""

from __future__ import annotations

import re

import pandas as pd
from huggingface_hub import DatasetCard, DatasetCardData

from covid_cxr.cards.facts import KNOWN_SOURCES, DataFacts, data_facts
from covid_cxr.cards.markdown import TEMPLATES, markdown_table
from covid_cxr.data.build import FEATURES, HISTOGRAM_NAME, BuildConfig, BuildResult
from covid_cxr.data.records import detect_layout
from covid_cxr.data.splits import SPLIT_NAMES
from covid_cxr.data.stats import (
    confounding,
    counts_table,
    demographics,
    patients_per_split,
    records_frame,
    view_counts,
)
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.model_folder import LICENSE


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


def dataset_card_data(result: BuildResult, pretty_name: str) -> DatasetCardData:
    licences = sorted({hub_license_id(r.license) for r in result.records})
    sizes = {split: result.dataset[split].data.nbytes for split in SPLIT_NAMES}
    return DatasetCardData(
        pretty_name=pretty_name,
        license=licences,
        license_link=LICENSE if "other" in licences else None,
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
            "splits": [
                {"name": split, "num_bytes": sizes[split], "num_examples": result.dataset[split].num_rows}
                for split in SPLIT_NAMES
            ],
            "dataset_size": sum(sizes.values()),
        },
    )


# The card's title and the words for where the images came from, per input layout
LAYOUT_WORDS: dict[str, tuple[str, str]] = {
    "curated": ("COVID-19 chest X-rays (frontal, curated)", "a curated layout (metadata.csv + images/)"),
    "ieee8023": (
        "COVID-19 chest X-rays (ieee8023/covid-chestxray-dataset, frontal)",
        "a clone of ieee8023/covid-chestxray-dataset",
    ),
    "folders": ("Chest X-rays, COVID-19 and non-COVID (class folders)", "a local folder of class sub-folders"),
}


def layout_of(config: BuildConfig) -> str:
    return detect_layout(config.input_dir) if config.layout == "auto" else config.layout


def default_title(config: BuildConfig) -> str:
    return LAYOUT_WORDS[layout_of(config)][0]


def facts_of(result: BuildResult) -> DataFacts:
    return data_facts(
        [r.source for r in result.records], [r.label for r in result.records], [r.license for r in result.records]
    )


def render_dataset_card(
    result: BuildResult, config: BuildConfig, pretty_name: str | None = None, hub_id: str | None = None
) -> DatasetCard:
    """Fill ``dataset_card.md`` with the numbers of this build; what it says of the sources, views and ages follows
    the data; `hub_id` is where it will be pushed, for the usage example."""
    pretty_name = pretty_name or default_title(config)
    frame = records_frame(result.records, result.splits)
    sources = sorted(frame["source"].unique())
    return DatasetCard.from_template(
        dataset_card_data(result, pretty_name),
        template_path=str(TEMPLATES / "dataset_card.md"),
        pretty_name=pretty_name,
        total_images=len(result.records),
        class_names=CLASS_NAMES,
        counts_table=markdown_table(counts_table(frame)),
        patients=patients_per_split(frame),
        views_table=markdown_table(view_counts(frame)),
        demographics=demographics(frame),
        confounding=confounding(frame),
        licence_table=markdown_table(licence_frame(frame)),
        sources=[
            {
                "id": s,
                **KNOWN_SOURCES.get(
                    s,
                    {
                        "name": "local images, not a public collection this project knows",
                        "citation": "as their owner asks",
                    },
                ),
            }
            for s in sources
        ],
        skipped_count=len(result.skipped),
        near_duplicate_count=len(result.near_duplicates),
        config=config,
        origin=LAYOUT_WORDS[layout_of(config)][1],
        facts=facts_of(result),
        hub_id=hub_id,
        folder_name=config.output_dir.name,
        views_stated=bool((frame["view"].str.strip() != "").any()),
        ages_known=any(d["age_known"] for d in demographics(frame).values()),
        histogram_file=HISTOGRAM_NAME,
    )


def licence_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per (source, licence text as the source states it)."""
    return (
        frame.assign(license=frame["license"].replace("", "unknown (not stated by the source)"))
        .groupby(["source", "license"])
        .size()
        .rename("images")
        .reset_index()
        .set_index("source")
    )


def licence_terms(result: BuildResult) -> str:
    """The `LICENSE.md` a card with `license: other` links to: every source's own terms, which still apply."""
    frame = records_frame(result.records, result.splits)
    facts = facts_of(result)
    citations = "\n".join(
        f"- **{s}**: {KNOWN_SOURCES[s]['name']}. Cite: {KNOWN_SOURCES[s]['citation']}."
        for s in facts.sources
        if s in KNOWN_SOURCES
    )
    if facts.public_collection:
        intro = "This dataset collects images from public sources; each image keeps its source's licence"
    else:
        intro = "Each image of this dataset keeps the licence its owner gave it"
    intro += " (the `license` column of every row, summarised below)."
    if facts.restrictive_licences:
        intro += ' Some terms are non-commercial, no-derivatives or "research purposes only".'
    if not facts.licences_stated or "" in facts.licences:
        intro += " Where no licence is stated, ask the images' owner before sharing them."
    sources = f"\n\n## Sources\n\n{citations}" if citations else ""
    return f"# Licences\n\n{intro}\n\n{markdown_table(licence_frame(frame))}{sources}\n"
