"""Fine-tune throughput: the PIL-loader recipe against ours, same model, data and machine, in one run.

For each input size, bench.train_step runs the PIL-loader recipe and ours (see its --help) as
separate processes with the same batch size, full fine-tune; reports images/s, step time, loader wait, the
device's busy share, MFU against the measured matmul ceiling, peak memory, and our speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from devtools.measuring import machine, report

CUDA = torch.cuda.is_available()


def measure(recipe: str, size: int, batch: int, args: argparse.Namespace, extra: list[str] = ()) -> dict:
    """One bench.train_step run in its own process."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "step.json"
        command = [sys.executable, "-m", "bench.train_step", "--recipe", recipe, "--image_size", str(size)]
        command += ["--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        command += ["--dataset", args.dataset, "--output", str(output), *extra]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        return json.loads(output.read_text())


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 64] if CUDA else [16, 8], help="One per size.")
    parser.add_argument("--steps", type=int, default=30 if CUDA else 6)
    parser.add_argument("--warmup", type=int, default=10 if CUDA else 2)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=CUDA, help="Also ours + compile.")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    rows = []
    for size, batch in zip(args.sizes, args.batches, strict=True):
        baseline = measure("pil-loader", size, batch, args)
        variants = [("ours", measure("ours", size, batch, args))]
        if args.compile:
            variants.append(("ours + torch.compile", measure("ours", size, batch, args, extra=["--compile"])))
        rows.append(baseline | {"name": "pil-loader", "speedup": 1.0})
        rows += [r | {"name": name, "speedup": r["images_per_s"] / baseline["images_per_s"]} for name, r in variants]
    return report(machine() | {"rows": rows}, args.output)


if __name__ == "__main__":
    main()
