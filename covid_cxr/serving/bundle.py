"""Assemble the folder a Hugging Face Space runs: app, requirements, card, the package modules it imports, model
and examples."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from huggingface_hub import SpaceCard

from covid_cxr.hub import is_hub_id
from covid_cxr.lungs.segmenter import holds_segmenter
from covid_cxr.model_folder import (
    ALL_RESULTS,
    CARD,
    CONFIG,
    CONFORMAL,
    CONFUSION_MATRIX,
    LICENSE,
    ONNX_CHECK,
    ONNX_DIR,
    ONNX_MODEL,
    PIPELINE_FOLDER,
    PROCESSOR,
    ROC_CURVE,
    SCOPE_GUARD,
    WEIGHTS,
    read_config,
)
from covid_cxr.modeling import lungs_first
from covid_cxr.outputs import check_output_dir, replacing
from covid_cxr.serving.app import MODEL_ID_FILE
from covid_cxr.serving.examples import ATTRIBUTION_FILE, write_examples

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SPACE_ENTRY = "covid_cxr.serving.app"
MODEL_FILES = (
    CONFIG,
    WEIGHTS,
    PROCESSOR,
    Path(lungs_first.__file__).name,  # a lungs-first model's modeling file, which its config.json names (auto_map)
    SCOPE_GUARD,
    CONFORMAL,  # the validation films' probabilities: the Space's uncertain band
    f"{ONNX_DIR}/{ONNX_MODEL}",  # the Space's faster path (serving.predictor), used only when current
    f"{ONNX_DIR}/{ONNX_CHECK}",
    ALL_RESULTS,
    CARD,
    LICENSE,
    ROC_CURVE,
    CONFUSION_MATRIX,
)


def assemble(
    space_source: Path, output_dir: Path, model: str, dataset_dir: Path | None = None, lungs: Path | None = None
) -> Path:
    """Write a self-contained Space into ``output_dir`` (replaced), from the app files in ``space_source``.

    A local model folder is copied into ``model/`` (a lung segmenter folder into ``lungs/``); a Hub id is written
    to MODEL_ID so the Space loads it from the Hub. The Space card names the model and its training dataset when
    they are on the Hub, links the model's terms, and attributes the example images.
    An earlier bundle in ``output_dir`` is replaced only once the new one is complete; a folder that overlaps an
    input, or holds other files, is refused before anything is written.
    """
    inputs = {"the Space source": space_source, "--model": model if Path(model).is_dir() else None}
    check_output_dir(output_dir, inputs | {"--dataset": dataset_dir, "--lungs": lungs}, replaces="app.py")
    with replacing(output_dir) as staging:
        _fill(staging, space_source, model, dataset_dir, lungs)
    return output_dir


def _fill(output_dir: Path, space_source: Path, model: str, dataset_dir: Path | None, lungs: Path | None) -> None:
    for name in ("app.py", "requirements.txt"):
        shutil.copy(space_source / name, output_dir / name)
    for module in runtime_modules():
        target = output_dir / module.relative_to(PACKAGE_ROOT.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(module, target)
    if lungs is not None and holds_segmenter(lungs):  # the lung segmenter, for outlines, attention and focus
        # without its standard-pipeline copy, which the Space does not run
        shutil.copytree(lungs, output_dir / "lungs", ignore=shutil.ignore_patterns(PIPELINE_FOLDER))
    card = SpaceCard.load(space_source / CARD)
    if Path(model).is_dir():
        config = _copy_model(Path(model), output_dir / "model")
        card.data.license_link = f"model/{LICENSE}"
    else:
        (output_dir / MODEL_ID_FILE).write_text(model + "\n")
        card.data.models = [model]
        card.data.license_link = f"https://huggingface.co/{model}/blob/main/{LICENSE}"
        config = {}
    dataset = str(config.get("training_dataset", ""))
    card.data.datasets = [dataset] if is_hub_id(dataset) else []
    if dataset_dir is not None and (dataset_dir / "dataset_dict.json").is_file():
        examples = write_examples(dataset_dir, output_dir / "examples")
        attribution = (examples / ATTRIBUTION_FILE).read_text(encoding="utf-8").replace("# Example images", "")
        card.content += (
            f"\n## Example images\n\nFrom the model's test split, under their sources' licences:\n{attribution}"
        )
    card.save(output_dir / CARD)


def runtime_modules(entry: str = SPACE_ENTRY) -> list[Path]:
    """The package's files that `entry` imports, directly or not, lazy imports included, with the ``__init__.py``
    of every package on the way: all the Space runs, so the bundle ships no training or card code."""
    found: set[Path] = set()
    pending = [entry]
    while pending:
        path = _module_file(pending.pop())
        if path is None or path in found:
            continue
        found.add(path)
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        pending += [".".join(parts[:end]) for end in range(1, len(parts))]  # the packages it lies in
        pending += _imported(path)
    return sorted(found)


def _module_file(name: str) -> Path | None:
    base = PACKAGE_ROOT.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path) -> list[str]:
    """The covid_cxr modules a file names: ``import a.b``, ``from a.b import c`` (c may itself be a module)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return [name for name in names if name.split(".")[0] == PACKAGE_ROOT.name]


def _copy_model(model: Path, target: Path) -> dict[str, object]:
    missing = [f for f in (CONFIG, WEIGHTS) if not (model / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{model} is not a trained model folder (missing {', '.join(missing)}); train one first with "
            "`covid-cxr finetune` (in a checkout: `make train`)"
        )
    target.mkdir()
    for name in MODEL_FILES:
        if (model / name).is_file():
            (target / name).parent.mkdir(exist_ok=True)
            shutil.copy(model / name, target / name)
    return read_config(model)
