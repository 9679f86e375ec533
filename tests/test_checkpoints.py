"""Crash-safe resume: a checkpoint killed while being written is set aside, the newest complete one is used."""

from __future__ import annotations

import json
from pathlib import Path

from covid_cxr.training.checkpoints import last_complete_checkpoint


def checkpoint(root: Path, step: int, files: dict[str, str]) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(content)
    return folder


COMPLETE = {"config.json": "{}", "model.safetensors": "weights", "trainer_state.json": json.dumps({"global_step": 2})}


def test_killed_while_writing_the_weights(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    checkpoint(tmp_path, 4, {"config.json": "{}", "tmpabc.tmp": "half a file"})
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "incomplete-checkpoint-4" / "tmpabc.tmp").is_file()  # kept aside, not deleted
    assert not (tmp_path / "checkpoint-4").exists()


def test_killed_before_or_while_writing_the_trainer_state(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    checkpoint(tmp_path, 4, {"config.json": "{}", "model.safetensors": "weights"})
    checkpoint(tmp_path, 6, COMPLETE | {"trainer_state.json": '{"global_step": '})  # cut mid-write
    checkpoint(tmp_path, 10, COMPLETE)  # numeric order, not text order: 10 is the newest
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-10" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert {p.name for p in tmp_path.iterdir()} == {
        "checkpoint-2",
        "incomplete-checkpoint-4",
        "incomplete-checkpoint-6",
        "incomplete-checkpoint-10",
    }


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert last_complete_checkpoint(tmp_path / "not-yet") is None
    assert last_complete_checkpoint(tmp_path) is None
