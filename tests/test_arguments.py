"""Training arguments and dataset loading: the errors a user meets before any training starts (fast tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from covid_cxr.training.arguments import CxrTrainingArguments, DataArguments
from covid_cxr.training.inputs import load_splits


@pytest.mark.parametrize("flag", [{"push_to_hub": True}, {"hub_model_id": "me/model"}])
def test_trainer_push_is_refused_in_favour_of_hub_repo_id(tmp_path: Path, flag: dict) -> None:
    with pytest.raises(ValueError, match="use --hub_repo_id"):
        CxrTrainingArguments(output_dir=str(tmp_path), **flag)


@pytest.mark.parametrize("name", ["no-such-folder", "build/never-built"])  # the second looks like a Hub id
def test_missing_dataset_says_how_to_build_it(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="make data"):
        load_splits(DataArguments(dataset=name))


def test_an_input_side_the_patches_do_not_tile_is_refused_before_anything_is_written(
    backbone: Path, small_dataset: Path, tmp_path: Path
) -> None:
    """DINOv2's 14 px patch embedding drops the remainder: at 170 px every film's last 2 px would never be seen."""
    from covid_cxr.cli.finetune import main as finetune

    output = tmp_path / "model"
    arguments = ["--model_name_or_path", str(backbone), "--dataset", str(small_dataset), "--output_dir", str(output)]
    with pytest.raises(SystemExit, match=r"--image_size 170 is not a multiple .* 14 px patches.* use 168 or 182"):
        finetune([*arguments, "--image_size", "170"])
    assert not output.exists()
