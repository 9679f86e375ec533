"""Train the lung-field segmenter in a checkout (`make lungs`): `covid-cxr train-lungs` with the checkout's
folders as defaults (../shared/cxr-lung-masks and ../shared/cxr in, build/lungs out).

    python train/train_lungs.py
"""

from pathlib import Path

from covid_cxr.cli.train_lungs import main

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_PATHS = {
    "masks": str(ROOT.parent / "shared" / "cxr-lung-masks"),
    "images": str(ROOT.parent / "shared" / "cxr"),
    "output_dir": str(ROOT / "build" / "lungs"),
}

if __name__ == "__main__":
    main(prog="python train/train_lungs.py", defaults=CHECKOUT_PATHS)
