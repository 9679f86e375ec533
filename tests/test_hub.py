"""Publishing that cannot half-fail: the pre-flight before any work, private repos, dry runs that write exactly
what a push would upload, and re-pushes that leave no stale shard. The Hub is a recorder (tests/conftest.FakeHub);
the datasets are built from the fixture's real X-rays."""

from __future__ import annotations

from pathlib import Path

import pytest

from covid_cxr.cli import build as build_command
from covid_cxr.cli import finetune as finetune_command
from covid_cxr.hub import HubPreflightError, model_operations, preflight, push_model

REPO = "test-org/cxr"


def build(fixture_root: Path, output: Path, *flags: str) -> None:
    build_command.main(["--input_dir", str(fixture_root), "--output_dir", str(output), "--num_proc", "1", *flags])


def without_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # no stored token either


@pytest.mark.parametrize("repo_id", ["no owner", "cxr", "org/name/extra", "org/bad..name"])
def test_preflight_refuses_an_invalid_repo_id(repo_id: str) -> None:
    with pytest.raises(HubPreflightError, match="is not a valid Hub repo id"):
        preflight(repo_id, dry_run=True)


def test_preflight_needs_a_token_unless_dry_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    without_token(monkeypatch, tmp_path)
    with pytest.raises(HubPreflightError, match="no Hugging Face token"):
        preflight(REPO, "dataset")
    preflight(REPO, "dataset", dry_run=True)


def test_preflight_offline_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")  # the real HfApi, offline (tests set HF_HUB_OFFLINE)
    with pytest.raises(HubPreflightError, match="HF_HUB_OFFLINE is set"):
        preflight(REPO, "model")


def test_a_push_that_cannot_happen_stops_before_the_build(
    fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    without_token(monkeypatch, tmp_path)
    output = tmp_path / "dataset"
    with pytest.raises(SystemExit, match="no Hugging Face token"):
        build(fixture_root, output, "--push_to_hub", REPO)
    assert not output.exists()
    with pytest.raises(SystemExit, match="not a valid Hub repo id"):
        finetune_command.main(["--dataset", str(output), "--output_dir", str(tmp_path / "m"), "--hub_repo_id", "x y"])
    assert not (tmp_path / "m").exists()


def test_dataset_push_is_private_one_commit_and_deletes_stale_shards(
    fixture_root: Path, tmp_path: Path, fake_hub
) -> None:
    stale = fake_hub.root / REPO / "data" / "train-00000-of-00002.parquet"  # an earlier push with two shards
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old shard")
    kept = fake_hub.root / REPO / "notes.md"  # not a shard: a re-push leaves it
    kept.write_text("the owner's notes")

    build(fixture_root, tmp_path / "dataset", "--push_to_hub", REPO, "--hub_private")

    assert fake_hub.repos[REPO] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    (commit,) = fake_hub.commits
    assert commit["deleted"] == ["data/train-00000-of-00002.parquet"]
    shards = sorted(path for path in fake_hub.list_repo_files(REPO) if path.startswith("data/"))
    assert shards == sorted(path for path in commit["added"] if path.startswith("data/"))
    assert {"README.md", "LICENSE.md", "build_report.json", "intensity_histogram.png"} <= set(commit["added"])
    assert kept.is_file()
    assert (tmp_path / "dataset" / "hub_repo_id.txt").read_text().strip() == REPO


def test_dry_run_writes_exactly_what_the_push_uploads(
    fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub
) -> None:
    build(fixture_root, tmp_path / "pushed", "--push_to_hub", REPO)
    (commit,) = fake_hub.commits
    without_token(monkeypatch, tmp_path)
    dry = tmp_path / "upload"
    build(fixture_root, tmp_path / "dry", "--push_to_hub", REPO, "--dry_run", str(dry))

    assert len(fake_hub.commits) == 1  # the dry run sent nothing
    written = sorted(p.relative_to(dry).as_posix() for p in dry.rglob("*") if p.is_file())
    assert written == sorted(commit["added"])
    for name in written:  # the same bytes (the build is deterministic), the card included
        assert (dry / name).read_bytes() == (fake_hub.root / REPO / name).read_bytes(), name
    assert not (tmp_path / "dry" / "hub_repo_id.txt").exists()  # nothing was pushed


def model_folder(root: Path) -> Path:
    """A finished run's folder: what is published and what stays local (checkpoints, the resume fingerprint)."""
    for name in ("config.json", "model.safetensors", "README.md", "roc_curve.png", "run_fingerprint.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    for name in ("checkpoint-2/model.safetensors", "checkpoint-2/optimizer.pt", "runs/events", "training_args.bin"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return root


def test_model_push_is_private_when_asked_and_never_sends_checkpoints(tmp_path: Path, fake_hub) -> None:
    folder = model_folder(tmp_path / "model")
    push_model(folder, REPO, private=True)
    assert fake_hub.repos[REPO] == {"private": True, "exist_ok": True}
    (commit,) = fake_hub.commits
    assert sorted(commit["added"]) == ["README.md", "config.json", "model.safetensors", "roc_curve.png"]
    assert sorted(op.path_in_repo for op in model_operations(folder)) == sorted(commit["added"])
