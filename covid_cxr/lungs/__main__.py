"""Write a lung-field mask for every PNG, JPEG and DICOM file of a folder.

    covid-cxr lungs --model lungs/ --input_dir DIR --output_dir OUT      # or: python -m covid_cxr.lungs ...

Each mask is OUT/<stem>.png: mode L, 0 (background) or 255 (lung), with the input image's width and height.
Files that cannot be read are listed with the reason and skipped; the exit status is 0 unless nothing was read.
OUT may not be, hold or lie inside DIR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from covid_cxr.data.imaging import ImageError, fault_reason, image_files, load_image
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.outputs import OutputFolderError, check_output_dir


class Segmenter(Protocol):
    """What `write_masks` needs of a segmenter (LungSegmenter, or a stand-in in tests)."""

    def masks(self, images: list[Image.Image]) -> list[np.ndarray]: ...


def write_masks(segmenter: Segmenter, input_dir: Path, output_dir: Path) -> tuple[int, dict[str, str]]:
    """Masks for every supported file directly in `input_dir`; returns (written, {file name: why skipped}).

    No file stops the folder: one that cannot be read, or that trips a fault, is skipped with the reason."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = image_files(input_dir)
    skipped: dict[str, str] = {}
    written: set[str] = set()  # stems with a mask: only these block a later file of the same stem
    for path in tqdm(files, desc="Lung masks", unit="img"):
        if path.stem in written:
            skipped[path.name] = f"another file is also named {path.stem}.*: its mask would overwrite that one"
            continue
        try:
            (mask,) = segmenter.masks([load_image(path).image])
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(output_dir / f"{path.stem}.png")
        except ImageError as err:
            skipped[path.name] = str(err)
            continue
        except Exception as err:  # a fault in this code or a library, not in the file: skip it, keep the traceback
            skipped[path.name] = fault_reason(path, err)
            continue
        written.add(path.stem)
    return len(written), skipped


def main(argv: list[str] | None = None, prog: str = "python -m covid_cxr.lungs") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="Segmenter folder (covid-cxr train-lungs). (required)")
    parser.add_argument("--input_dir", required=True, type=Path, help="Folder of PNG, JPEG or DICOM files. (required)")
    parser.add_argument("--output_dir", required=True, type=Path, help="Where to write <stem>.png masks. (required)")
    args = parser.parse_args(argv)
    try:
        check_output_dir(args.output_dir, {"--input_dir": args.input_dir})
    except OutputFolderError as err:
        parser.error(str(err))  # exit status 2, before the model is loaded
    segmenter = LungSegmenter.from_pretrained(args.model)
    written, skipped = write_masks(segmenter, args.input_dir, args.output_dir)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"Wrote {written} mask(s) to {args.output_dir}/; skipped {len(skipped)}.")
    return 0 if written or not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
