"""Write a lung-field mask for every PNG, JPEG and DICOM file of a folder.

    covid-cxr lungs --model lungs/ --input_dir DIR --output_dir OUT

Each mask is OUT/<stem>.png: mode L, 0 (background) or 255 (lung), with the input image's width and height.
Files that cannot be read are listed with the reason and skipped; the exit status is 0 unless nothing was read.
OUT may not be, hold or lie inside DIR.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.outputs import OutputFolderError, check_output_dir


@dataclass
class MaskArguments:
    """The segmenter and the folders."""

    model: str = field(metadata={"help": "Segmenter folder (covid-cxr train-lungs)."})
    input_dir: str = field(metadata={"help": "Folder of PNG, JPEG or DICOM files."})
    output_dir: str = field(
        metadata={"help": "Where to write <stem>.png masks (may not be, hold or lie in --input_dir)."}
    )


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr lungs") -> int:
    (args,) = parse_arguments((MaskArguments,), argv, prog=prog, description=__doc__)
    try:
        check_output_dir(args.output_dir, {"--input_dir": args.input_dir})
    except OutputFolderError as err:
        sys.exit(f"error: {err}")  # before the model is loaded

    from covid_cxr.lungs.masks import write_masks
    from covid_cxr.lungs.segmenter import LungSegmenter

    segmenter = LungSegmenter.from_pretrained(args.model)
    written, skipped = write_masks(segmenter, Path(args.input_dir), Path(args.output_dir))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"Wrote {written} mask(s) to {args.output_dir}/; skipped {len(skipped)}.")
    return 0 if written or not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
