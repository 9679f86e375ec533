"""Build a chest X-ray dataset: every image validated, split by patient, with a computed dataset card.

The input is a folder with one sub-folder per class (covid/, non_covid/; COVID-19, normal, positive, negative,
... too), a clone of ieee8023/covid-chestxray-dataset, or the curated layout (metadata.csv + images/). Writes a
`datasets.DatasetDict` (save_to_disk) with README.md (the dataset card), build_report.json (every skipped file and
why), intensity_histogram.png and LICENSE.md; --push_to_hub uploads all of it as parquet in one commit, after a
pre-flight check of the repo id, the token and the repo made before anything is read.

    covid-cxr build --input_dir my_xrays/ --output_dir my-dataset
    covid-cxr build --input_dir my_xrays/ --output_dir my-dataset --push_to_hub my-org/my-cxr --hub_private
    covid-cxr build --input_dir my_xrays/ --output_dir my-dataset --push_to_hub my-org/my-cxr --dry_run upload/
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.data.dedup import DEFAULT_NEAR_DUP_BITS
from covid_cxr.data.imaging import DEFAULT_MIN_SIZE
from covid_cxr.data.records import DEFAULT_VIEWS, LAYOUTS


@dataclass
class DatasetArguments:
    """Where the images come from and where the dataset goes."""

    input_dir: str = field(
        metadata={"help": "Folder of class sub-folders, an ieee8023 clone, or metadata.csv + images/ (curated)."}
    )
    output_dir: str = field(
        metadata={
            "help": "Where to write the dataset: a new folder, or an earlier build (replaced once the new one is "
            "complete). It may not be, hold or lie inside --input_dir."
        }
    )
    layout: str = field(
        default="auto",
        metadata={
            "help": "How --input_dir is organised. auto: curated if it holds metadata.csv, ieee8023 if that file "
            "has the clone's columns, else folders (one sub-folder per class).",
            "choices": list(LAYOUTS),
        },
    )
    pretty_name: str | None = field(
        default=None,
        metadata={"help": "The dataset card's title; None: one naming the input's layout."},
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "Hub dataset repo (org/name) to upload the dataset to, in one commit."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    dry_run: str | None = field(
        default=None,
        metadata={
            "help": "With --push_to_hub: write exactly the files the commit would upload into this folder "
            "instead (no token or network needed)."
        },
    )
    strict: bool = field(
        default=False,
        metadata={"help": "Exit with status 1 (after writing everything) when any metadata row is invalid."},
    )


@dataclass
class SplitArguments:
    """What is kept and how it is split."""

    views: list[str] = field(
        default_factory=lambda: list(DEFAULT_VIEWS),
        metadata={"help": "View families to keep (PA, AP, frontal, lateral, other); images of no stated view stay."},
    )
    split_fractions: list[float] = field(
        default_factory=lambda: [0.7, 0.15, 0.15],
        metadata={"help": "train / validation / test fractions of the patients (steps of 0.05)."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of the patient split."})
    patients: str | None = field(
        default=None,
        metadata={
            "help": "A CSV with columns file_name (as under --input_dir, e.g. covid/a.png) and patient_id, for "
            "images whose layout names no patient (class folders): each patient's images then stay in one split. "
            "Without it such an image counts as its own patient, and the model card says so."
        },
    )
    min_size: int = field(default=DEFAULT_MIN_SIZE, metadata={"help": "Skip images with a side below this (px)."})
    max_size: int | None = field(
        default=None, metadata={"help": "Downscale images whose longer side exceeds this (px); None keeps them."}
    )
    near_dup_bits: int = field(
        default=DEFAULT_NEAR_DUP_BITS,
        metadata={"help": "pHash distance (of 256 bits) under which two images count as near-duplicates."},
    )
    num_proc: int = field(default=os.cpu_count() or 1, metadata={"help": "Processes for decoding and hashing."})


def main(
    argv: Sequence[str] | None = None, prog: str = "covid-cxr build", defaults: Mapping[str, Any] | None = None
) -> None:
    data_args, split_args = parse_arguments(
        (DatasetArguments, SplitArguments), argv, prog=prog, description=__doc__, defaults=defaults
    )
    from covid_cxr.hub import HubPreflightError, preflight  # the heavy imports after parsing: --help is quick

    if data_args.dry_run and not data_args.push_to_hub:
        sys.exit("error: --dry_run writes what --push_to_hub would upload: give --push_to_hub org/name too")
    try:
        if data_args.push_to_hub:  # before the long build: a push that cannot happen stops here
            preflight(data_args.push_to_hub, "dataset", data_args.hub_private, dry_run=bool(data_args.dry_run))
        build(data_args, split_args)
    except HubPreflightError as err:
        sys.exit(f"error: {err}")


def build(data_args: DatasetArguments, split_args: SplitArguments) -> None:
    """Build, write the card and report beside the dataset, print the counts, then push or dry-run the upload."""
    import datasets

    from covid_cxr.cards.dataset import default_title, licence_terms, render_dataset_card
    from covid_cxr.data.build import (
        DATASET_MARKER,
        HISTOGRAM_NAME,
        REPORT_NAME,
        BuildConfig,
        build_dataset,
        summary,
        write_report,
    )
    from covid_cxr.data.records import MetadataError
    from covid_cxr.data.stats import counts_table, plot_intensity_histograms, records_frame
    from covid_cxr.model_folder import CARD, LICENSE
    from covid_cxr.outputs import OutputFolderError, check_output_dir, replacing

    output_dir = Path(data_args.output_dir)
    config = BuildConfig(
        input_dir=Path(data_args.input_dir), output_dir=output_dir, layout=data_args.layout, **vars(split_args)
    )
    dry_run = Path(data_args.dry_run) if data_args.dry_run else None
    try:
        check_output_dir(output_dir, {"--input_dir": config.input_dir}, replaces=DATASET_MARKER)
        if dry_run:
            check_output_dir(dry_run, {"--input_dir": config.input_dir, "--output_dir": output_dir})
    except OutputFolderError as err:
        sys.exit(f"error: {err}")
    title = data_args.pretty_name or default_title(config)
    # Everything is written beside the old dataset and swapped in at the end: a killed build leaves it whole
    with replacing(output_dir) as staging:
        try:
            result = build_dataset(config, write_to=staging)
        except (MetadataError, FileNotFoundError) as err:  # the input as a whole cannot be read: say why, once
            sys.exit(f"error: {err}")
        write_report(result, config, staging / REPORT_NAME)
        plot_intensity_histograms(result.histograms, staging / HISTOGRAM_NAME)
        card = render_dataset_card(result, config, title, data_args.push_to_hub)
        card.save(staging / CARD)
        (staging / LICENSE).write_text(licence_terms(result), encoding="utf-8")
    result.dataset = datasets.load_from_disk(str(output_dir))

    print(counts_table(records_frame(result.records, result.splits)).to_string())
    print(summary(result, output_dir / REPORT_NAME))
    print(f"Dataset, card and report written to {output_dir}/")
    if data_args.push_to_hub:
        linked = [output_dir / name for name in (REPORT_NAME, HISTOGRAM_NAME, LICENSE)]
        upload(result.dataset, card, linked, data_args, output_dir)
    if data_args.strict and result.invalid_rows:
        sys.exit(f"--strict: {len(result.invalid_rows)} metadata row(s) are invalid (listed above); fix them")


def upload(dataset, card, linked: list[Path], data_args: DatasetArguments, output_dir: Path) -> None:
    """The one commit, pushed, or written into --dry_run's folder; a push records its id beside the dataset."""
    from covid_cxr.hub import HUB_ID_FILE, dataset_operations, dry_run_line, push_dataset, write_operations

    repo_id = data_args.push_to_hub
    with tempfile.TemporaryDirectory(prefix="covid-cxr-push-") as staging:
        operations = dataset_operations(dataset, card, linked, Path(staging))
        if data_args.dry_run:
            written = write_operations(operations, Path(data_args.dry_run))
            print(dry_run_line(written, repo_id, data_args.dry_run))
            return
        push_dataset(operations, repo_id, data_args.hub_private)
    (output_dir / HUB_ID_FILE).write_text(repo_id + "\n")
    print(f"Pushed to https://huggingface.co/datasets/{repo_id}")


if __name__ == "__main__":
    main()
