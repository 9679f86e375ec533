"""One record per image, whatever the input layout, in the spirit of torchxrayvision's datasets.

Three layouts are read:

* ``curated``: ``metadata.csv`` with ``file_name, label, source, patient_id, view`` (+ optional columns),
  the layout of ``../shared/cxr``;
* ``ieee8023``: the ``covid-chestxray-dataset`` ``metadata.csv`` (``patientid, finding, view, modality,
  filename, folder, license``), so a clone of that public repository can be pointed at directly;
* ``folders``: one sub-folder per class (``covid/``, ``non_covid/``, ...).

A metadata file that cannot be read as a whole (missing columns, class folders with unknown names) raises
:class:`MetadataError`. Every row is judged on its own: a wrong row (unknown label, a path that escapes the input
folder, a missing file, a file an earlier row names) becomes a :class:`Skipped` entry marked ``invalid_row``, with
the row number and the fix, and a valid but unusable one (a CT image, a lateral view) a plain :class:`Skipped`
entry; the rest is built. Class folders follow the same rules for links and special files (:func:`_entry_problem`),
and every entry under them is either a record or a :class:`Skipped` one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

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
    """A candidate left out of the dataset: `reason` says why for this file, `kind` groups it in the report."""

    path: str
    reason: str
    kind: str
    invalid_row: bool = False  # the metadata itself is wrong (not just an image the dataset does not want)


class Problem(NamedTuple):
    """Why an entry or a row is not read: `kind` for the report's counts, `reason` for the file at hand."""

    kind: str
    reason: str


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
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"input folder {root} {what}: give the folder that holds the images")
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
            reason = f"view {record.view!r} ({family}) not in --views {','.join(views)}"
            skipped.append(Skipped(record.file_name, reason, "view not wanted"))
    return kept, skipped


def with_patients(records: list[ImageRecord], patients: Path) -> list[ImageRecord]:
    """The records with the patient ids of a `file_name,patient_id` CSV (file names as the records give them,
    relative to the input folder); a row naming no image that was read, or a file named twice, is an error that says
    which, before anything is built. Records the CSV does not name keep the patient their layout gave."""
    rows = _read_csv(patients, ("file_name", "patient_id"))
    given: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        name = Path(row["file_name"]).as_posix()
        if name in given:
            raise MetadataError(f"{patients}, row {number}: {name!r} is named twice; give each image one patient")
        given[name] = row["patient_id"]
    unknown = sorted(set(given) - {r.file_name for r in records})
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise MetadataError(
            f"{patients}: no image read from the input folder is named {', '.join(map(repr, unknown[:3]))}{more}; "
            "name files as they lie under --input_dir (e.g. covid/a.png)"
        )
    return [replace(r, patient_id=given[r.file_name]) if given.get(r.file_name) else r for r in records]


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


def _entry_problem(root: Path, relative: str) -> Problem | None:
    """Why the entry `relative` under `root` is no file to read as an image (None when it may be one): the rules
    for links and special files, the same in every layout."""
    path = root / relative
    target = os.path.realpath(path)
    if not Path(target).is_relative_to(root.resolve()):
        what = "folder" if os.path.isdir(target) else "file"
        return Problem(
            "link outside the input folder",
            f"{relative!r} is a symbolic link to {target}, outside the input folder; copy the {what} into the folder",
        )
    if not path.exists():
        if path.is_symlink():
            return Problem(
                "broken link", f"{relative!r} is a symbolic link to {os.readlink(path)}, which does not exist"
            )
        return Problem("missing file", f"file {relative!r} does not exist")
    if path.is_symlink() and path.is_dir():  # never followed: no folder is read twice, or in a loop
        return Problem(
            "folder", f"{relative!r} is a symbolic link to the folder {target}, not followed; copy its files in"
        )
    if path.is_dir():
        return Problem("folder", f"{relative!r} is a folder, not an image file")
    if not path.is_file():
        return Problem("not a regular file", f"{relative!r} is a FIFO, socket or device, not a regular file")
    return None


def _row_problem(root: Path, relative: str, raw_label: str | None = None) -> Problem | None:
    """Why a metadata row cannot be used as written (None when it can): escaping path, link out of the folder,
    missing or special file, bad label."""
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        return Problem(
            "path outside the input folder",
            f"path {relative!r} points outside the input folder; give it relative to {root}",
        )
    if problem := _entry_problem(root, relative):
        return problem
    if raw_label is not None and normalise_label(raw_label) is None:
        return Problem("unknown label", f"unknown label {raw_label!r}; use one of {known_label_spellings()}")
    return None


def _repeated_row(first_rows: dict[str, int], relative: str) -> Problem | None:
    """Why a row is not read when an earlier one already made a record of its file (`first_rows`: name -> row)."""
    first = first_rows.get(os.path.normpath(relative))
    if first is None:
        return None
    return Problem("repeated row", f"names the same file as row {first}; remove one of the two rows")


def _invalid_row(number: int, relative: str, problem: Problem) -> Skipped:
    return Skipped(relative, f"metadata.csv row {number}: {problem.reason}", problem.kind, invalid_row=True)


def _read_curated(root: Path) -> tuple[list[ImageRecord], list[Skipped]]:
    metadata = root / "metadata.csv"
    rows = _read_csv(metadata, ("file_name", "label", "source", "patient_id", "view"))
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []
    first_rows: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if problem := _row_problem(root, row["file_name"], row["label"]) or _repeated_row(first_rows, row["file_name"]):
            skipped.append(_invalid_row(number, row["file_name"], problem))
            continue
        first_rows[os.path.normpath(row["file_name"])] = number
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
    first_rows: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        file_name = f"{row['folder']}/{row['filename']}"
        if row["modality"].lower() not in ("x-ray", "xray", "cr", "dx"):
            skipped.append(Skipped(file_name, f"modality {row['modality']!r} is not an X-ray", "not an X-ray"))
            continue
        finding = row["finding"]
        if not finding or finding.lower() == "todo":
            skipped.append(Skipped(file_name, f"finding {finding!r} gives no label (row {number})", "no label"))
            continue
        if problem := _row_problem(root, file_name) or _repeated_row(first_rows, file_name):
            skipped.append(_invalid_row(number, file_name, problem))
            continue
        first_rows[os.path.normpath(file_name)] = number
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
        for path in sorted(_entries(class_dir)):
            file_name = path.relative_to(root).as_posix()
            image_name = path.suffix.lower() in SUPPORTED_SUFFIXES
            if path.is_dir() and not path.is_symlink() and not image_name:
                continue  # a plain folder: its entries are judged one by one
            if problem := _entry_problem(root, file_name):
                skipped.append(Skipped(file_name, problem.reason, problem.kind))
            elif not image_name:
                reason = f"unsupported file type {path.suffix or '(none)'!r}"
                skipped.append(Skipped(file_name, reason, "unsupported file type"))
            else:
                label = normalise_label(class_dir.name)
                records.append(ImageRecord(path=path, file_name=file_name, label=label, source=root.name))
    return records, skipped


def _entries(folder: Path) -> Iterator[Path]:
    """Every entry under `folder`, links to folders listed but not followed; a linked `folder` is one entry."""
    if folder.is_symlink():
        yield folder
        return
    for parent, folders, files in os.walk(folder):
        yield from (Path(parent, name) for name in folders + files)


def unreferenced_images(root: Path, named: Iterable[str]) -> list[str]:
    """Entries under ``root`` named like images (files, broken links, FIFOs) that no record or skipped row names:
    a metadata.csv that forgot them would otherwise shrink the dataset silently."""
    known = {os.path.normpath(name) for name in named}
    return sorted(
        relative
        for path in root.rglob("*")
        if path.suffix.lower() in SUPPORTED_SUFFIXES
        and not path.is_dir()
        and os.path.normpath(relative := path.relative_to(root).as_posix()) not in known
    )
