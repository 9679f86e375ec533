"""Delete uploads and result images from Gradio's cache once they are older than the Space's lifetime, including
those of earlier instances that were killed before they could clean up.

Gradio's own ``delete_cache`` walks sets of file names that requests add to at the same moment; under load its
task died ("Set changed size during iteration") and deleted nothing more (bench/load_space.py counts the files a
load run leaves). This walks the folders themselves, in a daemon thread, so no request can disturb it.

Every instance gets its own folder under one fixed root per user (``<temp>/covid-cxr-space-uid<uid>``), named
by its pid and start time, and holds a lock on it (``flock`` of the folder itself) for as long as the process
lives. The kernel drops that lock however the process ends (SIGKILL and the OOM killer included), so a folder whose
lock can be taken belongs to no running instance: its files are swept by age like the instance's own. Pids are not
trusted to tell this: they are reused, and a restarted container often gives the new server the old one's pid.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def sweep(folder: Path, lifetime_s: float, keep: frozenset[Path] = frozenset()) -> int:
    """Delete every file under `folder` last written more than `lifetime_s` ago (except `keep`), then the empty
    folders left; return how many files went. Files that vanish meanwhile are someone else's deletion."""
    cutoff, deleted = time.time() - lifetime_s, 0
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files before their folder
        try:
            stat = path.lstat()
            if max(stat.st_mtime, stat.st_ctime) > cutoff or path in keep:
                continue
            if path.is_dir():
                if not any(path.iterdir()) and not any(k.is_relative_to(path) for k in keep):
                    path.rmdir()
            else:
                path.unlink()
                deleted += 1
        except OSError:  # gone already, or a folder that just got a file
            continue
    return deleted


def claim_cache(parent: Path) -> Path:
    """A new folder of this process's own under the fixed root in `parent`, locked until the process ends.

    The lock's descriptor is left open on purpose: closing it would free the folder for another instance's sweep.
    """
    root = parent / f"covid-cxr-space-uid{os.getuid()}"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{int(time.time())}-", dir=root))
    fcntl.flock(os.open(folder, os.O_RDONLY | os.O_DIRECTORY), fcntl.LOCK_EX)
    return folder


def in_use(folder: Path) -> bool:
    """Whether `folder` must be left alone: a running instance holds its lock, or it is no folder (a stray file or
    link). A folder not locked yet is being claimed right now: it is new, and only what is older than the lifetime
    is ever deleted."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # gone, or not a folder
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # and with it the lock just taken


def sweep_abandoned(own: Path, lifetime_s: float) -> int:
    """Sweep, by age, the folders beside `own` whose instances no longer run, and remove them once they have been
    empty for a lifetime; return how many files went. Nothing outside `own`'s root is looked at."""
    deleted, cutoff = 0, time.time() - lifetime_s
    for folder in own.parent.iterdir():
        if folder == own or in_use(folder):
            continue
        deleted += sweep(folder, lifetime_s)
        try:
            if folder.lstat().st_mtime <= cutoff and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:  # swept by another instance meanwhile
            continue
    return deleted


def forget_deleted(file_sets: Sequence[set[str]]) -> int:
    """Drop from Gradio's per-component sets of cached file names those whose files are gone (they grow by every
    upload and result image and nothing else prunes them); return how many names are left. `set.copy` and
    `difference_update` each run whole under the GIL, so a request adding a name meanwhile is never lost."""
    for names in file_sets:
        names.difference_update([name for name in names.copy() if not os.path.lexists(name)])
    return sum(len(names) for names in file_sets)


def start_sweeper(
    folder: Path, lifetime_s: float, keep: frozenset[Path] = frozenset(), file_sets: Sequence[set[str]] = ()
) -> threading.Thread:
    """Sweep `folder` and the abandoned folders beside it now and every half lifetime for as long as the process
    runs, and forget the deleted files in `file_sets`."""

    def loop() -> None:
        while True:
            try:
                if count := sweep(folder, lifetime_s, keep) + sweep_abandoned(folder, lifetime_s):
                    logger.info(
                        "deleted %d upload and result file(s) older than %.0f s; Gradio still lists %d cached file(s)",
                        count,
                        lifetime_s,
                        forget_deleted(file_sets),
                    )
            except Exception:  # a fault here must not end the sweeping
                logger.exception("cache sweep failed")
            time.sleep(max(lifetime_s / 2, 0.5))

    thread = threading.Thread(target=loop, name="covid-cxr-cache-sweeper", daemon=True)
    thread.start()
    return thread
