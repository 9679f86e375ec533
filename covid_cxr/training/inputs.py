"""The splits the Trainer reads: loaded from a local build or the Hub, then pre-decoded or PIL-transformed."""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
from transformers import TrainingArguments

from covid_cxr.data.predecode import predecode
from covid_cxr.data.splits import SPLIT_NAMES
from covid_cxr.data.transforms import Augmentation, DevicePixels, eval_transform, train_transform
from covid_cxr.hub import HUB_ID_FILE, is_hub_id
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.training.arguments import DataArguments


class DatasetError(ValueError):
    """The dataset cannot train a classifier as it is; the message says what it lacks and what to do."""


def load_splits(data_args: DataArguments) -> datasets.DatasetDict:
    """train/validation/test from a `save_to_disk` folder or a Hub dataset, checked and optionally truncated."""
    splits = _load(data_args.dataset)
    missing = set(SPLIT_NAMES) - set(splits)
    if missing:
        raise DatasetError(f"{data_args.dataset} lacks split(s) {sorted(missing)}")
    names = splits["train"].features["label"].names
    if tuple(names) != CLASS_NAMES:
        raise DatasetError(f"{data_args.dataset}: label names {names} differ from {list(CLASS_NAMES)}")
    for split in ("train", "validation"):  # learning and the threshold need both classes; a test of one is n/a
        held = set(splits[split]["label"])
        if len(held) < len(CLASS_NAMES):
            lacking = [name for index, name in enumerate(CLASS_NAMES) if index not in held]
            raise DatasetError(
                f"the {split} split of {data_args.dataset} holds no {' or '.join(lacking)} image: add images of "
                "that class (a few dozen of each is a start) and build the dataset again"
            )
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_eval_samples),
    ):
        if limit is not None:
            splits[split] = splits[split].shuffle(seed=0).select(range(min(limit, splits[split].num_rows)))
    return splits


def _load(dataset: str) -> datasets.DatasetDict:
    hint = "build it with `covid-cxr build --input_dir IMAGES --output_dir DATASET` (in a checkout: `make data`)"
    if Path(dataset).exists():
        if not (Path(dataset) / "dataset_dict.json").is_file():
            raise FileNotFoundError(f"{dataset} is not a dataset folder (no dataset_dict.json): {hint}")
        return datasets.load_from_disk(dataset)
    if not is_hub_id(dataset):
        raise FileNotFoundError(f"dataset folder {dataset} not found: {hint}")
    try:
        return datasets.load_dataset(dataset)
    except Exception as err:  # offline, unknown repo, no access: all mean "not there"
        raise FileNotFoundError(
            f"{dataset} is neither a local dataset folder nor a Hub dataset that could be loaded "
            f"({type(err).__name__}: {err}); for a local dataset, {hint}"
        ) from err


def dataset_hub_id(data_args: DataArguments) -> str | None:
    """The Hub id a model card names as its training data: given, recorded by a push, or the Hub dataset used."""
    if data_args.dataset_hub_id:
        return data_args.dataset_hub_id
    recorded = Path(data_args.dataset) / HUB_ID_FILE
    if recorded.is_file():
        return recorded.read_text().strip()
    return data_args.dataset if is_hub_id(data_args.dataset) else None


def prepare_inputs(
    splits: datasets.DatasetDict,
    processor,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, DevicePixels | None]:
    """Train and validation data for Trainer: pre-decoded tensors (+ device transform) or PIL transforms, of the
    splits' images as they are (a lungs-first model focuses them itself, after augmentation)."""
    augmentation = Augmentation()
    workers = data_args.preprocessing_num_workers
    with training_args.main_process_first(desc="pre-decoding"):
        if not data_args.predecode:
            splits["train"].set_transform(train_transform(processor, augmentation))
            splits["validation"].set_transform(eval_transform(processor))
            return splits["train"], splits["validation"], None
        train = predecode(splits["train"], processor, True, workers, "Train")
        validation = predecode(splits["validation"], processor, False, workers, "Val")
    return train, validation, DevicePixels(processor, augmentation)
