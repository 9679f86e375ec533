"""Run by test_training.py under `accelerate launch --num_processes 2`: a short training that records, per rank,
what it ended with, so the test can check that both ranks agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import TrainerCallback

from covid_cxr.training.run import run
from tests.conftest import tiny_run_arguments


class RecordRank(TrainerCallback):
    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def on_train_end(self, args, state, control, model=None, **kwargs):
        trainable = [p.detach().double().sum().item() for p in model.parameters() if p.requires_grad]
        record = {
            "world_size": args.world_size,
            "global_step": state.global_step,
            "trainable_checksum": float(sum(trainable)),
        }
        (self.output_dir / f"rank{args.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    backbone, dataset, output = (Path(a) for a in sys.argv[1:4])
    args = tiny_run_arguments(backbone, dataset, output)
    args[2].linear_probe = False
    run(*args, callbacks=(RecordRank(output),))
