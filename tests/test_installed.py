"""A user's own images with the installed wheel, from a folder outside the checkout: class folders of real
X-rays (one source) -> `covid-cxr build` -> `covid-cxr finetune` (2 steps) -> `covid-cxr predict` (a broken file
and a DICOM among the inputs) -> `covid-cxr serve`; the card makes no claim about the curated collection, and
`pipeline()` scores with the model."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT, read_metadata, write_dicom

pytestmark = pytest.mark.slow

# What a card may say only of the curated public collection, never of a user's own class folders
CURATED_CLAIMS = ("public collection", "NIH", "ChestX-ray14", "hospitals the images", "curated", "CC BY-NC")


def class_folders(fixture_root: Path, target: Path) -> Path:
    """The fixture's real X-rays sorted into covid/ and non_covid/, as a user's folder would be."""
    for row in read_metadata(fixture_root):
        folder = target / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixture_root / row["file_name"], folder)
    return target


def dicom_of(image: Path, target: Path) -> Path:
    """A real film as a 12-bit MONOCHROME2 DICOM with a patient name (which must never surface)."""
    pixels = np.asarray(Image.open(image).convert("L"), dtype=np.uint16) * 16
    return write_dicom(target, pixels, PatientName="Secret^Patient")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout, installed (no deps: the test environment has them) into a
    folder of its own; its `bin/covid-cxr` is the console script pip made."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in ("covid_cxr", "pyproject.toml", "README.md", "dataset_card.md", "model_card.md"):
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, source / name, **({"symlinks": True} if copy is shutil.copytree else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root, source], check=True)
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, next(root.glob("covid_cxr-*.whl"))], check=True)
    return site


def covid_cxr(site: Path, cwd: Path, *args: str, succeeds: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1", COVID_CXR_CACHE=str(cwd / "cache"))
    result = subprocess.run(
        [str(site / "bin" / "covid-cxr"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert (result.returncode == 0) == succeeds, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_own_images_end_to_end_from_the_wheel(
    installed: Path, fixture_root: Path, backbone: Path, lungs_folder: Path, tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"  # outside the checkout: nothing may depend on the working folder
    work.mkdir()
    xrays = class_folders(fixture_root, work / "myxrays")

    covid_cxr(installed, work, "build", "--input_dir", "myxrays", "--output_dir", "ds", "--num_proc", "1")
    assert (work / "ds" / "dataset_dict.json").is_file()
    tiny = ["--image_size", "56", "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none"]
    covid_cxr(installed, work, "finetune", "--dataset", "ds", "--output_dir", "model", "--model_name_or_path",
              str(backbone), "--lung_segmenter", str(lungs_folder), *tiny)  # fmt: skip

    # a finished model is published (here a dry run) without training again, and nothing local goes up
    covid_cxr(installed, work, "finetune", "--dataset", "ds", "--output_dir", "model", "--model_name_or_path",
              str(backbone), "--lung_segmenter", str(lungs_folder), *tiny, "--hub_repo_id", "me/cxr", "--dry_run",
              "upload")  # fmt: skip
    uploaded = {p.relative_to(work / "upload").as_posix() for p in (work / "upload").rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= uploaded
    assert not any(name.startswith("checkpoint-") or name.startswith("run_") for name in uploaded)
    assert str(work) not in "".join((work / "upload" / name).read_text() for name in uploaded if name.endswith(".json"))

    card = (work / "model" / "README.md").read_text()
    assert "one source (`myxrays`)" in card
    assert "This recipe was not cross-validated on this data" in card and "Cross-validated:" not in card
    for claim in CURATED_CLAIMS:
        assert claim not in card, claim
    assert str(work) not in card and "a local dataset (not on the Hub)" in card

    inputs = work / "to-score"
    inputs.mkdir()
    films = sorted((xrays / "covid").iterdir())[:2]
    for film in films:
        shutil.copy(film, inputs)
    dicom_of(films[0], inputs / "film.dcm")
    (inputs / "broken.png").write_bytes(films[1].read_bytes()[:2000])
    result = covid_cxr(installed, work, "predict", "--model", "model", "--inputs", "to-score", "--output",
                       "scores.csv", "--lung_segmenter", str(lungs_folder))  # fmt: skip
    with (work / "scores.csv").open(newline="") as handle:
        rows = {Path(row["file"]).name: row for row in csv.DictReader(handle)}
    assert set(rows) == {films[0].name, films[1].name, "film.dcm", "broken.png"}
    assert rows["broken.png"]["status"] == "unreadable" and rows["broken.png"]["reason"]
    for name in (films[0].name, films[1].name):
        if rows[name]["status"] == "ok":
            assert 0 <= float(rows[name]["covid_probability"]) <= 1
            assert 0 <= float(rows[name]["lung_attention"]) <= 1
    assert rows["film.dcm"]["status"] in ("ok", "out of scope"), rows["film.dcm"]  # read, whatever the verdict
    assert "Secret" not in (work / "scores.csv").read_text() + result.stdout + result.stderr
    assert "of 4 file(s) into scores.csv" in result.stdout

    # the audit, from the wheel, on a Hub-style copy of the model it did not train (no card, no reports)
    foreign = work / "someone-elses-model"
    foreign.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(work / "model" / name, foreign)
    result = covid_cxr(installed, work, "audit", "--model", str(foreign), "--data", "ds", "--split", "all",
                       "--lung_segmenter", str(lungs_folder), "--output_dir", "audit",
                       "--bootstrap_rounds", "200")  # fmt: skip
    report = json.loads((work / "audit" / "audit.json").read_text())
    assert report["data"]["n_scored"] + len(report["refused"]) == 15 and report["occlusion"]["all"]["n"] > 0
    assert (work / "audit" / "AUDIT.md").is_file() and "Wrote audit/audit.json" in result.stdout

    from transformers import pipeline

    scores = pipeline("image-classification", model=str(work / "model"))(str(films[0]))
    assert {r["label"] for r in scores} == {"covid", "non_covid"}

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(installed), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with (work / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [str(installed / "bin" / "covid-cxr"), "serve", "--model", "model", "--port", str(port)],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline, page = time.time() + 180, None
        while page is None and time.time() < deadline and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None and "gradio" in page.lower(), (work / "serve.log").read_text()[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_lungs_first_model_from_the_wheel_is_one_model(
    installed: Path, fixture_root: Path, backbone: Path, lungs_folder: Path, tmp_path: Path
) -> None:
    """Lungs first end to end outside the checkout: `--lung_segmenter` trains the one model, whose folder carries
    the wheel's modeling file, and predict scores with it alone."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    xrays = class_folders(fixture_root, work / "myxrays")
    covid_cxr(installed, work, "build", "--input_dir", "myxrays", "--output_dir", "ds", "--num_proc", "1")
    tiny = ["--image_size", "56", "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none"]
    trained = covid_cxr(installed, work, "finetune", "--dataset", "ds", "--output_dir", "model",
                        "--model_name_or_path", str(backbone), "--lung_segmenter", str(lungs_folder),
                        "--linear_probe", "false", *tiny)  # fmt: skip
    assert "Lungs first: the model finds the lungs" in trained.stdout  # the fine-tune logs to standard output
    config = json.loads((work / "model" / "config.json").read_text())
    assert config["model_type"] == "covid-cxr-lungs-first" and "lung_focus" not in config
    wheel_file = next(installed.rglob("covid_cxr/modeling/lungs_first.py"))
    assert (work / "model" / "lungs_first.py").read_text() == wheel_file.read_text()
    assert "This model is lungs first" in (work / "model" / "README.md").read_text()

    film = sorted((xrays / "covid").iterdir())[0]
    covid_cxr(installed, work, "predict", "--model", "model", "--inputs", str(film), "--output", "b.csv")
    with (work / "b.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["status"] in ("ok", "out of scope"), row
    if row["status"] == "ok":
        assert float(row["lung_attention_ratio"]) > 0


def test_every_command_answers_help_with_its_defaults(installed: Path, tmp_path: Path) -> None:
    from covid_cxr.cli import COMMANDS

    for command in COMMANDS:
        text = covid_cxr(installed, tmp_path, command, "--help").stdout
        entries = [e for e in re.split(r"\n(?=  -)", text.split("options:", 1)[1]) if e.lstrip().startswith("--")]
        assert entries, command
        for entry in entries:  # every flag's help ends with its default, or says it is required
            assert "(default:" in entry or "(required)" in entry, f"{command}: {entry}"
