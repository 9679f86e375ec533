"""Resume only what the same run started: a checkpoint of other data, arguments, backbone or code is never resumed
silently, and a finished run rerun as it was is left as it is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import datasets
import pytest
from transformers import TrainerCallback

from covid_cxr.model_folder import FINGERPRINT as FINGERPRINT_FILE
from covid_cxr.training.arguments import (
    CxrTrainingArguments,
    DataArguments,
    EvaluationArguments,
    ModelArguments,
    RunArguments,
)
from covid_cxr.training.checkpoints import (
    COSMETIC_ARGUMENTS,
    StaleRunError,
    changes,
    plan_resume,
    run_fingerprint,
    start_run,
)
from covid_cxr.training.run import run
from tests.conftest import Crash, tiny_run_arguments
from tests.test_checkpoints import COMPLETE, checkpoint


def splits_of(labels: list[int]) -> datasets.DatasetDict:
    split = datasets.Dataset.from_dict({"file_name": [f"{i}.png" for i in range(len(labels))], "label": labels})
    return datasets.DatasetDict(train=split, validation=split)


@pytest.fixture
def backbone_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "backbone"
    folder.mkdir()
    (folder / "model.safetensors").write_text("weights")
    return folder


def fingerprint(backbone: Path, labels: tuple[int, ...] = (0, 1), output: str = "model", **training) -> dict:
    arguments = tiny_run_arguments(backbone, backbone.parent / "dataset", backbone.parent / output, **training)
    return run_fingerprint(RunArguments(*arguments), splits_of(list(labels)), str(backbone))


def test_the_fingerprint_follows_what_is_trained(backbone_folder: Path) -> None:
    reference = fingerprint(backbone_folder)
    assert {"model arguments", "training arguments", "dataset", "backbone", "code"} <= set(reference)
    cosmetic = fingerprint(backbone_folder, output="elsewhere", logging_steps=5, dataloader_num_workers=2)
    assert cosmetic == reference
    assert changes(reference, fingerprint(backbone_folder, max_steps=12)) == ["training arguments (max_steps: 2 -> 12)"]
    assert changes(reference, fingerprint(backbone_folder, labels=(1, 0))) == ["dataset"]
    (backbone_folder / "model.safetensors").write_text("other weights")
    assert changes(reference, fingerprint(backbone_folder)) == ["backbone"]


def test_another_runs_checkpoints_stop_the_run(tmp_path: Path, backbone_folder: Path) -> None:
    output = tmp_path / "model"
    old, new = fingerprint(backbone_folder), fingerprint(backbone_folder, max_steps=12)
    start_run(output, old, None)
    checkpoint(output, 2, COMPLETE)
    assert plan_resume(output, old, "auto") == str(output / "checkpoint-2")
    with pytest.raises(StaleRunError, match=r"max_steps: 2 -> 12.*--resume restart_on_change"):
        plan_resume(output, new, "auto")
    assert plan_resume(output, new, "restart_on_change") is None
    assert plan_resume(output, old, "never") is None
    (output / FINGERPRINT_FILE).unlink()  # checkpoints of a run that recorded no fingerprint
    with pytest.raises(StaleRunError, match=f"no readable {FINGERPRINT_FILE}"):
        plan_resume(output, old, "auto")
    (output / "all_results.json").write_text('{"cv_mixed_sources_roc_auc": 0.7}')  # the other run's figures
    (output / "cross_validation_results.json").write_text('{"cv_mixed_sources_roc_auc": 0.7}')
    (output / "notes.txt").write_text("the user's")
    start_run(output, new, None)  # starting over removes the other run's checkpoints and figures, nothing else
    assert not (output / "checkpoint-2").exists()
    assert not list(output.glob("*_results.json")) and (output / "notes.txt").is_file()
    assert json.loads((output / FINGERPRINT_FILE).read_text()) == {"finished": False, "fingerprint": new}


class Steps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def tiny(backbone: Path, dataset: Path, output: Path, **training) -> tuple:
    arguments = tiny_run_arguments(backbone, dataset, output, **training)
    arguments[2].linear_probe = False
    return arguments


def test_a_finished_run_rerun_as_it_was_is_left_as_it_is(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    arguments = tiny(backbone, small_dataset, tmp_path)
    results = run(*arguments)
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    steps = Steps()
    rerun = run(*arguments, callbacks=(steps,))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == written  # nothing rewritten
    assert steps.steps == []  # nothing trained
    assert rerun["test_roc_auc"] == results["test_roc_auc"]


def test_a_changed_run_stops_then_starts_over(tmp_path: Path, backbone: Path, small_dataset: Path) -> None:
    arguments = tiny(backbone, small_dataset, tmp_path, max_steps=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(*arguments, callbacks=(Crash(),))
    assert (tmp_path / "checkpoint-2").is_dir()
    arguments[0].trainable_blocks = 1  # the checkpoint's optimizer holds the parameters of 2 blocks
    with pytest.raises(StaleRunError, match=r"trainable_blocks: 2 -> 1"):
        run(*arguments)
    steps = Steps()
    restart = dataclasses.replace(arguments[3], resume="restart_on_change")
    run(arguments[0], arguments[1], arguments[2], restart, callbacks=(steps,))
    assert steps.steps == [1, 2, 3, 4]  # from the start, not from the other run's checkpoint-2


def test_every_cosmetic_argument_is_a_field_of_its_group() -> None:
    """A renamed or dropped field must leave COSMETIC_ARGUMENTS too, or a cosmetic change would silently become a
    changed run (and a changed field a cosmetic one)."""
    groups = {
        "model": ModelArguments,
        "data": DataArguments,
        "evaluation": EvaluationArguments,
        "training": CxrTrainingArguments,
    }
    stale = {
        group: sorted(names - {f.name for f in dataclasses.fields(groups[group])})
        for group, names in COSMETIC_ARGUMENTS.items()
    }
    assert set(COSMETIC_ARGUMENTS) == set(groups) and not any(stale.values()), stale
