"""Helpers shared by the benchmarks: machine facts, timing statistics, the test split."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
import transformers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu}, {os.cpu_count()} cores"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"),
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"datasets {datasets.__version__}, python {platform.python_version()}",
    }


def timed(function: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def test_split(dataset_dir: str) -> datasets.Dataset:
    return datasets.load_from_disk(dataset_dir)["test"]


def report(result: dict, output: str | None) -> dict:
    """Print the result and, when asked, write it as JSON (bench/run.py collects these files)."""
    import json

    print(json.dumps(result, indent=2))
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
    return result
