"""How fine-tuning time and memory grow with dataset size (train split x1, x4, x16 by repetition) and with
input resolution, for the default recipe (pre-decoded data, last 2 blocks trained, batch 32).

Each configuration is one bench.train_step process: pre-decoding time, images/s over a few steps, the
projected epoch time at that size, and the process's peak memory. The PIL-loader data path is measured
at x1 and x16 beside it: slower per image, but its memory does not grow with the dataset.
"""

from __future__ import annotations

import argparse

import torch

from bench.train_throughput import measure
from devtools.measuring import machine, report

CUDA = torch.cuda.is_available()


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 168, 224, 448])
    parser.add_argument("--default_size", type=int, default=168)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--trainable_blocks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20 if CUDA else 4)
    parser.add_argument("--warmup", type=int, default=5 if CUDA else 1)
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    def run(recipe: str, size: int, repeat: int) -> dict:
        extra = ["--repeat", str(repeat), "--trainable_blocks", str(args.trainable_blocks)]
        return measure(recipe, size, args.batch, args, extra=extra)

    by_size = [run("ours", args.default_size, repeat) | {"recipe": "ours"} for repeat in args.repeats]
    by_size += [run("pil-loader", args.default_size, r) | {"recipe": "pil-loader"} for r in (1, max(args.repeats))]
    by_resolution = [run("ours", size, 1) for size in args.sizes]
    for row in by_size + by_resolution:
        row["epoch_min"] = row["train_images"] / row["images_per_s"] / 60
    return report(machine() | {"by_size": by_size, "by_resolution": by_resolution}, args.output)


if __name__ == "__main__":
    main()
