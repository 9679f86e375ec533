"""The fine-tune as a fold scorer: one Trainer run per round of the yardstick, each in its own resumable folder."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import datasets
import numpy as np

from covid_cxr.labels import POSITIVE
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.inference import run_model, softmax
from covid_cxr.training.arguments import RunArguments
from covid_cxr.training.run import fit
from study.folds import FoldScorer, rows_key

SCORES = "round_scores.npz"


def finetune_scorer(
    arguments: RunArguments,
    dataset: datasets.Dataset,
    output_root: Path,
    lungs: LungSegmenter | None = None,
) -> FoldScorer:
    """Fine-tune round k into ``output_root/round-k`` and score its validation and test parts.

    Lungs first (the default whenever `lungs` is given; --no_lung_focus turns it off) trains the one lungs-first
    model, which focuses every film itself, in training and scoring alike. A finished round's scores (and the CPU
    seconds it took) are kept in ``round_scores.npz`` and its checkpoints removed, so an interrupted
    cross-validation resumes at the round it was in (and, through the Trainer, at that round's last checkpoint)."""
    restart = dataclasses.replace(arguments.training, resume="restart_on_change")  # a round of changed code
    arguments = dataclasses.replace(arguments, training=restart)  # starts over
    focus = lungs if arguments.data.lung_focus else None

    def scorer(k: int, train: np.ndarray, validation: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        folder = output_root / f"round-{k}"
        scores = folder / SCORES
        key = rows_key(dataset.select(test))
        if scores.is_file():
            saved = np.load(scores)
            if str(saved["test_key"]) == key:
                return saved["validation"], saved["test"]
        start = time.process_time()
        splits = datasets.DatasetDict(train=dataset.select(train), validation=dataset.select(validation))
        round_args = dataclasses.replace(arguments.training, output_dir=str(folder))
        trainer, processor, _ = fit(dataclasses.replace(arguments, training=round_args), splits, lungs=focus)
        model = trainer.accelerator.unwrap_model(trainer.model)
        batch = arguments.training.per_device_eval_batch_size
        val_probs, test_probs = (
            softmax(run_model(model, processor, dataset.select(part)["image"], batch, desc=f"Round {k} {name}").logits)[
                :, POSITIVE
            ]
            for name, part in (("validation", validation), ("test", test))
        )
        cpu_seconds = time.process_time() - start
        np.savez(scores, validation=val_probs, test=test_probs, test_key=key, cpu_seconds=cpu_seconds)
        for checkpoint in folder.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
        return val_probs, test_probs

    return scorer
