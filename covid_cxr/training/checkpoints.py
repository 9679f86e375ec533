"""Which checkpoint a run may resume from: the newest *complete* one, and only if this same run wrote it.

Trainer writes a checkpoint's weights first and `trainer_state.json` last (not atomically), so a run killed
while saving leaves a folder that `get_last_checkpoint` still picks and `train()` then cannot load. A
checkpoint counts as complete when its weights exist and its state file parses; a newer incomplete one is set
aside as `incomplete-checkpoint-N` (for inspection) and removed once a complete checkpoint at or after its step
exists.

A checkpoint left by another run (other data, arguments, backbone or covid_cxr code) would be resumed as if it
were this one's: its weights kept, or its optimizer refused. Each run therefore records its fingerprint in
`run_fingerprint.json`, and a checkpoint is resumed only under the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import datasets
from transformers import TrainerCallback

from covid_cxr.model_folder import (
    CHECKPOINT_PREFIX,
    FINGERPRINT,
    FINISHED,
    INCOMPLETE_PREFIX,
    RESULTS_SUFFIX,
    TRAINER_STATE,
    WEIGHTS,
    WEIGHTS_INDEX,
)
from covid_cxr.training.arguments import RunArguments

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)$")
_INCOMPLETE = re.compile(rf"^{INCOMPLETE_PREFIX}{CHECKPOINT_PREFIX}-(\d+)$")

# Arguments that change no weight and no reported figure: where the run writes, logs and pushes, how many loader
# workers it uses, how it resumes. Every other argument is part of the fingerprint.
COSMETIC_ARGUMENTS = {
    "model": frozenset({"backbone_dir"}),  # where converted backbones are cached; their files are hashed apart
    "data": frozenset({"preprocessing_num_workers"}),
    "evaluation": frozenset({"hub_repo_id", "hub_private", "dry_run"}),  # publishing only
    "training": frozenset(
        {
            "output_dir",
            "resume",  # how this run treats the checkpoints it finds
            "run_name",
            "project",
            "report_to",
            "logging_strategy",
            "logging_steps",
            "logging_first_step",
            "logging_nan_inf_filter",
            "log_level",
            "log_level_replica",
            "log_on_each_node",
            "disable_tqdm",
            "skip_memory_metrics",
            "dataloader_num_workers",
            "dataloader_pin_memory",
            "dataloader_persistent_workers",
            "dataloader_prefetch_factor",
            "dataloader_multiprocessing_context",
            "resume_from_checkpoint",
            "save_total_limit",
            "save_on_each_node",
            "push_to_hub",
            "hub_model_id",
            "hub_strategy",
            "hub_token",
            "hub_private_repo",
            "hub_always_push",
            "hub_revision",
            "trackio_space_id",
            "trackio_bucket_id",
            "trackio_static_space_id",
            "local_rank",
            "ddp_timeout",
        }
    ),
}


class StaleRunError(RuntimeError):
    """The output folder holds checkpoints of another run; the message says what changed and what to pass."""


def _numbered(output_dir: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """The folders of `output_dir` whose name matches `pattern`, by step, newest first."""
    if not output_dir.is_dir():
        return []
    found = ((match, path) for path in output_dir.iterdir() if (match := pattern.match(path.name)))
    return sorted(((int(match.group(1)), path) for match, path in found if path.is_dir()), reverse=True)


def is_complete(folder: Path) -> bool:
    if not any((folder / name).is_file() for name in (WEIGHTS, WEIGHTS_INDEX)):
        return False
    try:
        json.loads((folder / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def newest_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir` (read only: every process of a run may ask)."""
    return next((str(folder) for _, folder in _numbered(output_dir, _CHECKPOINT) if is_complete(folder)), None)


def tidy_checkpoints(output_dir: Path) -> None:
    """Set aside the incomplete checkpoints newer than the newest complete one (replacing what an earlier kill at
    the same step left) and remove the incomplete ones that a complete checkpoint at or after their step
    supersedes."""
    complete = [step for step, folder in _numbered(output_dir, _CHECKPOINT) if is_complete(folder)]
    newest = complete[0] if complete else -1
    for step, folder in _numbered(output_dir, _CHECKPOINT):
        if step in complete:
            continue
        if step <= newest:
            logger.info("removing %s: incomplete, and %s-%d supersedes it", folder, CHECKPOINT_PREFIX, newest)
            shutil.rmtree(folder)
            continue
        aside = folder.with_name(INCOMPLETE_PREFIX + folder.name)
        logger.warning("%s was not completely written (the run was killed while saving); moved to %s", folder, aside)
        if aside.exists():
            shutil.rmtree(aside)  # an earlier kill at the same step
        folder.rename(aside)
    for step, folder in _numbered(output_dir, _INCOMPLETE):
        if step <= newest:
            logger.info("removing %s: %s-%d supersedes it", folder, CHECKPOINT_PREFIX, newest)
            shutil.rmtree(folder)


class TidyCheckpoints(TrainerCallback):
    """After each save, removes the set-aside incomplete checkpoints that the new one supersedes."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            tidy_checkpoints(Path(args.output_dir))


def _digest(root: Path, files: list[Path]) -> str:
    hasher = hashlib.sha256()
    for path in sorted(files):
        hasher.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def code_digest() -> str:
    """A digest of the installed covid_cxr package's files (modules and card templates): a code change is a
    different run."""
    root = Path(__file__).resolve().parents[1]
    return _digest(root, [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts])


def _input_digest(path: str | None) -> str | None:
    """A digest of an input folder's files or of an input file; the value itself when it names neither (a Hub
    id, a missing optional input)."""
    if path is None or not Path(path).exists():
        return path
    root = Path(path)
    if root.is_file():
        return _digest(root.parent, [root])
    return _digest(root, [p for p in root.iterdir() if p.is_file()])


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def run_fingerprint(
    arguments: RunArguments,
    splits: datasets.DatasetDict,
    model_path: str,
) -> dict[str, Any]:
    """What decides the trained model and its reports, by part: the arguments by group (less COSMETIC_ARGUMENTS),
    the dataset (datasets' fingerprint of each split, which follows its content and truncation), the files of the
    backbone, the lung segmenter and the cross-validation report, and the covid_cxr code."""
    eval_args = arguments.evaluation
    fingerprint = {
        f"{group} arguments": {k: v for k, v in values.items() if k not in COSMETIC_ARGUMENTS.get(group, ())}
        for group, values in arguments.groups().items()
    }
    fingerprint["dataset"] = {name: split._fingerprint for name, split in splits.items()}
    fingerprint["backbone"] = _input_digest(model_path)
    fingerprint["lung segmenter"] = _input_digest(arguments.model.lung_segmenter)
    fingerprint["cross-validation report"] = _input_digest(eval_args.cross_validation_report)
    fingerprint["code"] = code_digest()
    return _jsonable(fingerprint)


def _stored(output_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((output_dir / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return None


def changes(stored: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What differs between a recorded fingerprint and this run's, in words: each argument by name, else the part."""
    if stored is None:
        return [f"no readable {FINGERPRINT} (written by a run made before fingerprints, or damaged)"]
    differences = []
    for part, value in current.items():
        old = stored.get(part)
        if old == value:
            continue
        if isinstance(value, dict) and isinstance(old, dict) and part.endswith("arguments"):
            keys = sorted(k for k in value.keys() | old.keys() if value.get(k) != old.get(k))
            differences.append(f"{part} ({', '.join(f'{k}: {old.get(k)!r} -> {value.get(k)!r}' for k in keys)})")
        else:
            differences.append(part)
    return differences


def up_to_date(output_dir: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether `output_dir` holds this very run, finished: nothing to train or rewrite."""
    record = _stored(output_dir) or {}
    finished = all((output_dir / name).is_file() for name in FINISHED)
    return finished and record.get("finished") is True and record.get("fingerprint") == fingerprint


def plan_resume(output_dir: Path, fingerprint: dict[str, Any], mode: str) -> str | None:
    """The checkpoint to resume (None: start over) under `--resume mode`; read only. Under "auto" the checkpoints
    of another run stop the run with a StaleRunError saying what changed."""
    newest = newest_complete_checkpoint(output_dir)
    if mode == "never" or newest is None:
        return None
    record = _stored(output_dir)
    if record is not None and record.get("fingerprint") == fingerprint:
        return newest
    changed = "; ".join(changes(record and record.get("fingerprint"), fingerprint))
    if mode == "restart_on_change":
        logger.warning("%s holds checkpoints of another run (changed: %s); starting over", output_dir, changed)
        return None
    raise StaleRunError(
        f"{output_dir} holds checkpoints of another run, which this one would resume as its own; changed: "
        f"{changed}. Pass --resume restart_on_change to start this run over (the old checkpoints are removed), or "
        f"choose another --output_dir"
    )


def start_run(output_dir: Path, fingerprint: dict[str, Any], resume_from: str | None) -> None:
    """Main process, once every process has planned: a fresh start removes every old checkpoint (another run's,
    which a later resume would otherwise pick) and every figure an earlier run wrote (`Trainer.save_metrics` merges
    into all_results.json, so a figure this run does not measure, such as a cross-validated one it may not quote,
    would stay beside its own), a resume tidies them; then this run's fingerprint is recorded."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        for _, folder in (*_numbered(output_dir, _CHECKPOINT), *_numbered(output_dir, _INCOMPLETE)):
            logger.warning("removing %s: this run starts over", folder)
            shutil.rmtree(folder)
        for stale in output_dir.glob(f"*{RESULTS_SUFFIX}"):
            stale.unlink()
    else:
        tidy_checkpoints(output_dir)
    _record(output_dir, fingerprint, finished=False)


def finish_run(output_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Mark the run finished, once its model folder is written: a rerun with the same fingerprint does nothing."""
    _record(output_dir, fingerprint, finished=True)


def _record(output_dir: Path, fingerprint: dict[str, Any], finished: bool) -> None:
    record = {"finished": finished, "fingerprint": fingerprint}
    (output_dir / FINGERPRINT).write_text(json.dumps(record, indent=2) + "\n")
