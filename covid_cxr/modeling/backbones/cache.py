"""Where converted backbones and their downloads are kept: per user, as Hugging Face keeps its own cache, never in
the working folder."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "COVID_CXR_CACHE"


def cache_folder() -> Path:
    """$COVID_CXR_CACHE, else ``covid-cxr`` in the user cache ($XDG_CACHE_HOME, else ~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "covid-cxr"


def backbone_root() -> Path:
    """Where offline backbones are converted unless a caller names a folder."""
    return cache_folder() / "backbones"


def downloads_folder() -> Path:
    """Where the registry packages a converter reads are fetched, once."""
    return cache_folder() / "downloads"
