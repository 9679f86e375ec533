"""The dataset build end to end on real X-rays: counts, leakage, bad files, card, report and Hub push."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from covid_cxr.data.build import REPORT_NAME, BuildConfig, build_dataset
from study.folds import dataset_folds
from tests.conftest import REPO_ROOT, write_dicom

BUILD_SCRIPT = REPO_ROOT / "train" / "build_dataset.py"


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )


@pytest.fixture(scope="module")
def full_build(tmp_path_factory: pytest.TempPathFactory, cxr_root: Path) -> Path:
    output = tmp_path_factory.mktemp("full") / "dataset"
    run_build("--input_dir", str(cxr_root), "--output_dir", str(output), "--num_proc", "2")
    return output


def test_full_build_counts_and_no_patient_leak(full_build: Path, metadata: list[dict[str, str]]) -> None:
    ds = datasets.load_from_disk(str(full_build))
    assert list(ds) == ["train", "validation", "test"]
    assert ds["train"].features["label"].names == ["non_covid", "covid"]
    names = ds["train"].features["label"].names
    built = Counter(
        (row["source"], names[row["label"]])
        for split in ds.values()
        for row in split.select_columns(["source", "label"])
    )
    assert built == Counter((r["source"], r["label"]) for r in metadata)
    patients = {split: set(ds[split]["patient_id"]) - {""} for split in ds}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    report = json.loads((full_build / REPORT_NAME).read_text())
    assert report["kept"] == len(metadata) and report["skipped"] == []


def test_cross_validation_folds_keep_patients_and_near_duplicates_together(
    full_build: Path, metadata: list[dict[str, str]]
) -> None:
    ds = datasets.load_from_disk(str(full_build))
    whole = datasets.concatenate_datasets([ds[split] for split in ds])
    folds = dataset_folds(whole, n_folds=5)
    fold_of = dict(zip(whole["file_name"], folds.tolist(), strict=True))
    near_dup_groups: dict[str, set[int]] = {}
    for row in metadata:
        if row["near_dup_group"]:
            near_dup_groups.setdefault(row["near_dup_group"], set()).add(fold_of[row["file_name"]])
    assert near_dup_groups  # the real data does exercise the near-duplicate rule
    assert all(len(seen) == 1 for seen in near_dup_groups.values())
    report = json.loads((full_build / REPORT_NAME).read_text())
    for pair in report["near_duplicate_pairs"]:  # detected ones (none left in the curated set)
        assert fold_of[pair["a"]] == fold_of[pair["b"]]
    for key in ("patient_id", "patient_group"):
        folds_of: dict[str, set[int]] = {}
        for value, fold in zip(whole[key], folds.tolist(), strict=True):
            if value:
                folds_of.setdefault(value, set()).add(fold)
        assert all(len(seen) == 1 for seen in folds_of.values()), key
    sizes = Counter(folds.tolist())
    assert len(sizes) == 5 and max(sizes.values()) < 1.3 * min(sizes.values())
    groups_per_split = {split: set(ds[split]["patient_group"]) for split in ds}
    assert not groups_per_split["train"] & groups_per_split["test"]


def test_card_numbers_match_the_built_dataset(full_build: Path) -> None:
    card = (full_build / "README.md").read_text()
    ds = datasets.load_from_disk(str(full_build))
    assert card.startswith("---\n") and "task_categories:\n- image-classification" in card
    assert "{{" not in card and "{%" not in card
    for source in set(ds["train"]["source"]):
        row = re.search(rf"^\| {source} \| (.+) \|$", card, flags=re.MULTILINE)
        cells = [int(x) for x in row.group(1).split(" | ")]
        expected = [
            sum(
                1
                for r in ds[split].select_columns(["source", "label"])
                if r["source"] == source and r["label"] == label
            )
            for split in ("train", "validation", "test")
            for label in (0, 1)
        ]
        assert cells == [*expected, sum(expected)], source
    for split in ds:
        assert re.search(rf"^\| {split} \| {ds[split].num_rows} \| ", card, flags=re.MULTILINE)
    assert (full_build / "intensity_histogram.png").stat().st_size > 10_000


def test_images_are_stored_as_read(full_build: Path, cxr_root: Path) -> None:
    test = datasets.load_from_disk(str(full_build))["test"].cast_column("image", datasets.Image(decode=False))
    row = test[0]
    assert row["image"]["bytes"] == (cxr_root / row["file_name"]).read_bytes()


def test_fixture_builds_with_each_patient_in_one_split(fixture_root: Path, tmp_path: Path) -> None:
    result = build_dataset(BuildConfig(input_dir=fixture_root, output_dir=tmp_path / "out"))
    assert len(result.records) == 15 and not result.skipped
    splits_of: dict[str, set[str]] = {}
    for record, split in zip(result.records, result.splits, strict=True):
        if record.patient_id:
            splits_of.setdefault(record.patient_id, set()).add(split)
    assert len(splits_of["hannover-189daebe"]) == 1  # two films of one patient: one split
    assert all(len(names) == 1 for names in splits_of.values())
    assert {split: result.dataset[split].num_rows for split in result.dataset} == dict(Counter(result.splits))


def test_bad_files_are_reported_and_the_rest_kept(small_cxr: Path, tmp_path: Path) -> None:
    images = sorted((small_cxr / "images").iterdir())
    truncated, text, empty, original = images[0], images[1], images[2], images[3]
    truncated.write_bytes(truncated.read_bytes()[:2000])
    text.write_text("<html>not an x-ray</html>")
    empty.write_bytes(b"")
    with (small_cxr / "metadata.csv").open() as handle:
        lines = handle.read().splitlines()
    row_of_original = next(line for line in lines if original.name in line)
    copy = small_cxr / "images" / f"copy_of_{original.name}"
    shutil.copy(original, copy)
    with (small_cxr / "metadata.csv").open("a") as handle:
        handle.write(row_of_original.replace(original.name, copy.name) + "\n")

    config = BuildConfig(input_dir=small_cxr, output_dir=tmp_path / "out", num_proc=1)
    result = build_dataset(config)
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons[truncated.name].startswith("truncated or corrupt image data")
    assert reasons[text.name].startswith("not a PNG, JPEG or DICOM file")
    assert reasons[empty.name] == "empty file (0 bytes)"
    assert reasons[copy.name] == f"exact duplicate of images/{original.name}"
    assert len(reasons) == 4
    assert len(result.records) == len(lines) - 1 + 1 - 4
    assert sum(split.num_rows for split in result.dataset.values()) == len(result.records)


def test_max_size_downscales(small_cxr: Path, tmp_path: Path) -> None:
    result = build_dataset(BuildConfig(input_dir=small_cxr, output_dir=tmp_path / "out", max_size=128))
    sizes = [image.size for split in result.dataset.values() for image in split["image"]]
    assert max(max(size) for size in sizes) == 128
    assert all(isinstance(image, Image.Image) for image in result.dataset["train"][:3]["image"])


def test_push_is_one_commit_that_load_dataset_reads_back(
    small_cxr: Path, tmp_path: Path, monkeypatch, fake_hub
) -> None:
    output = tmp_path / "out"
    argv = ["build_dataset.py", "--input_dir", str(small_cxr), "--output_dir", str(output), "--num_proc", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--push_to_hub", "me/cxr"])
    sys.path.insert(0, str(BUILD_SCRIPT.parent))
    try:
        import build_dataset

        build_dataset.main()
    finally:
        sys.path.remove(str(BUILD_SCRIPT.parent))

    (commit,) = fake_hub.commits
    paths = commit["added"]
    assert (commit["repo_id"], commit["repo_type"]) == ("me/cxr", "dataset")
    assert {"README.md", "LICENSE.md", "build_report.json", "intensity_histogram.png"} <= set(paths)
    card = (fake_hub.root / "me/cxr" / "README.md").read_text()
    for linked in re.findall(r"\]\(([^)#:]+)\)", card):  # every relative link of the card is in the commit
        assert linked in paths, linked
    assert (output / "hub_repo_id.txt").read_text().strip() == "me/cxr"

    built = datasets.load_from_disk(str(output))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a split size that does not match the card's dataset_info
        pushed = datasets.load_dataset(str(fake_hub.root / "me/cxr"))
    assert {split: pushed[split].num_rows for split in pushed} == {split: built[split].num_rows for split in built}
    assert pushed["train"].features == built["train"].features
    assert pushed["test"][0]["image"].size == built["test"][0]["image"].size


def test_help_lists_arguments() -> None:
    out = run_build("--help").stdout
    for flag in ("--input_dir", "--push_to_hub", "--split_fractions", "--views", "--max_size"):
        assert flag in out


def test_hostile_input_folder_is_built_and_every_problem_reported(fixture_root: Path, tmp_path: Path) -> None:
    """Bad rows, odd and broken DICOMs and forgotten files: the build finishes, reports each, and only --strict
    turns the invalid rows into a failing exit status."""
    root = shutil.copytree(fixture_root, tmp_path / "cxr")
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    source = root / rows[0]["file_name"]
    pixels = np.asarray(Image.open(source).convert("L"), dtype=np.uint16) * 16
    # an invalid window: read with the full range
    write_dicom(root / "images" / "zero_window.dcm", pixels, WindowCenter=2048, WindowWidth=0)
    data = (root / "images" / "zero_window.dcm").read_bytes()
    (root / "images" / "cut.dcm").write_bytes(data[: len(data) // 2])
    shutil.copy(source, root / "images" / "forgotten.jpg")
    shutil.copy(source, root / "images" / "unlabelled.jpg")
    for name, label in [("zero_window.dcm", "covid"), ("cut.dcm", "covid"), ("unlabelled.jpg", "maybe")]:
        rows.append(rows[0] | {"file_name": f"images/{name}", "label": label, "patient_id": name})
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8-sig") as handle:  # with a BOM, as Excel
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--input_dir", str(root), "--output_dir", str(out), "--strict"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "--strict: 1 metadata row(s) are invalid" in done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads((out / REPORT_NAME).read_text())
    reasons = {entry["path"]: entry["reason"] for entry in report["skipped"]}
    assert reasons["images/unlabelled.jpg"].startswith(f"metadata.csv row {len(rows) + 1}: unknown label 'maybe'")
    assert reasons["images/cut.dcm"].startswith("truncated DICOM")
    assert report["invalid_row_count"] == 1 and report["unreferenced"] == ["images/forgotten.jpg"]
    assert report["kept"] == 15 + 1  # every fixture image and the zero-window DICOM
    assert sum(datasets.load_from_disk(str(out))[split].num_rows for split in ("train", "validation", "test")) == 16
    assert "images/forgotten.jpg" in done.stdout and "unknown label 'maybe'" in done.stdout


def test_make_data_rebuilds_when_the_input_changes(fixture_root: Path, tmp_path: Path) -> None:
    """`make data DATA=...` takes class folders as well as a curated folder, and rebuilds exactly when the
    input's path or listing changes (not on file times alone, which a copied folder may have older)."""
    folders = tmp_path / "folders"
    with (fixture_root / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            (folders / row["label"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(fixture_root / row["file_name"], folders / row["label"])
    variables = [
        f"BIN={Path(sys.executable).parent}",
        f"DATASET_DIR={tmp_path / 'dataset'}",
        f"DATA_STAMP={tmp_path / 'stamp.txt'}",
    ]

    def make_data(data: Path) -> bool:
        """Run `make data`; True when it built the dataset."""
        done = subprocess.run(
            ["make", "--no-print-directory", "data", f"DATA={data}", *variables],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return "Dataset, card and report written" in done.stdout

    assert make_data(folders)
    assert datasets.load_from_disk(str(tmp_path / "dataset"))["train"][0]["source"] == "folders"
    assert not make_data(folders)
    shutil.copy(next((folders / "covid").iterdir()), folders / "covid" / "another.jpg")
    assert make_data(folders)
    assert make_data(fixture_root)  # older files than the dataset, still a different input
    assert not make_data(fixture_root)


def test_report_counts_skips_by_kind(fixture_root: Path, tmp_path: Path) -> None:
    """Two rows with different unknown labels are one kind in `skipped_by_reason`, and a repeated row is named
    as such rather than as an exact duplicate of itself."""
    from covid_cxr.data.build import write_report

    root = shutil.copytree(fixture_root, tmp_path / "cxr")
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["label"], rows[1]["label"] = "maybe", "perhaps"
    rows.append(dict(rows[2]))
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = BuildConfig(input_dir=root, output_dir=tmp_path / "out")
    write_report(build_dataset(config), config, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["skipped_by_reason"] == {"unknown label": 2, "repeated row": 1}
    assert (
        report["skipped"][-1]["reason"]
        == "metadata.csv row 17: names the same file as row 4; remove one of the two rows"
    )
