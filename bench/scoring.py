"""`covid-cxr predict` over the test split's real films: films per second one at a time (what predict did before
it batched: the Space's answer per file, heat map included), batched in one process, in two processes under
`accelerate launch --multi_gpu --num_processes 2` (gloo on the CPU, one thread each), and in bfloat16.

The one-at-a-time path is timed in this process; the others are the command itself, timed by its own summary (the
scoring, not the model's loading). Each batched path's answers are compared with the one-at-a-time answers: the
largest COVID-19 probability difference (unrounded, from the same batches in this process; the bfloat16 row's from
its CSV, which rounds to 1e-4) and whether it refused the same films; the two-process CSV is compared with the
one-process CSV byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets

from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.data.imaging import load_image
from covid_cxr.serving.predictor import OutOfScope, Predictor
from devtools.measuring import REPO_ROOT, machine, report
from pages.blocks import DOCS, Block

LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
SUMMARY = re.compile(r"; (\d+) in this run, ([\d.]+) s")
RESULTS = REPO_ROOT / "bench" / "results" / "scoring.json"


def write_films(dataset: str, folder: Path) -> list[Path]:
    """The test split's films as the files they came from (their stored bytes)."""
    split = datasets.load_from_disk(dataset)["test"].cast_column("image", datasets.Image(decode=False))
    files = []
    for cell, name in zip(split["image"], split["file_name"], strict=True):
        files.append(folder / Path(name).name)
        files[-1].write_bytes(cell["bytes"] or Path(cell["path"]).read_bytes())
    return sorted(files)


def one_at_a_time(predictor: Predictor, files: list[Path]) -> tuple[float, list[float | None]]:
    """Films per second and the answers (None: refused), one `analyse` per file, as predict scored before."""
    answers = []
    start = time.perf_counter()
    for path in files:
        try:
            answers.append(predictor.analyse(path, heatmap=True).covid_probability)
        except OutOfScope:
            answers.append(None)
    return len(files) / (time.perf_counter() - start), answers


def batched(predictor: Predictor, files: list[Path], size: int) -> list[float | None]:
    answers = []
    for start in range(0, len(files), size):
        films = [load_image(path).image for path in files[start : start + size]]
        for answer in predictor.analyse_images(films, heatmap=True):
            answers.append(None if isinstance(answer, OutOfScope) else answer.covid_probability)
    return answers


def forward_only(predictor: Predictor, files: list[Path], size: int) -> float:
    """Films per second of the model's forward pass alone (the films decoded and processed beforehand): the most
    a float32 command can reach on this device."""
    from covid_cxr.data.processor_size import presized

    films = [presized(load_image(path).image, predictor.processor) for path in files]
    batches = [predictor.processor(films[i : i + size], return_tensors="pt")["pixel_values"]
               for i in range(0, len(films), size)]  # fmt: skip
    start = time.perf_counter()
    for pixels in batches:
        predictor.forward(pixels, heatmap=True)
    return len(files) / (time.perf_counter() - start)


def command(model: str, inputs: Path, output: Path, size: int, *flags: str, launch: bool = False) -> dict:
    """Run predict (under the launcher when asked): its films per second and the probabilities of its CSV."""
    head = [sys.executable, *LAUNCH] if launch else [sys.executable]
    argv = [*head, "-m", "covid_cxr.cli.predict", "--model", model, "--inputs", str(inputs), "--output", str(output),
            "--batch_size", str(size), *flags]  # fmt: skip
    env = os.environ | ({"OMP_NUM_THREADS": "1"} if launch else {})
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env)
    films, seconds = SUMMARY.search(done.stdout).groups()
    with output.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    probabilities = [float(r["covid_probability"]) if r["status"] == "ok" else None for r in rows]
    return {"images_per_s": int(films) / float(seconds), "probabilities": probabilities}


def difference(answers: list[float | None], reference: list[float | None]) -> tuple[float, bool]:
    """The largest probability difference over the films both answered, and whether both refused the same."""
    same = [a is None for a in answers] == [r is None for r in reference]
    both = [(a, r) for a, r in zip(answers, reference, strict=True) if a is not None and r is not None]
    return float(max(abs(a - r) for a, r in both)), same


def body(result: dict) -> str:
    """The table of docs/scoring.md and of bench/RESULTS.md's section."""
    before, one, two, _, floor = (r["images_per_s"] for r in result["rows"])
    header = ["path", "processes", "images/s", "x one at a time", "max prob. diff", "same refusals", "same file"]
    rows = [
        [r["path"], r["processes"], f"{r['images_per_s']:.1f}", f"{r['speed_up']:.2f}" if "speed_up" in r else "",
         f"{r['max_probability_difference']:.1e}" if "max_probability_difference" in r else "",
         {True: "yes", False: "no"}.get(r.get("same_refusals"), ""),
         {True: "yes", False: "no"}.get(r.get("same_file_as_one_process"), "")]
        for r in result["rows"]
    ]  # fmt: skip
    return (
        f"Measured {result['date']} on {result['machine']} ({result['versions']}) with `{result['model']}` on its "
        f"{result['films']} test films; *max prob. diff*: the largest COVID-19 probability difference from the "
        "one-at-a-time answers; *same file*: the two-process CSV equals the one-process CSV byte for byte.\n\n"
        + markdown_rows(header, rows)
        + f"\n\nThe batched command (one process, float32) runs at {one / floor:.0%} of the speed of the model's "
        f"forward pass alone, decoding, scope checks, lungs and heat map included: in float32 this CPU has little "
        f"more to give, and {one / before:.2f}x is what batching gains over one film at a time. Two processes of "
        f"one thread each on the same two cores: {two / one:.2f}x one process of two threads."
    )


BLOCK = Block("scoring", DOCS / "scoring.md", RESULTS, "python -m bench.scoring", body)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--output", default=str(RESULTS), help="Write the results as JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        films, outputs = Path(temporary) / "films", Path(temporary) / "out"
        films.mkdir(), outputs.mkdir()
        files = write_films(args.dataset, films)
        predictor = Predictor(args.model)
        before, reference = one_at_a_time(predictor, files)
        in_process = difference(batched(predictor, files, args.batch_size), reference)
        floor = forward_only(predictor, files, args.batch_size)
        runs = {
            "one": command(args.model, films, outputs / "one.csv", args.batch_size),
            "two": command(args.model, films, outputs / "two.csv", args.batch_size, launch=True),
            "bf16": command(args.model, films, outputs / "bf16.csv", args.batch_size, "--bf16"),
        }
        same_file = (outputs / "one.csv").read_bytes() == (outputs / "two.csv").read_bytes()
    bf16 = difference(runs["bf16"]["probabilities"], reference)
    rows = [
        {"path": "one film at a time (predict before batching)", "processes": 1, "images_per_s": before},
        {"path": f"batched ({args.batch_size})", "processes": 1, "images_per_s": runs["one"]["images_per_s"],
         "max_probability_difference": in_process[0], "same_refusals": in_process[1]},
        {"path": f"batched ({args.batch_size})", "processes": 2, "images_per_s": runs["two"]["images_per_s"],
         "same_file_as_one_process": same_file},
        {"path": f"batched ({args.batch_size}), --bf16", "processes": 1, "images_per_s": runs["bf16"]["images_per_s"],
         "max_probability_difference": bf16[0], "same_refusals": bf16[1]},
        {"path": f"the model's forward pass alone, batched ({args.batch_size})", "processes": 1, "images_per_s": floor},
    ]  # fmt: skip
    for row in rows[1:]:
        row["speed_up"] = row["images_per_s"] / before
    result = report({**machine(), "model": args.model, "films": len(files), "rows": rows}, args.output)
    BLOCK.write(result)
    return result


if __name__ == "__main__":
    main()
