"""Run every CPU benchmark and write bench/RESULTS.md (`make bench`). Each benchmark also runs on its own:
`python -m bench.<name> --help`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.common import RESULTS_DIR

BENCH_DIR = Path(__file__).resolve().parent
BENCHES = ("dataset_build", "inference", "scope_guard", "load_space")


def run(name: str, extra: list[str]) -> dict:
    RESULTS_DIR.mkdir(exist_ok=True)
    output = RESULTS_DIR / f"{name}.json"
    print(f"== bench.{name}", flush=True)
    subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--output", str(output), *extra], check=True, cwd=BENCH_DIR.parent
    )
    return json.loads(output.read_text())


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def render(results: dict[str, dict], model: str) -> str:
    inference, build = results["inference"], results["dataset_build"]
    guard, load = results["scope_guard"], results["load_space"]
    first = build
    return f"""# Benchmarks

Machine: {first["machine"]}; {first["versions"]}; measured {first["date"]}. Reproduce everything with
`make bench` (or one benchmark with the command under its table). GPU benchmarks (fine-tune throughput, MFU,
time to a trained model, scaling on GPUs) have not been run: no GPU was lent to this project yet.

## CPU inference (model `{model}`, {inference["input_px"]} px input, {inference["threads"]} threads)

Median (p50) and p95 over repeated calls after warm-up; test ROC AUC over the whole test split for each path.

{
        table(
            ["path", "batch", "p50 ms", "p95 ms", "images/s", "test ROC AUC"],
            [
                [r["path"], r["batch"], r["p50_ms"], r["p95_ms"], r["images_per_s"], r["test_roc_auc"]]
                for r in inference["rows"]
            ],
        )
    }

Command: `python -m bench.inference --model {model}`. The Space's predict includes file decoding, the scope
guard and (fourth row) Grad-CAM, whose backward pass only runs from the logits to the last hidden state.

## Dataset build

{
        table(
            ["input", "candidate files", "kept", "wall s", "s per 1,000 images", "peak RSS MB"],
            [
                [r["input"], r["candidates"], r["kept"], r["wall_s"], r["s_per_1000_images"], r["peak_rss_mb"]]
                for r in build["rows"]
            ],
        )
    }

The second row holds every image four times (symbolic links in class folders): three of four are reported as
exact duplicates. Peak memory stays flat because images are decoded one at a time and streamed to Arrow
(peak RSS is the largest over the build processes run so far, so the second row is an upper bound).
Command: `python -m bench.dataset_build`.

## Space scope guard

False rejects on the {guard["test_xrays"]} real test X-rays: **{guard["false_rejects"]}
({100 * guard["false_reject_rate"]:.1f}%)**. Caught among {guard["non_xrays"]} non-X-ray images (all
scikit-image sample images, blank frames, a text page, a cropped strip of an X-ray):
**{guard["caught"]} ({100 * guard["catch_rate"]:.0f}%)**.

{table(["image", "verdict"], [[name, verdict] for name, verdict in guard["per_image"].items()])}

Command: `python -m bench.scope_guard --model {model}`.

## Space under load

{load["users"]} concurrent `gradio_client` users x {load["requests_per_user"]} requests, each a different
real test X-ray, against `space/app.py` on 127.0.0.1 (queue concurrency 2):
answered {load["answered"]}/{load["users"] * load["requests_per_user"]} (scored {load["scored"]}, refused by
the scope guard {load["refused_by_scope_guard"]}, errors {len(load["errors"])}), {load["requests_per_s"]:.1f}
requests/s, latency p50 {load["latency_p50_s"]:.2f} s and p95 {load["latency_p95_s"]:.2f} s (queueing
included), server memory {load["server_rss_before_mb"]:.0f} MB before and {load["server_rss_after_mb"]:.0f} MB
after. Command: `python -m bench.load_space --model {model}`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    args = parser.parse_args()
    results = {name: run(name, [] if name == "dataset_build" else ["--model", args.model]) for name in BENCHES}
    (BENCH_DIR / "RESULTS.md").write_text(render(results, args.model))
    print(f"Wrote {BENCH_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
