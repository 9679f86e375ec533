"""Example X-rays for the Space: a few test-split images, named by label and source, with their attribution."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets

ATTRIBUTION_FILE = "ATTRIBUTION.md"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def write_examples(dataset_dir: Path, folder: Path, per_label: int = 2) -> Path:
    """Copy a few test-split images (mixed-label sources first), their source in the file name, and list each
    one's source, original file and licence in ATTRIBUTION.md."""
    if folder.exists():
        shutil.rmtree(folder)  # generated: never mix examples of an older build
    folder.mkdir(parents=True)
    test = datasets.load_from_disk(str(dataset_dir))["test"]
    names = test.features["label"].names
    rows = test.select_columns(["source", "label", "file_name", "license"]).to_pandas()
    rows["mixed"] = rows["source"].map(rows.groupby("source")["label"].nunique() > 1)
    rows = rows.sort_values(["mixed", "file_name"], ascending=[False, True])
    raw = test.cast_column("image", datasets.Image(decode=False))
    lines = ["# Example images", "", "| file | source | original file | licence |", "|---|---|---|---|"]
    for label_id, group in rows.groupby("label"):
        for index in group.index[:per_label]:
            row = rows.loc[index]
            target = folder / f"{names[label_id]}__{row['source']}__{Path(row['file_name']).name}"
            target.write_bytes(raw[int(index)]["image"]["bytes"])
            lines.append(f"| {target.name} | {row['source']} | {row['file_name']} | {row['license'] or 'not stated'} |")
    (folder / ATTRIBUTION_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def example_files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.glob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
