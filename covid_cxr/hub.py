"""Pushing artefacts to the Hugging Face Hub. Everything up to the network call is built here and testable."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, get_token, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import HFValidationError, validate_repo_id

from covid_cxr.model_folder import CARD, CHECKPOINT_PREFIX, CONFIG, FINGERPRINT, INCOMPLETE_PREFIX, RUN_CONFIG

if TYPE_CHECKING:  # a type only: the argument dataclass below is imported before any command parses its flags
    import datasets

MAX_SHARD_BYTES = 500 * 2**20  # as datasets' own push_to_hub
HUB_ID_FILE = "hub_repo_id.txt"  # written beside a pushed dataset or segmenter, so a model card can name its Hub id
# A model folder's files that stay local: checkpoints, TensorBoard runs, pickles, and the run's bookkeeping (the
# resume fingerprint; the resolved configuration, which names local folders)
MODEL_IGNORED = (
    f"{CHECKPOINT_PREFIX}-*",
    f"{INCOMPLETE_PREFIX}{CHECKPOINT_PREFIX}-*",
    "runs/*",
    "*.bin",
    FINGERPRINT,
    RUN_CONFIG,
)


def is_hub_id(name: str) -> bool:
    """`org/name` that is not a local path: what from_pretrained and load_dataset would look up on the Hub (a bare
    `name` is left out: this project's repos always have an owner)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1 and not Path(name).exists()


def fetch_model_folder(model: str) -> str | None:
    """A local model folder as is, or a Hub id downloaded to the cache; None when neither holds a model."""
    if (Path(model) / CONFIG).is_file():
        return model
    if Path(model).exists() or not is_hub_id(model):
        return None
    try:
        return snapshot_download(model)
    except (HfHubHTTPError, OSError, HFValidationError):  # offline, unknown repo: no model here
        return None


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
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=str(card).encode()))
    operations += [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in linked_files]
    return operations


class HubPreflightError(RuntimeError):
    """A push that would fail: said before any build or training starts, with what to do."""


def preflight(repo_id: str, repo_type: str = "model", private: bool = False, dry_run: bool = False) -> None:
    """Check what can be checked before the long work: the id (huggingface_hub's own validator, with an owner), a
    token, and that the repo can be created or already exists (created here, empty, as `private` asks). A dry run
    needs only a valid id."""
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("it must name an owner and a repo: org/name")
    except HFValidationError as err:
        raise HubPreflightError(f"{repo_id!r} is not a valid Hub repo id: {err}") from None
    if dry_run:
        return
    if get_token() is None:
        raise HubPreflightError(
            f"no Hugging Face token to push {repo_id}: run `hf auth login` or set HF_TOKEN "
            "(or pass --dry_run DIR to write the files that would be uploaded)"
        )
    try:
        HfApi().create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    except OfflineModeIsEnabled:
        raise HubPreflightError(
            f"cannot push {repo_id}: HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it, "
            "or pass --dry_run DIR"
        ) from None
    except (HfHubHTTPError, OSError) as err:  # refused (no write access, name taken) or no network
        raise HubPreflightError(f"cannot create or reach the {repo_type} repo {repo_id}: {err}") from None


@dataclass
class HubArguments:
    """Where a finished model folder goes on the Hub (`covid-cxr finetune`, `covid-cxr train-lungs`): checked before
    the long work starts, pushed in one commit at its end, or written to a folder by a dry run."""

    _argument_group_name = "publishing to the Hub"

    hub_repo_id: str | None = field(
        default=None,
        metadata={
            "help": "Push the finished model folder and its card (no checkpoints) to this Hub model repo "
            "(org/name) in one commit; the repo id, the token and the repo are checked before any training starts."
        },
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the --hub_repo_id repo as private."})
    dry_run: str | None = field(
        default=None,
        metadata={
            "help": "With --hub_repo_id: write exactly the files the push would upload into this folder instead "
            "(no token or network needed)."
        },
    )

    def check_push(self) -> None:
        """The push's preflight, before any training: a dry run needs an id to write for, a push a valid id, a
        token and a repo it can create."""
        if self.dry_run and not self.hub_repo_id:
            raise HubPreflightError("--dry_run writes what --hub_repo_id would upload: give --hub_repo_id org/name too")
        if self.hub_repo_id:
            preflight(self.hub_repo_id, "model", self.hub_private, dry_run=bool(self.dry_run))

    def publish(self, folder: Path) -> str:
        """Push `folder` (model_operations) to --hub_repo_id, or write what the push would upload into --dry_run;
        the line to tell the user."""
        if self.dry_run:
            written = write_operations(model_operations(folder), Path(self.dry_run))
            return dry_run_line(written, self.hub_repo_id, self.dry_run)
        push_model(folder, self.hub_repo_id, self.hub_private)
        return f"Pushed to https://huggingface.co/{self.hub_repo_id}"


def dry_run_line(written: list[Path], repo_id: str, folder: str) -> str:
    """What a dry run tells the user: how many files the push would upload, and where they are instead."""
    return f"Dry run: the {len(written)} files a push to {repo_id} would upload are in {folder.rstrip('/')}/"


def write_operations(operations: list[CommitOperationAdd], folder: Path) -> list[Path]:
    """A dry run: every file a commit would upload, written under `folder` at its path in the repo."""
    written = []
    for operation in operations:
        target = folder / operation.path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        source = operation.path_or_fileobj
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    return written


def stale_shards(api: HfApi, repo_id: str, operations: list[CommitOperationAdd]) -> list[CommitOperationDelete]:
    """The repo's `data/` files this commit does not rewrite (shards of an earlier push with another shard count,
    which `data/<split>-*` would still match): deleted in the same commit."""
    uploaded = {operation.path_in_repo for operation in operations}
    existing = api.list_repo_files(repo_id, repo_type="dataset")
    return [CommitOperationDelete(path) for path in existing if path.startswith("data/") and path not in uploaded]


def push_dataset(operations: list[CommitOperationAdd], repo_id: str, private: bool = False) -> None:
    """One commit: the new shards, card and linked files, and the deletion of stale shards."""
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    deletions = stale_shards(api, repo_id, operations)
    api.create_commit(
        repo_id, [*operations, *deletions], commit_message="Upload covid-cxr dataset", repo_type="dataset"
    )


def model_operations(output_dir: Path) -> list[CommitOperationAdd]:
    """The final model folder (weights, config, processor, card, plots, results), never checkpoints or the run's
    local bookkeeping."""
    files = sorted(path for path in output_dir.rglob("*") if path.is_file())
    return [
        CommitOperationAdd(path_in_repo=path.relative_to(output_dir).as_posix(), path_or_fileobj=str(path))
        for path in files
        if not any(fnmatch(path.relative_to(output_dir).as_posix(), pattern) for pattern in MODEL_IGNORED)
    ]


def push_model(output_dir: Path, repo_id: str, private: bool = False) -> None:
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.create_commit(repo_id, model_operations(output_dir), commit_message="Upload covid-cxr model")


def push_space(folder: Path, space_id: str, private: bool = False) -> None:
    api = HfApi()
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=space_id, repo_type="space", commit_message="Deploy covid-cxr Space"
    )
