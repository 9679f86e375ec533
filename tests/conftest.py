"""Shared fixtures: every image-level test uses real chest X-rays.

Two tiers. The fast one reads the 15 CC BY images of tests/fixtures/cxr (see its ATTRIBUTION.md) and needs
nothing else; `pytest -m "not slow"` runs it. Every test that needs ../shared/cxr (or $COVID_CXR_DATA), the
converted backbone or a trained model is marked `slow` here, from the fixtures it uses.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from transformers import TrainerCallback

from bench import scoring
from covid_cxr.data.build import BuildConfig, build_dataset
from covid_cxr.modeling.backbones import materialise
from covid_cxr.training.arguments import CxrTrainingArguments, DataArguments, EvaluationArguments, ModelArguments
from covid_cxr.training.run import run

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_ROOT = REPO_ROOT / "tests" / "fixtures" / "cxr"
SLOW_FIXTURES = {
    "cxr_root",
    "metadata",
    "small_cxr",
    "backbone",
    "small_dataset",
    "trained",
    "lung_data",
    "lungs_folder",
}
CARD_DATASET_ID = "test-org/covid-cxr-data"  # what the tiny runs' cards name as their dataset
CXR_ROOT = Path(os.environ.get("COVID_CXR_DATA", REPO_ROOT.parent / "shared" / "cxr"))
# two processes under `accelerate launch`, over gloo on the CPU (--multi_gpu picks torchrun's launcher)
LAUNCH = [sys.executable, *scoring.LAUNCH]
LAUNCH_ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    """15 real CC BY chest X-rays in the curated layout, shipped with the tests."""
    return FIXTURE_ROOT


def read_metadata(root: Path = CXR_ROOT) -> list[dict[str, str]]:
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def cxr_root() -> Path:
    if not (CXR_ROOT / "metadata.csv").is_file():
        pytest.fail(f"real data not found at {CXR_ROOT}; put ../shared beside the repo or set COVID_CXR_DATA")
    return CXR_ROOT


@pytest.fixture(scope="session")
def metadata(cxr_root: Path) -> list[dict[str, str]]:
    return read_metadata(cxr_root)


def write_subset(rows: list[dict[str, str]], source_root: Path, target: Path) -> Path:
    """Copy the given metadata rows and their images into a new curated-layout folder."""
    (target / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copyfile(source_root / row["file_name"], target / row["file_name"])
    with (target / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def pick_subset(metadata: list[dict[str, str]], per_stratum: int = 8) -> list[dict[str, str]]:
    """The first `per_stratum` images of every source x label: small, real, and with both classes."""
    taken: dict[tuple[str, str], int] = {}
    rows = []
    for row in metadata:
        key = (row["source"], row["label"])
        if taken.get(key, 0) < per_stratum:
            taken[key] = taken.get(key, 0) + 1
            rows.append(row)
    return rows


@pytest.fixture
def small_cxr(tmp_path: Path, cxr_root: Path, metadata: list[dict[str, str]]) -> Path:
    """A curated-layout copy of real images (up to 8 per source x label) that tests may damage."""
    return write_subset(pick_subset(metadata), cxr_root, tmp_path / "cxr")


def tiny_run_arguments(
    backbone: Path,
    dataset: Path,
    output_dir: Path,
    lungs: Path | None = None,
    lung_focus: bool = True,
    onnx: bool = False,
    **training,
) -> tuple:
    """Arguments for a few CPU training steps at 56 px: fast, but every stage of `run` is exercised (with a
    segmenter folder, `lungs`, the lungs-first model, the lung attention share and the occlusion test;
    `lung_focus=False` trains the plain classifier beside it; the ONNX export when asked)."""
    defaults = dict(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=32,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=True,
    )
    return (
        ModelArguments(
            model_name_or_path=str(backbone),
            image_size=56,
            trainable_blocks=2,
            lung_segmenter=str(lungs) if lungs else None,
        ),
        DataArguments(dataset=str(dataset), dataset_hub_id=CARD_DATASET_ID, lung_focus=lung_focus),
        EvaluationArguments(target_sensitivity=0.9, onnx=onnx),
        CxrTrainingArguments(**(defaults | training)),
    )


class Crash(TrainerCallback):
    """Kills a training run at step 3, after its checkpoint of step 2, as a crash would."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="session")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialise("dinov2-small-imgfocus", tmp_path_factory.mktemp("backbones"))


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, cxr_root: Path, metadata) -> Path:
    root = tmp_path_factory.mktemp("data")
    source = write_subset(pick_subset(metadata, per_stratum=10), cxr_root, root / "cxr")
    build_dataset(BuildConfig(input_dir=source, output_dir=root / "dataset", max_size=96))
    return root / "dataset"


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, backbone: Path, small_dataset: Path, lungs_folder: Path
) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("model")
    return output, run(*tiny_run_arguments(backbone, small_dataset, output, lungs=lungs_folder, onnx=True))


@pytest.fixture(scope="session")
def lung_data(cxr_root: Path, backbone: Path):
    """A segmenter (its default input and layers, head untrained) and 40 masked images of 40 patients with their
    patch tokens."""
    from covid_cxr.lungs.fitting import read_mask, read_pairs, token_features
    from covid_cxr.lungs.segmenter import LungSegmenter

    by_patient = {p.patient_id: p for p in read_pairs(cxr_root.parent / "cxr-lung-masks", cxr_root)}
    chosen = list(by_patient.values())[:40]
    segmenter = LungSegmenter.from_backbone(backbone)
    features = token_features(segmenter, [p.image for p in chosen])
    return segmenter, chosen, features, [read_mask(p.mask) for p in chosen]


@pytest.fixture(scope="session")
def lungs_folder(lung_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That segmenter fitted on all 40 masks and saved, as `make lungs` saves one."""
    from covid_cxr.lungs.fitting import TARGET_SCALE, fit_head, mask_targets

    segmenter, _, features, masks = lung_data
    fit_head(segmenter, features, mask_targets(masks, features.shape[-1] * TARGET_SCALE))
    folder = tmp_path_factory.mktemp("lungs")
    segmenter.save_pretrained(folder)
    return folder


def fit_standard(lung_data, lungs: Path, folder: Path):
    """The standard segmenter (UperNet) over the segmenter in `lungs`, its head fitted on the same 40 masks as
    `covid-cxr train-lungs` fits it, saved into `folder`; the model and its feature maps."""
    from covid_cxr.lungs.fitting import TARGET_SCALE, mask_targets, train_head
    from covid_cxr.lungs.segmenter import LungSegmenter
    from covid_cxr.lungs.standard import EPOCHS, lung_logits, save_standard, stage_features, standard_model

    _, _, features, masks = lung_data
    project = LungSegmenter.from_pretrained(lungs)
    standard, stages = standard_model(project), stage_features(project, features)
    targets = mask_targets(masks, features.shape[-1] * TARGET_SCALE)
    train_head(standard.decode_head, lambda batch: lung_logits(standard, batch), stages, targets, EPOCHS)
    save_standard(standard, project, folder)
    return standard, stages


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    modality: str = "CR",
    frames: int = 1,
    with_pixels: bool = True,
    **elements: object,
) -> Path:
    """A minimal but valid DICOM file holding `pixels` (uint16), written with pydicom; `elements` are further data
    elements by keyword (WindowCenter=..., PatientName=...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "test"
    if with_pixels:
        data = np.repeat(pixels[None], frames, axis=0) if frames > 1 else pixels
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = data.astype(np.uint16).tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


class FakeHub:
    """Stands in for `huggingface_hub.HfApi` (patched into covid_cxr.hub): repos are folders under `root`, and
    every call is recorded as it would be sent (create_repo's arguments, each commit's operations)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repos: dict[str, dict] = {}  # repo id -> create_repo's keyword arguments
        self.commits: list[dict] = []  # {"repo_id", "repo_type", "added", "deleted"}

    def __call__(self, *args, **kwargs) -> FakeHub:  # HfApi() gives this same recorder
        return self

    def create_repo(self, repo_id: str, **kwargs) -> None:
        self.repos.setdefault(repo_id, kwargs)

    def list_repo_files(self, repo_id: str, repo_type: str | None = None, **kwargs) -> list[str]:
        folder = self.root / repo_id
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def create_commit(self, repo_id: str, operations, repo_type: str | None = None, **kwargs) -> None:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        assert repo_id in self.repos, "a commit to a repo that was never created"
        folder, added, deleted = self.root / repo_id, [], []
        for op in operations:
            target = folder / op.path_in_repo
            if isinstance(op, CommitOperationDelete):
                target.unlink()
                deleted.append(op.path_in_repo)
            elif isinstance(op, CommitOperationAdd):
                target.parent.mkdir(parents=True, exist_ok=True)
                source = op.path_or_fileobj
                target.write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
                added.append(op.path_in_repo)
        self.commits.append({"repo_id": repo_id, "repo_type": repo_type, "added": added, "deleted": deleted})


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The Hub as a recorder, with a token present, so every push path runs to its last call offline."""
    import covid_cxr.hub

    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(covid_cxr.hub, "HfApi", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    return hub
