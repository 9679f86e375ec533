"""Run the Space app in a child process on a free localhost port: for the tests and the benchmarks, not the product."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(
    app: Path, env: dict[str, str], cwd: Path, log: Path, timeout: float = 120
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start `python app` with `env` (PORT is chosen here), wait until it answers, stop it afterwards.

    Output goes to `log` (a pipe could fill up and stall the server); its tail is shown if the app dies.
    """
    port = free_port()
    child_env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False") | env | {"PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(app)], cwd=cwd, env=child_env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.time() + timeout
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.time() > deadline:
                raise TimeoutError(f"{app} did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def open_page(page: object, url: str) -> None:
    """Load the Space in a Playwright page and wait until its answer panel is drawn. Not "networkidle": Gradio
    keeps a heartbeat open to every page of an app that holds per-visitor state, so the network never idles."""
    page.goto(url)
    page.locator("#decision").wait_for()
