"""The images under audit: a dataset this project built (a folder or a Hub id), or any folder it can build one from
(curated layout, class folders, an ieee8023 clone), with every image it will not score listed and why.

A folder goes through the project's own dataset build (into a temporary folder), so an audit reads, validates and
groups images exactly as training would: unreadable files, lateral views and duplicates come back as refusals with
the build's reasons, and near-duplicates share a patient group. Which sources hold both classes is decided on the
whole dataset, every split, as the project's own reports do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from covid_cxr.audit.classifier import AuditError
from covid_cxr.data.build import DATASET_MARKER, PATIENT_COLUMNS, BuildConfig, build_dataset
from covid_cxr.data.records import MetadataError
from covid_cxr.evaluation.grouped import mixed_label_sources
from covid_cxr.evaluation.strata import recorded_strata
from covid_cxr.hub import is_hub_id
from covid_cxr.labels import normalise_label

ALL_SPLITS = "all"
MAX_SIDE = 1024  # a folder's films are shrunk to this (the dataset build's --max_size): the blur's cost stays bounded


@dataclass(frozen=True)
class Refusal:
    """An image the audit did not score: its file name (never a patient id) and why."""

    file_name: str
    reason: str


@dataclass
class AuditData:
    """The images to score (`image` undecoded: the audit reads each file itself and refuses what it cannot read),
    with labels as 1 = COVID-19, the mixed-label sources of the whole dataset, and the refusals so far."""

    name: str
    split: str
    images: datasets.Dataset
    labels: list[int]
    sources: list[str]
    groups: list[str]  # patient groups for the bootstrap: never written out
    mixed_sources: list[str]
    refused: list[Refusal]
    strata: dict[str, np.ndarray] = field(default_factory=dict)  # stratifier -> each row's stratum (None: unknown)


@contextmanager
def open_data(data: str, split: str = "test") -> Iterator[AuditData]:
    """The images of `data` (see the module doc); a folder's temporary build lives as long as the block."""
    path = Path(data)
    if (path / DATASET_MARKER).is_file():
        yield from_splits(data, datasets.load_from_disk(str(path)), split, [])
    elif path.is_dir():
        with tempfile.TemporaryDirectory(prefix="covid-cxr-audit-") as temporary:
            try:
                built = build_dataset(
                    BuildConfig(input_dir=path, output_dir=Path(temporary) / "data", max_size=MAX_SIDE)
                )
            except (MetadataError, ValueError) as err:
                raise AuditError(f"--data {data}: {err}") from err
            refused = [Refusal(s.path, s.reason) for s in built.skipped]
            yield from_splits(data, built.dataset, ALL_SPLITS, refused)
    elif is_hub_id(data):
        yield from_splits(data, datasets.load_dataset(data), split, [])
    else:
        raise AuditError(
            f"--data {data}: neither a dataset this project built (no {DATASET_MARKER}), nor a folder of images, "
            "nor a Hub dataset id"
        )


def from_splits(name: str, splits: datasets.DatasetDict, split: str, refused: list[Refusal]) -> AuditData:
    """The chosen split (or all of them) of a DatasetDict with at least `image` and `label` columns."""
    if split != ALL_SPLITS and split not in splits:
        raise AuditError(f"--split {split}: {name} has the splits {', '.join(splits)} (or use --split {ALL_SPLITS})")
    missing = {"image", "label"} - set(next(iter(splits.values())).column_names)
    if missing:
        raise AuditError(f"--data {name}: no {' and no '.join(sorted(missing))} column; is it an image dataset?")
    whole = datasets.concatenate_datasets(list(splits.values()))
    chosen = whole if split == ALL_SPLITS else splits[split]
    labels = covid_labels(whole, name)
    all_sources = _column(whole, "source", name)
    # one source: nothing for it to give away, and its 'mixed-label' subset would only repeat all images
    mixed = mixed_label_sources(all_sources, labels(whole)) if len(set(all_sources)) > 1 else []
    files = _column(chosen, "file_name", None) or [f"{split} row {i}" for i in range(chosen.num_rows)]
    groups = next((chosen[c] for c in PATIENT_COLUMNS if c in chosen.column_names and all(chosen[c])), files)
    return AuditData(
        name=name,
        split=split,
        images=chosen.cast_column("image", datasets.Image(decode=False)).add_column("audit_file", files),
        labels=labels(chosen),
        sources=_column(chosen, "source", name),
        groups=list(groups),
        mixed_sources=mixed,
        refused=refused,
        strata=recorded_strata(chosen),
    )


def covid_labels(dataset: datasets.Dataset, name: str) -> Callable[[datasets.Dataset], list[int]]:
    """A reader of 1 (COVID-19) / 0 labels from the dataset's own label names, whatever their spelling."""
    feature = dataset.features["label"]
    names = getattr(feature, "names", None)
    if names is None:
        raise AuditError(f"--data {name}: its label column is not a class label with names")
    classes = [normalise_label(label) for label in names]
    if "covid" not in classes:
        raise AuditError(f"--data {name}: its labels ({', '.join(names)}) hold no COVID-19 class")
    return lambda part: [int(classes[label] == "covid") for label in part["label"]]


def _column(dataset: datasets.Dataset, column: str, default: str | None) -> list[str]:
    """A string column, or `default` for every row when the dataset has none (one source: the dataset itself)."""
    if column in dataset.column_names:
        return [str(value) for value in dataset[column]]
    return [default] * dataset.num_rows if default is not None else []
