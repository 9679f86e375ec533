"""One record per image, whatever the input layout, in the spirit of torchxrayvision's datasets.

Three layouts are read:

* ``curated``: ``metadata.csv`` with ``file_name, label, source, patient_id, view`` (+ optional columns),
  the layout of ``../shared/cxr``;
* ``ieee8023``: the ``covid-chestxray-dataset`` ``metadata.csv`` (``patientid, finding, view, modality,
  filename, folder, license``), so a clone of that public repository can be pointed at directly;
* ``folders``: one sub-folder per class (``covid/``, ``non_covid/``, ...).

A metadata file that cannot be read as a whole (missing columns, class folders with unknown names) raises
:class:`MetadataError`. Every row is judged on its own: a wrong row (unknown label, a path that escapes the input
folder, a missing file) becomes a :class:`Skipped` entry marked ``invalid_row``, with the row number and the fix,
and a valid but unusable one (a CT image, a lateral view) a plain :class:`Skipped` entry; the rest is built.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from covid_cxr.data.imaging import SUPPORTED_SUFFIXES
from covid_cxr.labels import known_label_spellings, normalise_label

DEFAULT_VIEWS: tuple[str, ...] = ("PA", "AP", "frontal")
LAYOUTS: tuple[str, ...] = ("auto", "curated", "ieee8023", "folders")


class MetadataError(ValueError):
    """The metadata as a whole cannot be read; the message names the file and what is missing."""


@dataclass(frozen=True)
class ImageRecord:
    """What the dataset stores about one image, besides its pixels."""

    path: Path
    file_name: str  # path relative to the input root, kept to trace every example back to its file
    label: str
    patient_id: str = ""  # empty when the source does not say; such an image is its own patient
    source: str = ""
    view: str = ""  # as the source wrote it ("AP Supine", "PA", ...); empty when unknown
    sex: str = ""
    age: str = ""  # as the source wrote it ("50", "50+", "early 40s")
    finding: str = ""
    license: str = ""
    near_dup_group: str = ""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    invalid_row: bool = False  # the metadata itself is wrong (not just an image the dataset does not want)


def view_family(view: str) -> str:
    """Collapse a source's view text to PA, AP, frontal (AP/PA not stated), lateral, other or unknown."""
    text = view.strip().lower()
    if not text:
        return "unknown"
    if text.startswith("pa"):
        return "PA"
    if text.startswith("ap"):
        return "AP"
    if text.startswith("frontal"):
        return "frontal"
    if text in ("l", "ll", "rl") or "lateral" in text:
        return "lateral"
    return "other"


def detect_layout(root: Path) -> str:
    metadata = root / "metadata.csv"
    if metadata.is_file():
        header = _read_header(metadata)
        return "ieee8023" if {"patientid", "filename", "folder"} <= set(header) else "curated"
    return "folders"


def read_records(
    root: Path, layout: str = "auto", views: Sequence[str] = DEFAULT_VIEWS
) -> tuple[list[ImageRecord], list[Skipped]]:
    """Read every candidate image of ``root`` and keep those of the requested view families.

    Images whose view is not stated (plain folders) are kept: only a stated non-matching view is skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    layout = detect_layout(root) if layout == "auto" else layout
    readers = {"curated": _read_curated, "ieee8023": _read_ieee8023, "folders": _read_folders}
    if layout not in readers:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    records, skipped = readers[layout](root)
    wanted = set(views)
    kept = []
    for record in records:
        family = view_family(record.view)
        if family == "unknown" or family in wanted:
            kept.append(record)
        else:
            skipped.append(
                Skipped(record.file_name, f"view {record.view!r} ({family}) not in --views {','.join(views)}")
            )
    return kept, skipped


def _read_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a BOM (Excel) is no column name
        return next(csv.reader(handle), [])


def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a BOM (Excel) is no column name
        reader = csv.DictReader(handle)
        missing = sorted(set(required) - set(reader.fieldnames or []))
        if missing:
            raise MetadataError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(reader.fieldnames or [])}"
            )
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def _row_problem(root: Path, relative: str, raw_label: str | None = None) -> str | None:
    """Why a metadata row cannot be used as written (None when it can): escaping path, missing file, bad label."""
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        return f"path {relative!r} points outside the input folder; give it relative to {root}"
    path = root / relative
    if not path.resolve().is_relative_to(root.resolve()):
        return (
            f"{relative!r} is a symbolic link to {os.path.realpath(path)}, outside the input folder; "
            "copy the file into the folder"
        )
    if not path.is_file():
        return f"file {relative!r} does not exist"
    if raw_label is not None and normalise_label(raw_label) is None:
        return f"unknown label {raw_label!r}; use one of {known_label_spellings()}"
    return None


def _read_curated(root: Path) -> tuple[list[ImageRecord], list[Skipped]]:
    metadata = root / "metadata.csv"
    rows = _read_csv(metadata, ("file_name", "label", "source", "patient_id", "view"))
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if problem := _row_problem(root, row["file_name"], row["label"]):
            skipped.append(Skipped(row["file_name"], f"metadata.csv row {number}: {problem}", invalid_row=True))
            continue
        records.append(
            ImageRecord(
                path=root / row["file_name"],
                file_name=row["file_name"],
                label=normalise_label(row["label"]),
                patient_id=row["patient_id"],
                source=row["source"],
                view=row["view"],
                sex=row.get("sex", ""),
                age=row.get("age", ""),
                finding=row.get("finding", ""),
                license=row.get("license", ""),
                near_dup_group=row.get("near_dup_group", ""),
            )
        )
    return records, skipped


def _read_ieee8023(root: Path) -> tuple[list[ImageRecord], list[Skipped]]:
    """covid-chestxray-dataset: label = covid when the finding names COVID-19, else non_covid."""
    metadata = root / "metadata.csv"
    rows = _read_csv(metadata, ("patientid", "finding", "view", "modality", "filename", "folder", "license"))
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    for number, row in enumerate(rows, start=2):
        file_name = f"{row['folder']}/{row['filename']}"
        if row["modality"].lower() not in ("x-ray", "xray", "cr", "dx"):
            skipped.append(Skipped(file_name, f"modality {row['modality']!r} is not an X-ray"))
            continue
        finding = row["finding"]
        if not finding or finding.lower() == "todo":
            skipped.append(Skipped(file_name, f"finding {finding!r} gives no label (row {number})"))
            continue
        if problem := _row_problem(root, file_name):
            skipped.append(Skipped(file_name, f"metadata.csv row {number}: {problem}", invalid_row=True))
            continue
        records.append(
            ImageRecord(
                path=root / file_name,
                file_name=file_name,
                label="covid" if "covid-19" in finding.lower() else "non_covid",
                patient_id=f"ieee8023-{row['patientid']}" if row["patientid"] else "",
                source="ieee8023",
                view=row["view"],
                sex=row.get("sex", ""),
                age=row.get("age", ""),
                finding=finding,
                license=row["license"],
            )
        )
    return records, skipped


def _read_folders(root: Path) -> tuple[list[ImageRecord], list[Skipped]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise MetadataError(
            f"{root}: no metadata.csv and no class sub-folders; expected e.g. {root}/covid/ and {root}/non_covid/"
        )
    unknown = [d.name for d in class_dirs if normalise_label(d.name) is None]
    if unknown:
        raise MetadataError(
            f"{root}: class folder(s) {', '.join(unknown)} are not a known label; "
            f"rename them to one of {known_label_spellings()}"
        )
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    for class_dir in class_dirs:
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            file_name = path.relative_to(root).as_posix()
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                skipped.append(Skipped(file_name, f"unsupported file type {path.suffix or '(none)'!r}"))
                continue
            records.append(
                ImageRecord(path=path, file_name=file_name, label=normalise_label(class_dir.name), source=root.name)
            )
    return records, skipped


def unreferenced_images(root: Path, named: Iterable[str]) -> list[str]:
    """Image files under ``root`` that no record or skipped row names: a metadata.csv that forgot them would
    otherwise shrink the dataset silently."""
    known = {os.path.normpath(name) for name in named}
    return sorted(
        relative
        for path in root.rglob("*")
        if path.suffix.lower() in SUPPORTED_SUFFIXES
        and path.is_file()
        and os.path.normpath(relative := path.relative_to(root).as_posix()) not in known
    )
