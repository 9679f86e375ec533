"""The package runs from any folder: it writes nothing where it is started, and its inputs are named by flags."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from transformers import HfArgumentParser

from covid_cxr.cards.cross_validation import cross_validated
from covid_cxr.cards.model import Recipe
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.grouped import Evaluation
from covid_cxr.evaluation.keys import ALL, MIXED, QUOTED, TEST
from covid_cxr.modeling.backbones import resolve_backbone
from covid_cxr.modeling.backbones.cache import CACHE_ENV, backbone_root
from covid_cxr.serving.app import examples_folder, model_location
from covid_cxr.serving.bundle import PACKAGE_ROOT, assemble, runtime_modules
from covid_cxr.serving.predictor import headline_figures
from covid_cxr.training.arguments import CxrTrainingArguments, DataArguments
from tests.conftest import REPO_ROOT
from tests.test_packaging import third_party_imports

IMPORT_ALL = """
import importlib, pkgutil
import covid_cxr
for module in pkgutil.walk_packages(covid_cxr.__path__, "covid_cxr."):
    importlib.import_module(module.name)
"""
COMMANDS = (
    ["train/build_dataset.py"],
    ["train/finetune.py"],
    ["train/train_lungs.py"],
    ["train/convert_backbone.py"],
    ["space/deploy.py"],
    ["-m", "covid_cxr.cli.lungs"],
)


def _checkout_entries() -> set[str]:
    """Every untracked or ignored path of the checkout, as git lists them."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", ".", ":(exclude).venv"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line[3:] for line in status.splitlines() if line[:2] in ("??", "!!")}


@pytest.mark.slow
def test_imports_and_help_write_nothing_anywhere(tmp_path: Path) -> None:
    workdir, cache = tmp_path / "elsewhere", tmp_path / "cache"
    workdir.mkdir()
    env = os.environ | {CACHE_ENV: str(cache), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    before = _checkout_entries()
    runs = [[sys.executable, "-c", IMPORT_ALL]]
    runs += [[sys.executable, *(str(REPO_ROOT / a) if a.endswith(".py") else a for a in c), "--help"] for c in COMMANDS]
    for command in runs:
        result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    assert not list(workdir.iterdir()) and not cache.exists()
    created = _checkout_entries() - before
    assert not created, created


def test_missing_inputs_name_their_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        HfArgumentParser((DataArguments, CxrTrainingArguments)).parse_args_into_dataclasses([])
    assert "--dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        from covid_cxr.cli.lungs import main

        main(["--input_dir", "in", "--output_dir", "out"])
    assert "--model" in capsys.readouterr().err


def test_offline_backbones_live_in_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backbone_root() == tmp_path / "xdg" / "covid-cxr" / "backbones"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    converted = backbone_root() / "dinov2-small-imgfocus"
    converted.mkdir(parents=True)
    (converted / "provenance.json").write_text("{}")  # an earlier conversion: found, not redone
    assert resolve_backbone("dinov2-small-imgfocus") == str(converted)
    assert not list(Path.cwd().iterdir())


def test_the_space_looks_in_no_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL", "LUNGS", "DATASET"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "build" / "dataset").mkdir(parents=True)
    (tmp_path / "build" / "dataset" / "dataset_dict.json").write_text("{}")
    assert model_location(tmp_path / "app", None) is None and examples_folder(tmp_path / "app", None) is None
    assert model_location(tmp_path / "app", tmp_path / "checkout") == str(tmp_path / "checkout" / "model")


def test_the_space_quotes_only_keys_the_reports_write(tmp_path: Path) -> None:
    """Every figure the Space quotes is one the fine-tune's writers put into all_results.json: the evaluation's
    (real metrics of a few scores) and the cross-validation the card quotes for its recipe."""
    values = load_cxr_metric().compute(predictions=[0.2, 0.9, 0.7, 0.4], references=[0, 1, 1, 0], threshold=0.5)
    written = Evaluation(["a"], {ALL: values, MIXED: values}, {ALL: values, MIXED: values}, 0.0).by_split()[TEST]
    recipe = Recipe(168, 2, 3.0, 32, 5e-4, "cosine", 0.05, 42, "fp32", 3)
    cv = {"n": 463, "roc_auc": 0.7, "roc_auc_low": 0.65, "roc_auc_high": 0.75}
    headline = {"recipe": asdict(recipe), "backbone": "ViT-S", "folds": 5, "metrics": {MIXED: cv, ALL: cv}}
    (tmp_path / "quality.json").write_text(json.dumps({"headline": headline | {"dataset_digest": "abc"}}))
    written |= cross_validated(str(tmp_path / "quality.json"), recipe, "ViT-S", "abc")
    assert set(QUOTED) <= set(written), set(QUOTED) - set(written)
    assert None not in headline_figures(written).values()


def _normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _installed_by(requirements: Path) -> set[str]:
    """The distributions a requirements file installs, with everything they require (as installed here)."""
    pending = [Requirement(line).name for line in requirements.read_text().splitlines() if line and line[0] not in "#-"]
    found: set[str] = set()
    while pending:
        name = _normalised(pending.pop())
        if name in found:
            continue
        found.add(name)
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def test_the_space_bundle_holds_what_the_app_imports_and_nothing_else(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    folder = assemble(REPO_ROOT / "space", tmp_path / "space", str(model))
    shipped = {p.relative_to(folder) for p in (folder / "covid_cxr").rglob("*.py")}
    assert shipped == {p.relative_to(PACKAGE_ROOT.parent) for p in runtime_modules()}
    assert not (folder / "covid_cxr" / "training").exists() and not (folder / "covid_cxr" / "cards").exists()

    providers = importlib.metadata.packages_distributions()
    imported = set().union(*(third_party_imports(folder / path) for path in shipped))
    installed = _installed_by(folder / "requirements.txt")
    missing = {name for name in imported if not {_normalised(d) for d in providers.get(name, [name])} & installed}
    assert not missing, f"the Space imports {missing} but its requirements.txt does not install them"

    check = "import covid_cxr, covid_cxr.serving.app, sys; assert covid_cxr.__file__.startswith(sys.argv[1])"
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", check, str(folder)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
