"""What the benchmarks and the studies share, and no benchmark in itself: machine facts for a figure's caption,
timing statistics, the test split, running one measurement as a module with its JSON, and its markdown table."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Container, Sequence
from pathlib import Path

import datasets
import torch
import transformers

from covid_cxr.cards.markdown import markdown_rows

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall-clock seconds of each function over `repeats` rounds that call every function once, in turn: paths
    compared side by side see the same load on a shared machine."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def test_split(dataset_dir: str) -> datasets.Dataset:
    return datasets.load_from_disk(dataset_dir)["test"]


def report(result: dict, output: str | None) -> dict:
    """Print the result and, when asked, write it as JSON (bench/run.py and study/run.py collect these files)."""
    print(json.dumps(result, indent=2))
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
    return result


def run_module(module: str, results_dir: Path, extra: list[str]) -> dict:
    """Run `python -m <module>` from the repository root, its JSON written to results_dir/<name>.json, and read
    that JSON back."""
    results_dir.mkdir(exist_ok=True)
    output = results_dir / f"{module.rsplit('.', 1)[-1]}.json"
    print(f"== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module, "--output", str(output), *extra], check=True, cwd=REPO_ROOT)
    return json.loads(output.read_text())


def run_all(
    package: str, names: Sequence[str], results_dir: Path, model: str, with_model: Container[str], reuse: Container[str]
) -> dict[str, dict]:
    """Each `package.name`'s result: run afresh (with `--model` for those `with_model`), or read back from its JSON
    in results_dir when the name is in `reuse`."""
    return {
        name: json.loads((results_dir / f"{name}.json").read_text())
        if name in reuse
        else run_module(f"{package}.{name}", results_dir, ["--model", model] if name in with_model else [])
        for name in names
    }


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table (the package's one writer); floats to three decimals."""
    return markdown_rows(header, [[f"{v:.3f}" if isinstance(v, float) else v for v in row] for row in rows])
