"""Assemble the folder a Hugging Face Space runs: app, requirements, card, this package, model and examples."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from covid_cxr.demo import write_examples

REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_SOURCE = REPO_ROOT / "space"
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "scope_guard.safetensors",
    "all_results.json",
    "README.md",
    "roc_curve.png",
    "confusion_matrix.png",
)


def assemble(output_dir: Path, model: str, dataset_dir: Path | None = None) -> Path:
    """Write a self-contained Space into ``output_dir`` (replaced). A local model folder is copied into
    ``model/``; a Hub id is named in the card's ``models:`` so the Space loads it from the Hub."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    for name in ("app.py", "requirements.txt"):
        shutil.copy(SPACE_SOURCE / name, output_dir / name)
    shutil.copytree(
        REPO_ROOT / "covid_cxr", output_dir / "covid_cxr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    card = (SPACE_SOURCE / "README.md").read_text(encoding="utf-8")
    if Path(model).is_dir():
        missing = [f for f in ("config.json", "model.safetensors") if not (Path(model) / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{model} is not a trained model folder (missing {', '.join(missing)}); run `make train` first"
            )
        (output_dir / "model").mkdir()
        for name in MODEL_FILES:
            if (Path(model) / name).is_file():
                shutil.copy(Path(model) / name, output_dir / "model" / name)
    else:
        card = re.sub(r"^models: \[\]$", f"models:\n- {model}", card, flags=re.MULTILINE)
        (output_dir / "MODEL_ID").write_text(model + "\n")
    (output_dir / "README.md").write_text(card, encoding="utf-8")
    if dataset_dir is not None and (dataset_dir / "dataset_dict.json").is_file():
        write_examples(dataset_dir, output_dir / "examples")
    return output_dir
