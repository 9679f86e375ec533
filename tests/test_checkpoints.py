"""Crash-safe resume: a checkpoint killed while being written is set aside, the newest complete one is used, and
what was set aside goes once a complete checkpoint supersedes it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from transformers import TrainerState

from covid_cxr.training.checkpoints import TidyCheckpoints, newest_complete_checkpoint, tidy_checkpoints


def checkpoint(root: Path, step: int, files: dict[str, str]) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(content)
    return folder


COMPLETE = {"config.json": "{}", "model.safetensors": "weights", "trainer_state.json": json.dumps({"global_step": 2})}


def names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def test_killed_while_writing_the_weights(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    checkpoint(tmp_path, 4, {"config.json": "{}", "tmpabc.tmp": "half a file"})
    assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    tidy_checkpoints(tmp_path)
    assert (tmp_path / "incomplete-checkpoint-4" / "tmpabc.tmp").is_file()  # kept aside for inspection
    assert names(tmp_path) == {"checkpoint-2", "incomplete-checkpoint-4"}


def test_killed_before_or_while_writing_the_trainer_state(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    checkpoint(tmp_path, 4, {"config.json": "{}", "model.safetensors": "weights"})
    checkpoint(tmp_path, 6, COMPLETE | {"trainer_state.json": '{"global_step": '})  # cut mid-write
    checkpoint(tmp_path, 10, COMPLETE)  # numeric order, not text order: 10 is the newest
    assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-10" / "trainer_state.json").unlink()
    assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert len(names(tmp_path)) == 4  # asking moves nothing: every process of a run may ask
    tidy_checkpoints(tmp_path)
    assert names(tmp_path) == {
        "checkpoint-2",
        "incomplete-checkpoint-4",
        "incomplete-checkpoint-6",
        "incomplete-checkpoint-10",
    }


def test_a_second_kill_at_the_same_step(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    for attempt in ("first", "second"):  # two reruns, each killed while saving step 4
        checkpoint(tmp_path, 4, {"tmpabc.tmp": attempt})
        tidy_checkpoints(tmp_path)
        assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "incomplete-checkpoint-4" / "tmpabc.tmp").read_text() == "second"
    assert names(tmp_path) == {"checkpoint-2", "incomplete-checkpoint-4"}


def test_a_complete_checkpoint_removes_what_it_supersedes(tmp_path: Path) -> None:
    checkpoint(tmp_path, 2, COMPLETE)
    for step in (4, 6):
        checkpoint(tmp_path, step, {"tmpabc.tmp": "half a file"})
    tidy_checkpoints(tmp_path)
    checkpoint(tmp_path, 4, COMPLETE)  # the resumed run saved step 4 whole
    TidyCheckpoints().on_save(SimpleNamespace(output_dir=str(tmp_path)), TrainerState(), None)
    assert names(tmp_path) == {"checkpoint-2", "checkpoint-4", "incomplete-checkpoint-6"}


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert newest_complete_checkpoint(tmp_path / "not-yet") is None
    assert newest_complete_checkpoint(tmp_path) is None
