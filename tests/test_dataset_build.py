"""The dataset build end to end on real X-rays: counts, leakage, bad files, card, report and Hub push."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

from covid_cxr.data.build import REPORT_NAME, BuildConfig, build_dataset
from tests.conftest import REPO_ROOT

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


def test_push_is_one_commit_that_load_dataset_reads_back(small_cxr: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import HfApi

    commits = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)

    def create_commit(self, repo_id, operations, **kw):  # materialise the commit as the Hub repo would hold it
        repo = tmp_path / "hub" / repo_id
        for op in operations:
            target = repo / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            source = op.path_or_fileobj
            target.write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
        commits.append((repo_id, kw["repo_type"], sorted(op.path_in_repo for op in operations)))

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    output = tmp_path / "out"
    argv = ["build_dataset.py", "--input_dir", str(small_cxr), "--output_dir", str(output), "--num_proc", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--push_to_hub", "me/cxr"])
    sys.path.insert(0, str(BUILD_SCRIPT.parent))
    try:
        import build_dataset

        build_dataset.main()
    finally:
        sys.path.remove(str(BUILD_SCRIPT.parent))

    assert len(commits) == 1
    repo_id, repo_type, paths = commits[0]
    assert (repo_id, repo_type) == ("me/cxr", "dataset")
    assert {"README.md", "LICENSE.md", "build_report.json", "intensity_histogram.png"} <= set(paths)
    card = (tmp_path / "hub" / "me/cxr" / "README.md").read_text()
    for linked in re.findall(r"\]\(([^)#:]+)\)", card):  # every relative link of the card is in the commit
        assert linked in paths, linked
    assert (output / "hub_repo_id.txt").read_text().strip() == "me/cxr"

    built = datasets.load_from_disk(str(output))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a split size that does not match the card's dataset_info
        pushed = datasets.load_dataset(str(tmp_path / "hub" / "me/cxr"))
    assert {split: pushed[split].num_rows for split in pushed} == {split: built[split].num_rows for split in built}
    assert pushed["train"].features == built["train"].features
    assert pushed["test"][0]["image"].size == built["test"][0]["image"].size


def test_help_lists_arguments() -> None:
    out = run_build("--help").stdout
    for flag in ("--input_dir", "--push_to_hub", "--split_fractions", "--views", "--max_size"):
        assert flag in out
