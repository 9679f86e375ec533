"""Reading the three input layouts, and the errors that name the file and row."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from covid_cxr.data.records import MetadataError, detect_layout, read_records, unreferenced_images, view_family
from covid_cxr.labels import known_label_spellings


def test_curated_layout_reads_every_real_image(cxr_root: Path, metadata: list[dict[str, str]]) -> None:
    records, skipped = read_records(cxr_root)
    assert detect_layout(cxr_root) == "curated"
    assert len(records) == len(metadata) and not skipped
    assert {r.label for r in records} == {"covid", "non_covid"}
    first = records[0]
    assert first.path.is_file() and first.source == metadata[0]["source"]


def _rewrite(folder: Path, edit) -> Path:
    path = folder / "metadata.csv"
    rows = list(csv.DictReader(path.open()))
    rows, fields = edit(rows, list(rows[0]))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_missing_column_names_the_file(small_cxr: Path) -> None:
    path = _rewrite(small_cxr, lambda rows, fields: (rows, [f for f in fields if f != "patient_id"]))
    with pytest.raises(MetadataError, match=rf"{path}: missing column\(s\) patient_id"):
        read_records(small_cxr)


def test_each_invalid_row_is_skipped_with_its_row_and_fix(fixture_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(fixture_root, tmp_path / "cxr")
    outside = tmp_path / "outside.jpg"
    images = sorted((root / "images").iterdir())
    shutil.copy(images[3], outside)
    (root / "images" / "link_inside.jpg").symlink_to(images[0].name)  # another name for an image in the folder
    (root / "images" / "link_outside.jpg").symlink_to(outside)

    def edit(rows, fields):
        rows[0]["label"] = "maybe"
        rows[1]["file_name"] = "../../etc/passwd"
        rows[2]["file_name"] = "images/nowhere.jpg"
        rows[3]["file_name"] = "images/link_outside.jpg"
        rows[4]["file_name"] = "images/link_inside.jpg"
        rows[5]["view"] = "L"
        return rows, fields

    _rewrite(root, edit)
    records, skipped = read_records(root)
    reasons = {s.path: s.reason for s in skipped if s.invalid_row}
    assert reasons == {
        "images/" + images[0].name: (
            f"metadata.csv row 2: unknown label 'maybe'; use one of {known_label_spellings()}"
        ),
        "../../etc/passwd": f"metadata.csv row 3: path '../../etc/passwd' points outside the input folder; "
        f"give it relative to {root}",
        "images/nowhere.jpg": "metadata.csv row 4: file 'images/nowhere.jpg' does not exist",
        "images/link_outside.jpg": f"metadata.csv row 5: 'images/link_outside.jpg' is a symbolic link to {outside}, "
        "outside the input folder; copy the file into the folder",
    }
    assert [s.reason for s in skipped if not s.invalid_row] == ["view 'L' (lateral) not in --views PA,AP,frontal"]
    assert len(records) == 15 - 5 and "images/link_inside.jpg" in {r.file_name for r in records}


def test_unreferenced_images_are_found(fixture_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(fixture_root, tmp_path / "cxr")
    shutil.copy(next((root / "images").iterdir()), root / "images" / "forgotten.JPG")
    (root / "notes.txt").write_text("not an image, so not listed")
    records, skipped = read_records(root)
    named = [r.file_name for r in records] + [s.path for s in skipped]
    assert unreferenced_images(root, named) == ["images/forgotten.JPG"]
    assert unreferenced_images(root, [f"./{name}" for name in named]) == ["images/forgotten.JPG"]


def test_class_folders(tmp_path: Path, cxr_root: Path, metadata: list[dict[str, str]]) -> None:
    for row in metadata[:3] + metadata[-3:]:
        folder = tmp_path / ("COVID" if row["label"] == "covid" else "normal")
        folder.mkdir(exist_ok=True)
        shutil.copy(cxr_root / row["file_name"], folder)
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    records, skipped = read_records(tmp_path)
    assert detect_layout(tmp_path) == "folders"
    assert sorted(r.label for r in records) == sorted(r["label"] for r in metadata[:3] + metadata[-3:])
    assert [s.reason for s in skipped] == ["unsupported file type '.txt'"]
    (tmp_path / "maybe").mkdir()
    with pytest.raises(MetadataError, match="class folder\\(s\\) maybe are not a known label"):
        read_records(tmp_path)


def test_ieee8023_layout(tmp_path: Path, cxr_root: Path, metadata: list[dict[str, str]]) -> None:
    rows = [r for r in metadata if r["source"] == "ieee8023"][:4]
    (tmp_path / "images").mkdir()
    for row in rows:
        shutil.copy(cxr_root / row["file_name"], tmp_path / "images")
    fields = ["patientid", "sex", "age", "finding", "view", "modality", "folder", "filename", "license"]
    table = [
        {"patientid": "1", "finding": "Pneumonia/Viral/COVID-19", "view": "PA", "modality": "X-ray"},
        {"patientid": "2", "finding": "Pneumonia/Bacterial", "view": "AP Supine", "modality": "X-ray"},
        {"patientid": "3", "finding": "Pneumonia/Viral/COVID-19", "view": "Axial", "modality": "CT"},
        {"patientid": "4", "finding": "todo", "view": "PA", "modality": "X-ray"},
    ]
    for entry, row in zip(table, rows, strict=True):
        entry.update(folder="images", filename=Path(row["file_name"]).name, license="CC BY", sex="M", age="50")
    with (tmp_path / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    records, skipped = read_records(tmp_path)
    assert detect_layout(tmp_path) == "ieee8023"
    assert [(r.label, r.patient_id) for r in records] == [("covid", "ieee8023-1"), ("non_covid", "ieee8023-2")]
    assert [s.reason.split(" (")[0] for s in skipped] == [
        "modality 'CT' is not an X-ray",
        "finding 'todo' gives no label",
    ]


@pytest.mark.parametrize(
    ("view", "family"),
    [
        ("PA", "PA"),
        ("AP Supine", "AP"),
        ("AP erect", "AP"),
        ("frontal (AP/PA unknown; visual check)", "frontal"),
        ("L", "lateral"),
        ("", "unknown"),
        ("Axial", "other"),
    ],
)
def test_view_family(view: str, family: str) -> None:
    assert view_family(view) == family


def test_metadata_with_a_byte_order_mark_is_read(fixture_root: Path, tmp_path: Path) -> None:
    shutil.copytree(fixture_root, tmp_path / "cxr")
    metadata = tmp_path / "cxr" / "metadata.csv"
    metadata.write_bytes(b"\xef\xbb\xbf" + metadata.read_bytes())  # as Excel saves "CSV UTF-8"
    records, skipped = read_records(tmp_path / "cxr")
    assert len(records) == 15 and not skipped


def test_a_repeated_row_is_named_as_repeated(fixture_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(fixture_root, tmp_path / "cxr")
    _rewrite(root, lambda rows, fields: ([*rows, rows[2] | {"file_name": "./" + rows[2]["file_name"]}], fields))
    records, skipped = read_records(root)
    assert len(records) == 15
    assert [(s.reason, s.kind, s.invalid_row) for s in skipped] == [
        ("metadata.csv row 17: names the same file as row 4; remove one of the two rows", "repeated row", True)
    ]
