"""Which checkpoint to resume from after a crash: the newest *complete* one.

Trainer writes a checkpoint's weights first and `trainer_state.json` last (not atomically), so a run killed
while saving leaves a folder that `get_last_checkpoint` still picks and `train()` then cannot load. A
checkpoint counts as complete when its weights exist and its state file parses; incomplete ones are renamed
aside (kept for inspection, never deleted) with a warning.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def is_complete(folder: Path) -> bool:
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`, moving newer incomplete ones out of the way."""
    if not output_dir.is_dir():
        return None
    numbered = sorted(
        ((int(match.group(1)), path) for path in output_dir.iterdir() if (match := _CHECKPOINT.match(path.name))),
        reverse=True,
    )
    for _, folder in numbered:
        if folder.is_dir() and is_complete(folder):
            return str(folder)
        aside = folder.with_name(f"incomplete-{folder.name}")
        logger.warning("%s was not completely written (the run was killed while saving); moved to %s", folder, aside)
        folder.rename(aside)
    return None
