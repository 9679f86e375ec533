"""No command writes into its own input or over a folder it did not make, and a killed build leaves the old
dataset whole: the hurried user's `--output_dir` equal to `--input_dir`, `.`, or a folder of their files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from covid_cxr.data.build import DATASET_MARKER
from covid_cxr.outputs import OutputFolderError, check_output_dir, replacing
from tests.conftest import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "train" / "build_dataset.py"


def listing(root: Path) -> dict[str, str]:
    """Every file under `root` with a digest of its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def build(input_dir: str, output_dir: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--input_dir", input_dir, "--output_dir", output_dir, "--num_proc", "1"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def images(fixture_root: Path, tmp_path: Path) -> Path:
    """A user's folder: the fixture X-rays in the curated layout, plus a file of their own."""
    root = shutil.copytree(fixture_root, tmp_path / "project" / "my_images")
    (tmp_path / "project" / "notes.txt").write_text("my notes\n")
    return root


@pytest.mark.parametrize("output", ["same", "inside", "holds"])
def test_build_refuses_an_output_that_overlaps_its_input(images: Path, output: str) -> None:
    project = images.parent
    before = listing(project)
    target = {"same": images, "inside": images / "dataset", "holds": project}[output]
    done = build(str(images), str(target), cwd=REPO_ROOT)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert str(images.resolve()) in done.stderr and str(target.resolve()) in done.stderr
    assert listing(project) == before


def test_build_refuses_the_working_folder(images: Path) -> None:
    """`cd P && build --input_dir my_images --output_dir .` once deleted every file in P."""
    project = images.parent
    before = listing(project)
    done = build("my_images", ".", cwd=project)
    assert done.returncode != 0 and "contains the input folder" in done.stderr and "Traceback" not in done.stderr
    assert listing(project) == before

    elsewhere = project.parent / "elsewhere"  # the input lies outside the working folder: still refused
    elsewhere.mkdir()
    (elsewhere / "todo.txt").write_text("mine\n")
    done = build(str(images), ".", cwd=elsewhere)
    assert done.returncode != 0 and "working folder" in done.stderr and "Traceback" not in done.stderr
    assert listing(elsewhere) == {"todo.txt": hashlib.sha1(b"mine\n").hexdigest()} and listing(project) == before


def test_build_refuses_a_folder_of_other_files_and_replaces_its_own(images: Path, tmp_path: Path) -> None:
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "letter.txt").write_text("keep me\n")
    done = build(str(images), str(documents), cwd=REPO_ROOT)
    assert done.returncode != 0 and "did not write" in done.stderr
    assert listing(documents) == {"letter.txt": hashlib.sha1(b"keep me\n").hexdigest()}

    out = tmp_path / "dataset"
    for _ in range(2):  # the second build replaces the first
        done = build(str(images), str(out), cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
    assert (out / DATASET_MARKER).is_file() and sum(datasets.load_from_disk(str(out)).num_rows.values()) == 15
    (tmp_path / "plain").mkdir()  # the swapped-in folder has the mode the umask gives, not a temp folder's 0700
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_an_interrupted_replacement_leaves_the_old_output_whole(tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    out.mkdir()
    (out / DATASET_MARKER).write_text("old\n")
    with pytest.raises(KeyboardInterrupt), replacing(out) as staging:
        (staging / DATASET_MARKER).write_text("new, half written")
        raise KeyboardInterrupt
    assert listing(out) == {DATASET_MARKER: hashlib.sha1(b"old\n").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]

    killed = tmp_path / ".dataset.partial-killed"  # what a SIGKILL during the write leaves
    killed.mkdir()
    with replacing(out) as staging:
        (staging / DATASET_MARKER).write_text("new\n")
    assert (out / DATASET_MARKER).read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_check_allows_separate_folders(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "out", {"--input_dir": tmp_path / "in"}, replaces=DATASET_MARKER)
    with pytest.raises(OutputFolderError, match="lies inside"):
        check_output_dir(tmp_path / "in" / "masks", {"--input_dir": tmp_path / "in"})


def test_lung_training_refuses_to_write_into_its_images(images: Path) -> None:
    before = listing(images)
    script = REPO_ROOT / "train" / "train_lungs.py"
    args = ["--masks", str(images), "--images", str(images), "--output_dir", str(images / "lungs")]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert done.returncode != 0 and "lies inside the input folder --masks" in done.stderr
    assert "Traceback" not in done.stderr and listing(images) == before


def test_space_bundle_refuses_other_files_and_its_own_source(tmp_path: Path) -> None:
    from covid_cxr.serving.bundle import assemble

    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "letter.txt").write_text("keep me\n")
    with pytest.raises(OutputFolderError, match="did not write"):
        assemble(REPO_ROOT / "space", documents, "org/model")
    with pytest.raises(OutputFolderError, match="is the input folder the Space source"):
        assemble(REPO_ROOT / "space", REPO_ROOT / "space", "org/model")
    assert listing(documents) == {"letter.txt": hashlib.sha1(b"keep me\n").hexdigest()}
    folder = assemble(REPO_ROOT / "space", tmp_path / "space", "org/model")  # a Hub id: nothing to copy
    assert (folder / "MODEL_ID").read_text() == "org/model\n" and (folder / "app.py").is_file()
    assemble(REPO_ROOT / "space", folder, "org/other")  # an earlier bundle is replaced
    assert (folder / "MODEL_ID").read_text() == "org/other\n"


def test_unreadable_input_is_one_error_line(tmp_path: Path) -> None:
    folders = tmp_path / "folders"
    (folders / "covid").mkdir(parents=True)
    (folders / "checkpoint-1").mkdir()  # class folders with one that names no label, as a misplaced model's
    done = build(str(folders), str(tmp_path / "out"), cwd=REPO_ROOT)
    assert done.returncode != 0 and "checkpoint-1 are not a known label" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_finetune_help_shows_the_checkout_defaults() -> None:
    script = REPO_ROOT / "train" / "finetune.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout
    words = " ".join(out.split())  # argparse wraps long lines
    assert (
        f"(default: {REPO_ROOT / 'build' / 'dataset'})" in words
        and f"(default: {REPO_ROOT / 'build' / 'model'})" in words
    )
