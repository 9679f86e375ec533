"""The `covid-cxr` command's parsing: config files with overrides, refused flags with their reason, mistakes in one
line before any work (fast tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from covid_cxr.cli import main as covid_cxr
from covid_cxr.cli.finetune import main as finetune
from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.cli.predict import main as predict
from covid_cxr.training.arguments import (
    REFUSED_TRAINER_FLAGS,
    CxrTrainingArguments,
    DataArguments,
    EvaluationArguments,
    ModelArguments,
)

FINETUNE = (ModelArguments, DataArguments, EvaluationArguments, CxrTrainingArguments)
PATHS = ["--dataset", "ds", "--output_dir", "out"]


def parse(*argv: str) -> tuple:
    return parse_arguments(FINETUNE, list(argv), prog="covid-cxr finetune", description=None,
                           refused=REFUSED_TRAINER_FLAGS)  # fmt: skip


def test_a_config_file_comes_first_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 1e-3\nimage_size: 224\nno_linear_probe: true\nnum_train_epochs: 7\n")
    model_args, _, eval_args, training_args = parse(str(config), *PATHS, "--learning_rate", "1e-4")
    assert training_args.learning_rate == 1e-4  # the flag wins
    assert (model_args.image_size, training_args.num_train_epochs) == (224, 7)  # the file's, over the defaults
    assert eval_args.linear_probe is False  # `no_flag: true`, as --help lists the flag


@pytest.mark.parametrize(
    ("content", "argv", "message"),
    [
        ("bogus: 1\n", [], "unknown flag(s): bogus"),
        ("learning_rate: 1e-3\n", ["LATE"], "must come first"),
        ("- a list\n", [], "must hold `flag: value` pairs"),
    ],
)
def test_config_mistakes_are_one_line(tmp_path: Path, capsys, content: str, argv: list[str], message: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(content)
    args = [*PATHS, str(config)] if argv == ["LATE"] else [str(config), *PATHS]
    with pytest.raises(SystemExit) as exit_status:
        parse(*args)
    err = capsys.readouterr().err + str(exit_status.value.code)
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 3, err


@pytest.mark.parametrize("flag", sorted(REFUSED_TRAINER_FLAGS))
def test_trainer_hub_flags_are_hidden_and_refused_with_the_reason(flag: str, capsys) -> None:
    value = {"push_to_hub": [], "hub_always_push": [], "hub_private_repo": ["true"], "hub_strategy": ["end"]}
    value = value.get(flag, ["x"])
    with pytest.raises(SystemExit):
        parse(*PATHS, f"--{flag}", *value)
    assert REFUSED_TRAINER_FLAGS[flag] in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--help")
    assert f"--{flag} " not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--max_step", "3"], None),  # a prefix of --max_steps is no longer taken for it
        (["--epochs", "3"], "--epochs: did you mean --num_train_epochs?"),
        (["--lr", "1e-3"], "--lr: did you mean --learning_rate?"),
        (["--learning_rat", "1e-3"], "--learning_rat: did you mean --learning_rate?"),
    ],
)
def test_a_flag_must_be_spelled_whole_and_a_near_miss_is_named(capsys, argv: list[str], hint: str | None) -> None:
    with pytest.raises(SystemExit):
        parse(*PATHS, *argv)
    err = capsys.readouterr().err
    assert f"unrecognised arguments: {' '.join(argv)}" in err and (hint is None or hint in err), err


def test_help_keeps_a_hyphenated_default_whole_and_says_what_a_no_flag_turns_off(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    folder = "/home/some-user/projects/a-clone-of-covid-cxr/build/dataset"  # longer than a help line
    with pytest.raises(SystemExit):
        parse_arguments(FINETUNE, ["--help"], prog="covid-cxr finetune", description=None,
                        defaults={"dataset": folder})  # fmt: skip
    out = capsys.readouterr().out
    assert f"{folder})" in out  # neither split at a hyphen nor cut, so it can be copied
    assert "Turn off --linear_probe (default: on).\n" in out


def test_a_required_flag_is_named_in_the_usage_line(capsys) -> None:
    with pytest.raises(SystemExit):
        finetune(["--dataset", "ds"])
    err = capsys.readouterr().err
    usage = err.splitlines()[0]
    assert usage.startswith("usage: covid-cxr finetune [CONFIG.yaml]") and "--output_dir OUTPUT_DIR" in usage
    assert "required: --output_dir" in err


def test_predict_refuses_missing_inputs_and_an_output_inside_them(fixture_root: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file or folder"):
        predict(["--model", "m", "--inputs", str(tmp_path / "nope"), "--output", str(tmp_path / "s.csv")])
    images = fixture_root / "images"
    with pytest.raises(SystemExit, match="lies inside the input folder --inputs"):
        predict(["--model", "m", "--inputs", str(images), "--output", str(images / "s.csv")])
    (tmp_path / "s.csv").write_text("an earlier run's scores")
    with pytest.raises(SystemExit, match="--overwrite"):
        predict(["--model", "m", "--inputs", str(images), "--output", str(tmp_path / "s.csv")])
    assert (tmp_path / "s.csv").read_text() == "an earlier run's scores"


def test_the_command_lists_its_subcommands(capsys) -> None:
    covid_cxr(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("build", "finetune", "predict", "audit", "serve"))
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        covid_cxr(["trian"])
