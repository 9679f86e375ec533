"""Dataset build speed and peak memory, on the curated set and on a 4x larger copy (each image 4 times).

The 4x copy is made of symbolic links in class folders, so it also exercises the folder layout and the duplicate
removal (3 of every 4 images are exact duplicates and are reported as such).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.measuring import machine, report

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed_build(label: str, input_dir: Path, output_dir: Path) -> dict:
    """Run the real entry point in a child process: wall time and the child's peak resident memory."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train" / "build_dataset.py"),
            "--input_dir",
            str(input_dir),
            "--output_dir",
            str(output_dir),
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((output_dir / "build_report.json").read_text())
    candidates = summary["kept"] + summary["skipped_count"]
    return {
        "input": label,
        "candidates": candidates,
        "kept": summary["kept"],
        "wall_s": wall,
        "s_per_1000_images": 1000 * wall / candidates,
        "peak_rss_mb": max(peak, before) / 1024,
    }


def repeated_folders(source: Path, target: Path, copies: int) -> Path:
    import csv

    with (source / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        folder = target / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            link = folder / f"{copy}_{Path(row['file_name']).name}"
            os.symlink((source / row["file_name"]).resolve(), link)
    return target


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input_dir", default="../shared/cxr")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="covid-cxr-bench-") as scratch:
        scratch_dir = Path(scratch)
        rows = [timed_build(f"{args.input_dir} (curated)", Path(args.input_dir), scratch_dir / "x1")]
        big = repeated_folders(Path(args.input_dir), scratch_dir / "x4-input", 4)
        rows.append(timed_build("the same images x4, in class folders", big, scratch_dir / "x4"))
    result = {**machine(), "rows": rows}
    return report(result, args.output)


if __name__ == "__main__":
    main()
