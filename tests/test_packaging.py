"""The package as users get it: a wheel that holds and declares everything, and a layout whose imports point
inward (data -> modeling -> evaluation -> cards -> training / serving)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "covid_cxr"
# What each part of the package may import from the others (top-level leaves: labels, model_folder; every part
# may import model_folder, the one home of a model folder's file names).
ALLOWED = {
    "labels": set(),
    "model_folder": set(),
    "outputs": set(),
    "hub": set(),
    "data": {"outputs", "labels"},
    "modeling": {"outputs", "labels", "data"},
    "evaluation": {"outputs", "labels", "data", "modeling"},
    "scoring": {"hub", "data"},
    "lungs": {"outputs", "data", "modeling", "evaluation", "cards"},
    "cards": {"outputs", "labels", "data", "modeling", "evaluation"},
    "training": {"outputs", "labels", "hub", "data", "modeling", "evaluation", "cards", "lungs", "audit"},
    "serving": {"outputs", "labels", "hub", "data", "modeling", "evaluation", "cards", "lungs"},
    "audit": {"outputs", "labels", "hub", "data", "modeling", "evaluation", "cards", "lungs", "scoring"},
    "cli": {
        "outputs",
        "labels",
        "hub",
        "data",
        "modeling",
        "evaluation",
        "cards",
        "lungs",
        "training",
        "serving",
        "audit",
        "scoring",
    },
    "__main__": {"cli"},  # python -m covid_cxr: the command, nothing else
}
INSTALLED_CHECK = """
import importlib, pkgutil, sys
from pathlib import Path
import covid_cxr
assert Path(covid_cxr.__file__).is_relative_to(sys.argv[1]), covid_cxr.__file__
modules = [m.name for m in pkgutil.walk_packages(covid_cxr.__path__, "covid_cxr.")]
for name in modules:
    importlib.import_module(name)
from covid_cxr.cards.facts import data_facts
from dataclasses import replace
from covid_cxr.cards.model import ModelCardContext, Recipe, TrainingRun, render_model_card
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.grouped import Evaluation
from covid_cxr.modeling.backbones import mobilenet_tfjs
from covid_cxr.modeling.calibration import Calibration, Threshold
assert mobilenet_tfjs.READER.is_file()
values = load_cxr_metric().compute(predictions=[0.2, 0.9, 0.7, 0.4], references=[0, 1, 1, 0], threshold=0.5)
subsets = {"all": values, "mixed_sources": values}
context = ModelCardContext(
    evaluation=Evaluation(["ieee8023"], subsets, subsets, 0.01),
    calibration=Calibration(1.3, Threshold(0.5, 0.9, 1.0, 1.0)),
    baseline={},
    lung_attention={
        "test_lung_attention_mean": 0.8,
        "test_mixed_sources_lung_attention_mean": 0.7,
        "test_lung_attention_below_half": 0.1,
        "test_lung_attention_ratio_median": 2.1,
        "test_lung_attention_warned": 0.2,
        "test_lung_attention_warning_below": 1.2,
        "test_ieee8023_non_covid_lung_attention_warned": 0.25,
    },
    occlusion={},
    inside="Not measured: nothing recorded.",
    cross_validation={"cv_folds": 5.0, "cv_mixed_sources_n": 463.0, "cv_mixed_sources_roc_auc": 0.7,
                      "cv_mixed_sources_roc_auc_low": 0.6, "cv_mixed_sources_roc_auc_high": 0.8, "cv_n": 2086.0,
                      "cv_roc_auc": 0.95, "cv_roc_auc_low": 0.94, "cv_roc_auc_high": 0.96},
    backbone={"description": "test backbone"},
    base_model="facebook/dinov2-small",
    dataset_hub_id="org/cxr",
    facts=data_facts(["ieee8023", "nih_cxr14"], ["covid", "non_covid"], ["CC BY 4.0", "CC BY-NC-SA 4.0"]),
    split_sizes={"train": 2, "validation": 2, "test": 4},
    recipe=Recipe(168, 2, 3.0, 32, 5e-4, "cosine", 0.05, 42, "fp32", 3),
    hardware="CPU",
)
card = str(render_model_card(context))
assert "Not a medical device" in card and "{{" not in card and "org/cxr" in card, card[:500]
assert "80% of the\\nmodel's attention is on the lungs" in card, card
assert "Cross-validated: mixed-label ROC AUC 0.700 (95% CI 0.600-0.800), 5-fold" in card, card
assert "| ieee8023 | non_covid | 25% |" in card and "median\\n**2.1 times**" in card, card
stopped = " ".join(str(render_model_card(replace(context, run=TrainingRun(8, 20, 2, "roc_auc")))).split())
expected = ("It ran 8 of the 20 steps planned: early stopping ended it after 3 evaluations without a better "
            "validation `roc_auc`. The model is the checkpoint of step 2,")
assert expected in stopped, stopped
unknown = str(render_model_card(replace(context, test_without_patient=4)))
assert "patients unknown" in unknown and "covid-cxr build --patients" in unknown, unknown
assert "(test split, patients never seen in training)" in card, card
print(len(modules), "modules")
"""


STUDY_ONLY = (  # modules the product never ran, moved to study/ and devtools/ (issue 21)
    "covid_cxr/training/cross_validation.py",
    "covid_cxr/evaluation/cross_validation.py",
    "covid_cxr/data/intensity.py",
    "covid_cxr/serving/launcher.py",
)
OUTSIDE = ("bench", "study", "pages", "devtools", "tests")  # the rooms that use the package: it never imports them


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def internal_imports(path: Path) -> set[str]:
    """The covid_cxr sub-packages (or leaf modules) a file imports."""
    return {name.split(".")[1] for name in imported_modules(path) if name.startswith("covid_cxr.")}


def third_party_imports(path: Path) -> set[str]:
    found = {name.split(".")[0] for name in imported_modules(path) if name}
    return {name for name in found if name not in sys.stdlib_module_names and name != "covid_cxr"}


def test_imports_point_inward() -> None:
    offending = []
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if part in ("__init__",):
            continue
        for target in internal_imports(path) - ALLOWED[part] - {part, "model_folder"}:
            offending.append(f"{path.relative_to(REPO_ROOT)} imports covid_cxr.{target}")
        for name in imported_modules(path):
            if name.split(".")[0] in OUTSIDE:
                offending.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not offending


@pytest.mark.slow
def test_wheel_holds_and_declares_everything(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ("covid_cxr", "pyproject.toml", "README.md", "dataset_card.md", "model_card.md"):
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, source / name, **({"symlinks": True} if copy is shutil.copytree else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, source], check=True)
    wheel = next(tmp_path.glob("covid_cxr-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)

    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"covid_cxr"}
    assert not set(names) & set(STUDY_ONLY)  # the study's and the tests' modules moved out of the product
    declared = {
        re.split(r"[<>=!~ ;\[]", line.removeprefix("Requires-Dist: "))[0].lower().replace("_", "-")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ")
    }
    providers = importlib.metadata.packages_distributions()
    imported = set().union(*(third_party_imports(path) for path in PACKAGE.rglob("*.py")))
    undeclared = {
        name: providers.get(name)
        for name in imported
        if not {d.lower().replace("_", "-") for d in providers.get(name, [name])} & declared
    }
    assert not undeclared


def test_model_folder_names_have_one_home() -> None:
    """No module of the package but covid_cxr/model_folder.py types a model folder's file name or prefix (its
    writers and readers import it)."""
    from covid_cxr import model_folder

    every = {value for name, value in vars(model_folder).items() if name.isupper() and isinstance(value, str)}
    names = {name for name in every if "." in name or name.endswith("-")}  # files and prefixes, anywhere
    folders = every - names  # folder words ("onnx", "pipeline") are also a results section's name: caught in paths

    def typed_name(node: ast.AST) -> bool:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
            return node.right.value in folders  # folder / "onnx"
        return isinstance(node, ast.Constant) and node.value in names

    typed = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        if path != Path(model_folder.__file__)
        for node in ast.walk(ast.parse(path.read_text()))
        if typed_name(node)
    ]
    assert not typed


def test_metric_keys_have_one_home() -> None:
    """No module of the package but covid_cxr/evaluation/keys.py types an all_results.json key: they are built by
    metric_key or imported (a key typed twice drifts, as test_mixed_roc_auc once did from its writer's name)."""
    from covid_cxr.evaluation import keys

    prefixes = "|".join(re.escape(p) for p in (keys.VALIDATION, keys.TEST, keys.PROBE_TEST, keys.CV, keys.PROBE))
    key = re.compile(rf"^({prefixes})_[a-z0-9_]+$")
    whole_run = {keys.TEMPERATURE, keys.GUARD_FALSE_REJECTS, keys.TRAIN_RUNTIME}
    built = re.compile(rf"^({prefixes})_")  # the head of an f-string that builds a key by hand

    def typed_key(node: ast.AST) -> bool:
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            return bool(built.match(str(node.values[0].value)))
        return isinstance(node, ast.Constant) and bool(key.match(str(node.value)) or node.value in whole_run)

    typed = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        if path != Path(keys.__file__)
        for node in ast.walk(ast.parse(path.read_text()))
        if typed_key(node)
    ]
    assert not typed


def test_no_function_is_over_60_lines() -> None:
    """Every function of the package and of the rooms beside it reads at once (the style guide's limit)."""
    long = [
        f"{path.relative_to(REPO_ROOT)}::{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for room in ("covid_cxr", "bench", "study", "pages")
        for path in (REPO_ROOT / room).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long
