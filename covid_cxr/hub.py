"""Pushing artefacts to the Hugging Face Hub. Everything up to the network call is built here and testable."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

MAX_SHARD_BYTES = 500 * 2**20  # as datasets' own push_to_hub


def is_hub_id(name: str) -> bool:
    """`org/name` that is not a local path: what from_pretrained and load_dataset would look up on the Hub (a bare
    `name` is left out: this project's repos always have an owner)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1 and not Path(name).exists()


def dataset_operations(
    dataset: datasets.DatasetDict, card: DatasetCard, linked_files: list[Path], staging: Path
) -> list[CommitOperationAdd]:
    """Parquet shards under data/, the card as README.md (with the sizes `datasets` checks), and every file the
    card links to: what one commit must hold so the dataset on the Hub is never half-updated."""
    operations = []
    download_size = 0
    for split, part in dataset.items():
        shards = max(1, math.ceil(part.data.nbytes / MAX_SHARD_BYTES))
        for index in range(shards):
            path = staging / f"{split}-{index:05d}-of-{shards:05d}.parquet"
            part.shard(shards, index, contiguous=True).to_parquet(str(path))
            download_size += path.stat().st_size
            operations.append(CommitOperationAdd(path_in_repo=f"data/{path.name}", path_or_fileobj=str(path)))
    card.data.dataset_info["download_size"] = download_size
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
    operations += [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in linked_files]
    return operations


def push_dataset(operations: list[CommitOperationAdd], repo_id: str, private: bool = False) -> None:
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.create_commit(repo_id, operations, commit_message="Upload covid-cxr dataset", repo_type="dataset")


def push_model(output_dir: Path, repo_id: str, private: bool = False) -> None:
    """Upload the final model folder (weights, config, processor, card, plots), never the checkpoints."""
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(output_dir),
        repo_id=repo_id,
        commit_message="Upload covid-cxr model",
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "incomplete-checkpoint-*/**", "runs/**", "*.bin"],
    )


def push_space(folder: Path, space_id: str, private: bool = False) -> None:
    api = HfApi()
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=space_id, repo_type="space", commit_message="Deploy covid-cxr Space"
    )
