"""Class folders (one sub-folder per label) under the curated layout's rules: no link out of the input folder is
read, and every entry under the input folder is kept, skipped with a reason, or listed as unreferenced."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from covid_cxr.data.build import BuildConfig, build_dataset, write_report
from covid_cxr.data.records import MetadataError, read_records


def class_folders(fixture_root: Path, root: Path) -> Path:
    """The 15 real fixture X-rays as root/covid/ and root/non_covid/."""
    with (fixture_root / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            (root / row["label"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(fixture_root / row["file_name"], root / row["label"])
    return root


def test_links_out_of_the_input_folder_are_skipped(fixture_root: Path, tmp_path: Path) -> None:
    root = class_folders(fixture_root, tmp_path / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(next((root / "covid").iterdir()), outside / "x.jpg")
    (root / "covid" / "linked.jpg").symlink_to(outside / "x.jpg")
    (root / "covid" / "inside.jpg").symlink_to(next((root / "non_covid").iterdir()))  # allowed, as in curated
    (root / "normal").symlink_to(outside, target_is_directory=True)  # a whole class folder from elsewhere
    records, skipped = read_records(root)
    names = {r.file_name for r in records}
    assert "covid/inside.jpg" in names and not {n for n in names if "x.jpg" in n or n.startswith("normal")}
    reasons = {s.path: (s.kind, s.reason) for s in skipped}
    assert reasons == {
        "covid/linked.jpg": (
            "link outside the input folder",
            f"'covid/linked.jpg' is a symbolic link to {outside.resolve() / 'x.jpg'}, outside the input folder; "
            "copy the file into the folder",
        ),
        "normal": (
            "link outside the input folder",
            f"'normal' is a symbolic link to {outside.resolve()}, outside the input folder; "
            "copy the folder into the folder",
        ),
    }


def test_every_entry_is_in_the_report_and_no_byte_of_a_file(fixture_root: Path, tmp_path: Path) -> None:
    root = class_folders(fixture_root, tmp_path / "data")
    covid = root / "covid"
    (covid / "gone.png").symlink_to("nowhere.png")
    os.mkfifo(covid / "pipe.png")
    (covid / "x.png").mkdir()
    inner = sorted(covid.glob("*.jpg"))[0]
    inner.rename(covid / "x.png" / inner.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(covid / "x.png" / inner.name, elsewhere / "copy.jpg")
    (covid / "more").symlink_to(elsewhere, target_is_directory=True)
    (covid / "again").symlink_to(root / "non_covid", target_is_directory=True)
    (covid / "passwd.png").symlink_to("/etc/passwd")
    secret = "root:x:0:0:root:/root:/bin/bash\n"
    (covid / "secret.png").write_text(secret)
    os.mkfifo(root / "stray.jpg")  # beside the class folders: no label, so unreferenced

    config = BuildConfig(input_dir=root, output_dir=tmp_path / "out")
    result = build_dataset(config)
    write_report(result, config, tmp_path / "report.json")
    text = (tmp_path / "report.json").read_text()
    assert not any(part in text for part in ("root:x", "/bin/bash", "root:/root"))
    report = json.loads(text)
    odd = ["gone.png", "pipe.png", "x.png", "more", "again", "passwd.png", "secret.png"]
    listed = {entry["path"] for entry in report["skipped"]} | set(report["unreferenced"])
    assert {f"covid/{name}" for name in odd} | {"stray.jpg"} <= listed
    kinds = {entry["path"]: entry["kind"] for entry in report["skipped"]}
    assert kinds == {
        "covid/gone.png": "broken link",
        "covid/pipe.png": "not a regular file",
        "covid/x.png": "folder",
        "covid/more": "link outside the input folder",
        "covid/again": "folder",
        "covid/passwd.png": "link outside the input folder",
        "covid/secret.png": "unusable image",
    }
    assert report["unreferenced"] == ["stray.jpg"]
    assert f"covid/x.png/{inner.name}" in {r.file_name for r in result.records}
    assert report["kept"] == 15


def test_a_patients_csv_keeps_each_patients_images_in_one_split(fixture_root: Path, tmp_path: Path) -> None:
    """Class folders name no patient; `--patients` gives them, and the split then keeps each patient together."""
    root = class_folders(fixture_root, tmp_path / "data")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*"))
    by_label: dict[str, list[str]] = {}
    for name in names:
        by_label.setdefault(name.split("/")[0], []).append(name)
    patients = tmp_path / "patients.csv"
    with patients.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "patient_id"])
        for label, files in by_label.items():
            writer.writerows([name, f"{label}-p{i // 2}"] for i, name in enumerate(files))  # two images each
    config = BuildConfig(input_dir=root, output_dir=tmp_path / "dataset", seed=1, patients=patients)
    rows = build_dataset(config).dataset
    split_of: dict[str, set[str]] = {}
    for split in rows:
        for patient in rows[split]["patient_id"]:
            split_of.setdefault(patient, set()).add(split)
    assert "" not in split_of and all(len(splits) == 1 for splits in split_of.values())
    assert sum(len(rows[s]) for s in rows) == len(names)
    plain = build_dataset(BuildConfig(input_dir=root, output_dir=tmp_path / "plain", seed=1)).dataset
    assert not any(patient for split in plain for patient in plain[split]["patient_id"])


def test_a_patients_csv_naming_no_image_is_refused(fixture_root: Path, tmp_path: Path) -> None:
    root = class_folders(fixture_root, tmp_path / "data")
    patients = tmp_path / "patients.csv"
    patients.write_text("file_name,patient_id\ncovid/not-there.png,p1\n")
    with pytest.raises(MetadataError, match=r"'covid/not-there\.png'"):
        build_dataset(BuildConfig(input_dir=root, output_dir=tmp_path / "dataset", patients=patients))
    assert not (tmp_path / "dataset").exists()
