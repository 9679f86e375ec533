"""Fine-tune a pretrained vision backbone to tell COVID-19 from non-COVID chest X-rays.

Trains with the transformers Trainer on a dataset from `covid-cxr build`, keeps the best epoch by validation
ROC AUC, calibrates (temperature scaling folded into the head), chooses the decision threshold on validation for
a target sensitivity, reports metrics overall, per source and on the mixed-label sources, and writes a Hugging Face
model folder with its card. A crashed run resumes from its last checkpoint (`--resume`). A config file (YAML or
JSON, `flag: value` pairs) may come first; flags after it override it.

    covid-cxr finetune --dataset my-dataset --output_dir my-model
    covid-cxr finetune gpu.yaml --dataset my-dataset --output_dir my-model --learning_rate 1e-4
    accelerate launch -m covid_cxr.cli.finetune --dataset my-dataset --output_dir my-model --bf16
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.training.arguments import GROUPS, REFUSED_TRAINER_FLAGS


def main(
    argv: Sequence[str] | None = None, prog: str = "covid-cxr finetune", defaults: Mapping[str, Any] | None = None
) -> None:
    model_args, data_args, eval_args, training_args = parse_arguments(
        GROUPS,
        argv,
        prog=prog,
        description=__doc__,
        defaults=defaults,
        refused=REFUSED_TRAINER_FLAGS,
    )
    import datasets  # the heavy imports after parsing: --help answers quickly
    import transformers

    from covid_cxr.data.processor_size import InputSizeError
    from covid_cxr.hub import HubPreflightError
    from covid_cxr.outputs import OutputFolderError
    from covid_cxr.training.checkpoints import StaleRunError
    from covid_cxr.training.inputs import DatasetError
    from covid_cxr.training.run import run

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
        if training_args.process_index == 0:  # before training: a push that cannot happen stops here
            eval_args.check_push()
        run(model_args, data_args, eval_args, training_args)
    except (
        HubPreflightError,
        StaleRunError,
        OutputFolderError,
        DatasetError,
        InputSizeError,
        FileNotFoundError,
    ) as err:  # the user's to fix
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
