"""Build the chest X-ray dataset: validated images, split by patient, with a computed dataset card.

Reads ../shared/cxr (curated layout) by default, or a covid-chestxray-dataset clone, or a folder with one
sub-folder per class. Writes a `datasets.DatasetDict` (save_to_disk) plus README.md (the dataset card),
build_report.json (every skipped file and why), intensity_histogram.png and LICENSE.md into --output_dir;
--push_to_hub uploads all of it as parquet in one commit.

    python train/build_dataset.py --input_dir ../shared/cxr --output_dir build/dataset
    python train/build_dataset.py --input_dir my_images/ --push_to_hub my-org/my-cxr-dataset
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from covid_cxr.cards.dataset import licence_terms, render_dataset_card
from covid_cxr.cards.markdown import LICENSE_FILE
from covid_cxr.data.build import (
    DATASET_MARKER,
    HISTOGRAM_NAME,
    HUB_ID_FILE,
    REPORT_NAME,
    BuildConfig,
    build_dataset,
    summary,
    write_report,
)
from covid_cxr.data.dedup import DEFAULT_NEAR_DUP_BITS
from covid_cxr.data.imaging import DEFAULT_MIN_SIZE
from covid_cxr.data.records import DEFAULT_VIEWS, LAYOUTS, MetadataError
from covid_cxr.data.stats import counts_table, plot_intensity_histograms, records_frame
from covid_cxr.hub import dataset_operations, push_dataset
from covid_cxr.outputs import OutputFolderError, check_output_dir, replacing


@dataclass
class DatasetArguments:
    """Where the images come from and where the dataset goes."""

    input_dir: str = field(
        default="../shared/cxr", metadata={"help": "Folder with metadata.csv + images, or class sub-folders."}
    )
    output_dir: str = field(
        default="build/dataset",
        metadata={"help": "Where to write the dataset: a new folder, or an earlier build (replaced once complete)."},
    )
    layout: str = field(default="auto", metadata={"help": "Input layout.", "choices": list(LAYOUTS)})
    pretty_name: str = field(default="COVID-19 chest X-rays (frontal, curated)", metadata={"help": "Card title."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub repo id (org/name) to push the dataset to."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    strict: bool = field(
        default=False,
        metadata={"help": "Exit with status 1 (after writing everything) when any metadata row is invalid."},
    )


@dataclass
class SplitArguments:
    """What is kept and how it is split."""

    views: list[str] = field(
        default_factory=lambda: list(DEFAULT_VIEWS),
        metadata={"help": "View families to keep (PA, AP, frontal, lateral, other)."},
    )
    split_fractions: list[float] = field(
        default_factory=lambda: [0.7, 0.15, 0.15],
        metadata={"help": "train / validation / test fractions (steps of 0.05)."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of the patient split."})
    min_size: int = field(default=DEFAULT_MIN_SIZE, metadata={"help": "Reject images with a side below this (px)."})
    max_size: int | None = field(
        default=None, metadata={"help": "Downscale longer sides above this (px); default: keep."}
    )
    near_dup_bits: int = field(
        default=DEFAULT_NEAR_DUP_BITS,
        metadata={"help": "pHash distance (of 256 bits) under which images are near-duplicates."},
    )
    num_proc: int = field(default=os.cpu_count() or 1, metadata={"help": "Processes for decoding and hashing."})


def main() -> None:
    parser = HfArgumentParser((DatasetArguments, SplitArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith((".json", ".yaml", ".yml")):
        config_file = os.path.abspath(sys.argv[1])
        parse = parser.parse_json_file if config_file.endswith(".json") else parser.parse_yaml_file
        data_args, split_args = parse(config_file)
    else:
        data_args, split_args = parser.parse_args_into_dataclasses()

    output_dir = Path(data_args.output_dir)
    config = BuildConfig(
        input_dir=Path(data_args.input_dir), output_dir=output_dir, layout=data_args.layout, **vars(split_args)
    )
    try:
        check_output_dir(output_dir, {"--input_dir": config.input_dir}, replaces=DATASET_MARKER)
    except OutputFolderError as err:
        sys.exit(f"error: {err}")
    # Everything is written beside the old dataset and swapped in at the end: a killed build leaves it whole
    with replacing(output_dir) as staging:
        try:
            result = build_dataset(config, write_to=staging)
        except (MetadataError, FileNotFoundError) as err:  # the input as a whole cannot be read: say why, once
            sys.exit(f"error: {err}")
        write_report(result, config, staging / REPORT_NAME)
        plot_intensity_histograms(result.histograms, staging / HISTOGRAM_NAME)
        card = render_dataset_card(result, config, data_args.pretty_name)
        card.save(staging / "README.md")
        (staging / LICENSE_FILE).write_text(licence_terms(result), encoding="utf-8")
    result.dataset = datasets.load_from_disk(str(output_dir))

    print(counts_table(records_frame(result.records, result.splits)).to_string())
    print(summary(result, output_dir / REPORT_NAME))
    print(f"Dataset, card and report written to {output_dir}/")

    if data_args.push_to_hub:
        linked = [output_dir / name for name in (REPORT_NAME, HISTOGRAM_NAME, LICENSE_FILE)]
        with tempfile.TemporaryDirectory(prefix="covid-cxr-push-") as staging:
            operations = dataset_operations(result.dataset, card, linked, Path(staging))
            push_dataset(operations, data_args.push_to_hub, data_args.private)
        (output_dir / HUB_ID_FILE).write_text(data_args.push_to_hub + "\n")
        print(f"Pushed to https://huggingface.co/datasets/{data_args.push_to_hub}")
    if data_args.strict and result.invalid_rows:
        sys.exit(f"--strict: {len(result.invalid_rows)} metadata row(s) are invalid (listed above); fix them")


if __name__ == "__main__":
    main()
