"""Pushing artefacts to the Hugging Face Hub. Kept apart so everything before the network call is testable."""

from __future__ import annotations

from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, HfApi


def push_dataset(
    dataset: datasets.DatasetDict, card: DatasetCard, extra_files: list[Path], repo_id: str, private: bool = False
) -> None:
    """Upload the splits as parquet, then the card as README.md (it replaces the one `push_to_hub` writes)
    and the files the card links to."""
    dataset.push_to_hub(repo_id, private=private, commit_message="Upload covid-cxr dataset")
    card.push_to_hub(repo_id, repo_type="dataset", commit_message="Add dataset card")
    api = HfApi()
    for path in extra_files:
        api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo_id, repo_type="dataset")


def push_model(output_dir: Path, repo_id: str, private: bool = False) -> None:
    """Upload the final model folder (weights, config, processor, card, plots), never the checkpoints."""
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(output_dir),
        repo_id=repo_id,
        commit_message="Upload covid-cxr model",
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**"],
    )


def push_space(folder: Path, space_id: str, private: bool = False) -> None:
    api = HfApi()
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=space_id, repo_type="space", commit_message="Deploy covid-cxr Space"
    )
