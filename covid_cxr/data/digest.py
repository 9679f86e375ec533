"""What a dataset holds, as one string: a cross-validation report counts for a training run only when both
measured the same images with the same labels."""

from __future__ import annotations

import hashlib
import json

import datasets


def dataset_digest(dataset: datasets.Dataset | datasets.DatasetDict) -> str:
    """SHA-256 of the sorted (file_name, label) pairs of every image, all splits together: the same images with
    the same labels give the same digest however they are split or ordered; an image added, dropped or relabelled
    gives another."""
    parts = dataset.values() if isinstance(dataset, datasets.DatasetDict) else [dataset]
    pairs = sorted(
        (str(name), int(label)) for part in parts for name, label in zip(part["file_name"], part["label"], strict=True)
    )
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
