"""Example X-rays for the Space: one test-split image per source and label, named by both, with attribution."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets

ATTRIBUTION_FILE = "ATTRIBUTION.md"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SEPARATOR = "__"  # {label}__{source}__{original name}


@dataclass(frozen=True)
class Example:
    path: Path
    label: str  # the recorded class name
    source: str


def write_examples(dataset_dir: Path, folder: Path, per_group: int = 1) -> Path:
    """Copy `per_group` test-split images of every source x label (so every source and both labels are shown),
    their label and source in the file name, and list each one's source, original file and licence in
    ATTRIBUTION.md."""
    if folder.exists():
        shutil.rmtree(folder)  # generated: never mix examples of an older build
    folder.mkdir(parents=True)
    test = datasets.load_from_disk(str(dataset_dir))["test"]
    names = test.features["label"].names
    rows = test.select_columns(["source", "label", "file_name", "license"]).to_pandas()
    rows = rows.sort_values(["label", "source", "file_name"], ascending=[False, True, True])
    raw = test.cast_column("image", datasets.Image(decode=False))
    lines = ["# Example images", "", "| file | source | original file | licence |", "|---|---|---|---|"]
    for _, group in rows.groupby(["label", "source"], sort=False):
        for index, row in group.head(per_group).iterrows():
            name = SEPARATOR.join([names[row["label"]], row["source"], Path(row["file_name"]).name])
            (folder / name).write_bytes(raw[int(index)]["image"]["bytes"])
            lines.append(f"| {name} | {row['source']} | {row['file_name']} | {row['license'] or 'not stated'} |")
    (folder / ATTRIBUTION_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def example_files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.glob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]


def read_examples(folder: Path) -> list[Example]:
    """The examples in `folder`, COVID-19 first, with the label and source their names record."""
    examples = []
    for path in example_files(folder):
        label, source, *_ = [*path.name.split(SEPARATOR), "", ""]
        examples.append(Example(path, label, source))
    return sorted(examples, key=lambda e: (e.label != "covid", e.source, e.path.name))
