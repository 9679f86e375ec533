"""Where a command may write: never into its own input, never over a folder it did not make, never half-done.

Every command that writes checks its output folder with :func:`check_output_dir` before it reads anything, and
a command that replaces its output folder writes into a hidden sibling and swaps it in only when complete
(:func:`replacing`), so a crash or a Ctrl-C leaves the previous output whole. Weights get the permissions of any
other file it writes (:func:`share_weights`).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from covid_cxr.model_folder import CHECKPOINT_PREFIX

logger = logging.getLogger(__name__)


class OutputFolderError(ValueError):
    """An output folder that would destroy or mix with the user's files; the message says which and what to do."""


def _overlap(output: Path, source: Path) -> str | None:
    if output == source:
        return "is"
    if source in output.parents:
        return "lies inside"
    if output in source.parents:
        return "contains"
    return None


def check_output_dir(
    output_dir: Path | str,
    inputs: dict[str, Path | str | None],
    flag: str = "--output_dir",
    replaces: str | None = None,
) -> None:
    """Refuse, before any work, an output folder that is, contains or lies inside one of `inputs` (flag name ->
    path). A command that replaces its output folder names the file that marks its own earlier output
    (`replaces`): it may then only replace an empty folder or one holding that file, and never the working
    folder or one above it."""
    output = Path(output_dir).expanduser().resolve()
    for name, source in inputs.items():
        if source is None:
            continue
        source = Path(source).expanduser().resolve()
        relation = _overlap(output, source)
        if relation:
            raise OutputFolderError(
                f"{flag} {output} {relation} the input folder {name} {source}: writing there would overwrite or "
                f"mix with your files; choose a {flag} outside it"
            )
    if replaces is None:
        return
    here = Path.cwd().resolve()
    if output == here or output in here.parents:
        raise OutputFolderError(
            f"{flag} {output} is the working folder (or holds it), and this command replaces its output folder "
            f"whole; name a new sub-folder instead, e.g. {flag} {output / 'dataset'}"
        )
    if output.exists() and not output.is_dir():
        raise OutputFolderError(f"{flag} {output} is a file, not a folder; choose another path")
    if output.is_dir() and any(output.iterdir()) and not (output / replaces).exists():
        raise OutputFolderError(
            f"{flag} {output} already holds files that this command did not write (no {replaces} in it), and "
            f"the folder would be replaced whole; empty it, or choose a new folder"
        )


def _fresh(output: Path, role: str) -> Path:
    """A new hidden sibling folder of `output`, with the mode the user's umask gives (mkdtemp's would be 0700,
    and the swapped-in output would keep it)."""
    folder = output.with_name(f".{output.name}.{role}-{uuid.uuid4().hex[:12]}")
    folder.mkdir()
    return folder


@contextmanager
def replacing(output_dir: Path | str) -> Iterator[Path]:
    """A fresh hidden folder beside `output_dir` to write into; when the block ends without an error it takes
    `output_dir`'s place (the old one removed only then), otherwise it is removed and `output_dir` is untouched."""
    output = Path(output_dir).expanduser().absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (*output.parent.glob(f".{output.name}.partial-*"), *output.parent.glob(f".{output.name}.old-*")):
        if leftover.is_dir():  # what a killed earlier run left
            logger.warning("removing %s, left by an earlier run that was killed", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
    staging = _fresh(output, "partial")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if output.exists():
        old = _fresh(output, "old")
        os.replace(output, old / output.name)
    os.replace(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("wrote %s", output)


def share_weights(folder: Path | str) -> None:
    """Give the folder's `*.safetensors` files the mode the umask gives every other new file.

    safetensors 0.8 writes through a temporary file that is always created 0600 and renamed into place
    (safetensors#782), so without this a model trained on a shared machine could be loaded by its trainer alone.
    Checkpoints are left alone: only the run that wrote them resumes from them."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(folder).rglob("*.safetensors"):
        if not any(part.startswith(f"{CHECKPOINT_PREFIX}-") for part in path.relative_to(folder).parts):
            path.chmod(0o666 & ~umask)
