"""Fine-tune in a checkout: `covid-cxr finetune` with the checkout's folders as defaults (build/dataset in,
build/model out, build/lungs for the lung share). `--help` lists every flag with its default.

    python train/finetune.py                                   # CPU recipe, offline DINOv2 backbone
    accelerate launch train/finetune.py train/configs/gpu.yaml  # GPU(s), bf16, full fine-tune
    python train/finetune.py train/configs/gpu.yaml --learning_rate 1e-4   # a config file, one flag overridden
"""

from pathlib import Path

from covid_cxr.cli.finetune import main

BUILD = Path(__file__).resolve().parent.parent / "build"
# What `make data`, `make lungs` and `make train` write; a flag or a config file entry overrides each
CHECKOUT_PATHS = {
    "dataset": str(BUILD / "dataset"),
    "output_dir": str(BUILD / "model"),
    "lung_segmenter": str(BUILD / "lungs"),
}

if __name__ == "__main__":
    main(prog="python train/finetune.py", defaults=CHECKOUT_PATHS)
