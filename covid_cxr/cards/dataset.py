"""The dataset card: `dataset_card.md` filled with the figures of one build, and the licence file it links to."""

from __future__ import annotations

import re

import pandas as pd
from huggingface_hub import DatasetCard, DatasetCardData

from covid_cxr.cards.markdown import LICENSE_FILE, TEMPLATES, markdown_table
from covid_cxr.data.build import FEATURES, HISTOGRAM_NAME, BuildConfig, BuildResult
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


def dataset_card_data(result: BuildResult, pretty_name: str) -> DatasetCardData:
    licences = sorted({hub_license_id(r.license) for r in result.records})
    sizes = {split: result.dataset[split].data.nbytes for split in SPLIT_NAMES}
    return DatasetCardData(
        pretty_name=pretty_name,
        license=licences,
        license_link=LICENSE_FILE if "other" in licences else None,
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


def render_dataset_card(
    result: BuildResult, config: BuildConfig, pretty_name: str = "COVID-19 chest X-rays (frontal, curated)"
) -> DatasetCard:
    """Fill ``dataset_card.md`` with the numbers of this build."""
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
            {"id": s, **KNOWN_SOURCES.get(s, {"name": s, "citation": "see the source's own documentation"})}
            for s in sources
        ],
        skipped_count=len(result.skipped),
        near_duplicate_count=len(result.near_duplicates),
        config=config,
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
    citations = "\n".join(
        f"- **{s}**: {KNOWN_SOURCES[s]['name']}. Cite: {KNOWN_SOURCES[s]['citation']}."
        for s in sorted(frame["source"].unique())
        if s in KNOWN_SOURCES
    )
    return (
        "# Licences\n\nThis dataset collects images from public sources; each image keeps its source's licence "
        '(the `license` column of every row). Some terms are non-commercial or "research purposes only"; '
        "use the images under the terms of their source.\n\n"
        f"{markdown_table(licence_frame(frame))}\n\n## Sources\n\n{citations}\n"
    )
