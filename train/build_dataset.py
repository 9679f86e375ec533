"""Build the chest X-ray dataset in a checkout: `covid-cxr build` with the checkout's folders as defaults
(../shared/cxr in, build/dataset out). `covid-cxr build --help` (or this script's --help) lists every flag.

    python train/build_dataset.py                                    # the curated collection, as `make data`
    python train/build_dataset.py --input_dir my_images/ --output_dir build/my-dataset
"""

from pathlib import Path

from covid_cxr.cli.build import main

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_PATHS = {"input_dir": str(ROOT.parent / "shared" / "cxr"), "output_dir": str(ROOT / "build" / "dataset")}

if __name__ == "__main__":
    main(prog="python train/build_dataset.py", defaults=CHECKOUT_PATHS)
