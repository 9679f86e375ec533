"""Fine-tune a pretrained vision backbone to tell COVID-19 from non-COVID chest X-rays.

Trains with the transformers Trainer on the dataset from train/build_dataset.py, picks the best epoch by
validation ROC AUC, calibrates (temperature scaling folded into the head), chooses the decision threshold on
validation for a target sensitivity, reports metrics overall, per source and on the mixed-label sources, and
writes a Hugging Face model folder with a model card. Resumes automatically from the last checkpoint of the same
run (same dataset, arguments, backbone and code); `--resume` says what to do with another run's checkpoints.
The checkout's folders are this script's defaults (CHECKOUT_PATHS); the package itself has none.

    python train/finetune.py                                   # CPU recipe, offline DINOv2 backbone
    accelerate launch train/finetune.py train/configs/gpu.yaml  # GPU(s), bf16, full fine-tune
    python train/finetune.py --model_name_or_path facebook/dinov2-small --trainable_blocks -1  # from the Hub
"""

from __future__ import annotations

import logging
import os
import sys

import datasets
import transformers
import yaml
from transformers import HfArgumentParser

from covid_cxr.outputs import OutputFolderError
from covid_cxr.training.arguments import CxrTrainingArguments, DataArguments, EvaluationArguments, ModelArguments
from covid_cxr.training.checkpoints import StaleRunError
from covid_cxr.training.run import run

# What `make data`, `make lungs` and `make train` write, relative to the checkout root; a flag or a config file
# entry overrides each
CHECKOUT_PATHS = {"dataset": "build/dataset", "output_dir": "build/model", "lung_segmenter": "build/lungs"}


def main() -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, EvaluationArguments, CxrTrainingArguments))
    for action in parser._actions:  # the checkout's paths become this script's shown defaults
        if action.dest in CHECKOUT_PATHS:
            action.required, action.default = False, CHECKOUT_PATHS[action.dest]
    if len(sys.argv) == 2 and sys.argv[1].endswith((".json", ".yaml", ".yml")):
        with open(os.path.abspath(sys.argv[1]), encoding="utf-8") as config_file:
            config = yaml.safe_load(config_file)  # JSON is YAML too
        model_args, data_args, eval_args, training_args = parser.parse_dict(CHECKOUT_PATHS | config)
    else:
        model_args, data_args, eval_args, training_args = parser.parse_args_into_dataclasses()

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    for library in (transformers, datasets):
        library.utils.logging.set_verbosity(level)
    logging.getLogger("covid_cxr").setLevel(level)

    try:
        run(model_args, data_args, eval_args, training_args)
    except (StaleRunError, OutputFolderError, FileNotFoundError) as err:  # the user's to fix: one line, no traceback
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
