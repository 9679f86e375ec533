"""Assemble the Space folder (app, requirements, card, covid_cxr package, model, examples) and push it.

python space/deploy.py --model build/model --space_id my-org/covid-cxr-demo
python space/deploy.py --model build/model --dry_run      # assemble build/space/ only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from covid_cxr.hub import push_space
from covid_cxr.outputs import OutputFolderError
from covid_cxr.serving.bundle import assemble

HERE = Path(__file__).resolve().parent


@dataclass
class DeployArguments:
    model: str = field(default="build/model", metadata={"help": "Model folder to ship, or a Hub model id."})
    output_dir: str = field(default="build/space", metadata={"help": "Where the Space folder is assembled."})
    dataset: str = field(default="build/dataset", metadata={"help": "Dataset whose test split gives examples."})
    lungs: str = field(default="build/lungs", metadata={"help": "Lung segmenter to ship (make lungs), if it exists."})
    space_id: str | None = field(default=None, metadata={"help": "Space repo id (org/name) to push to."})
    private: bool = field(default=False, metadata={"help": "Create the Space as private."})
    dry_run: bool = field(default=False, metadata={"help": "Assemble only; push nothing."})


def main() -> None:
    (args,) = HfArgumentParser(DeployArguments).parse_args_into_dataclasses()
    try:
        folder = assemble(HERE, Path(args.output_dir), args.model, Path(args.dataset), Path(args.lungs))
    except OutputFolderError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"Space assembled in {folder}/")
    if args.dry_run or not args.space_id:
        print("Dry run: nothing pushed." if args.dry_run else "No --space_id given: nothing pushed.")
        return
    push_space(folder, args.space_id, args.private)
    print(f"Pushed to https://huggingface.co/spaces/{args.space_id}")


if __name__ == "__main__":
    main()
