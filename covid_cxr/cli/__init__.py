"""`covid-cxr`: every job of the project as one installed command with subcommands (`covid-cxr build --help`).

Each subcommand's module is imported only when it runs, so `covid-cxr --help` answers at once; the checkout's
`train/*.py` scripts call the same `main` functions with the checkout's folders as defaults.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module whose main(argv, prog) runs it, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("covid_cxr.cli.build", "build a dataset from class folders, the curated layout or an ieee8023 clone"),
    "finetune": ("covid_cxr.cli.finetune", "fine-tune, calibrate, evaluate and card a classifier (the Trainer)"),
    "predict": ("covid_cxr.cli.predict", "score X-rays (PNG, JPEG, DICOM) or a dataset into CSV or Parquet, resumably"),
    "audit": ("covid_cxr.cli.audit", "measure what any chest X-ray classifier reads (occlusion, sources, projection)"),
    "serve": ("covid_cxr.cli.serve", "serve a model as the Gradio Space (needs the `space` extra)"),
    "lungs": ("covid_cxr.cli.lungs", "write a lung-field mask for every X-ray of a folder"),
    "train-lungs": ("covid_cxr.cli.train_lungs", "train the lung-field segmenter on lung masks"),
    "convert-backbone": ("covid_cxr.cli.convert_backbone", "convert an offline pretrained backbone"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return (
        "usage: covid-cxr COMMAND [--help] [...]\n\nCOVID-19 detection from chest X-rays (research use only). "
        "Commands:\n\n" + "\n".join(lines) + "\n\n`covid-cxr COMMAND --help` shows its flags and their defaults."
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    command, *rest = argv
    if command not in COMMANDS:
        sys.exit(f"covid-cxr: unknown command {command!r}\n\n{usage()}")
    module = importlib.import_module(COMMANDS[command][0])
    sys.exit(module.main(rest, prog=f"covid-cxr {command}"))
