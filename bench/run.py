"""Run every CPU benchmark and write bench/RESULTS.md (`make bench`). Each benchmark also runs on its own:
`python -m bench.<name> --help`. The studies of a trained model (scope guard, attention, lung focus) are
study/run.py's."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import scoring
from devtools.measuring import REPO_ROOT, run_all, run_module, table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCHES = ("fresh_build", "dataset_build", "inference", "scoring", "load_space", "soak", "train_throughput",
           "train_scaling")  # fmt: skip
MODEL_BENCHES = ("inference", "scoring", "load_space", "soak")  # the others train their own models
COVIDX_IMAGES = 30_000
H100_BF16_DENSE_TFLOPS = 989  # NVIDIA's datasheet figure (SXM), used only for the labelled estimate below
ASSUMED_MFU = 0.35  # the target; an assumption until measured on a GPU


def load_section(load: dict, model: str) -> str:
    columns = ["requests", "answered", "scored", "refused_by_scope_guard", "errors", "requests_per_s"]
    columns += ["latency_p50_s", "latency_p95_s", "server_rss_before_mb", "server_rss_after_mb"]
    rows = [
        [name, *(load[key][c] for c in columns)]
        for name, key in (("distinct files", "distinct"), ("one identical file", "identical"))
    ]
    header = ["round", "requests", "answered", "scored", "refused", "errors", "req/s", "p50 s", "p95 s"]
    header += ["RSS before MB", "RSS after MB"]
    return f"""## Space under load

`space/app.py` on 127.0.0.1 (queue concurrency 2), {load["users"]} concurrent `gradio_client` users, measured
{load["date"]} on {load["machine"]}. *Distinct files*: {load["requests_per_user"]} requests per user, each a
different real test X-ray ({load["distinct_images"]} distinct files). *One identical file*: every user sends the
same X-ray at the same moment, {load["rounds"]} rounds. An answer counts only when both of its result images
download complete; *refused*: the scope guard's readable refusal. Latency includes queueing.

{table(header, rows)}

Files the server held in its Gradio cache right after the run: {load["server_files_at_end"]}; after
{2 * load["file_lifetime_s"]} s with `FILE_LIFETIME_S={load["file_lifetime_s"]}`: {load["server_files_after_lifetime"]}
(the gallery's example thumbnails, kept while the app runs). Tracebacks in the server log:
{load["tracebacks_in_server_log"]}. Command: `python -m bench.load_space --model {model}`."""


def scoring_section(result: dict, model: str) -> str:
    return f"""## Scoring an archive (`covid-cxr predict`)

{scoring.body(result)}

What the rows mean and why two processes add nothing on two cores: [docs/scoring.md](../docs/scoring.md).
Command: `python -m bench.scoring --model {model}`."""


def inference_section(inference: dict, model: str) -> str:
    keys = ["path", "batch", "p50_ms", "p95_ms", "images_per_s", "test_roc_auc", "max_probability_difference"]
    keys += ["refused"]
    header = ["path", "batch", "p50 ms", "p95 ms", "images/s", "test ROC AUC", "max prob. diff from pipeline()"]
    header += ["refused"]
    rows = [[r.get(key, "") for key in keys] for r in inference["rows"]]
    for row in rows:  # differences near float precision: three decimals would print them as zero
        row[6] = f"{row[6]:.1e}" if isinstance(row[6], float) else row[6]
    full = [[r["path"], r["p50_ms"], r["p95_ms"]] for r in inference["full_size"]]
    px = inference["input_px"]
    model_kind = (
        "a lungs-first model: every row scores the film as it is, the model rows finding the lungs and blurring "
        "the rest inside the model"
        if inference["lungs_first"]
        else "a whole-film model"
    )
    return f"""## CPU inference (model `{model}`, {px} px input, {inference["threads"]} threads)

Median (p50) and p95 over repeated calls after warm-up, on {model_kind}; test ROC AUC over the whole test split
({inference["test_images"]} films) for each path (a Space row's over the films it answered, from its own answers).
Measured {inference["date"]} on {inference["machine"]}, a machine shared with other jobs: absolute times vary from
run to run, so the one-film paths are timed in one interleaved run (each round calls every path once).
*Space predict* is the Space's whole answer: file decoding, the scope guard, the lung fields, the heat map and the
decision. *Max prob. diff from pipeline()*: the largest COVID-19 probability difference from `pipeline()`'s on the
same film, over the test split; *refused*: films the Space turned away.

{table(header, rows)}

Over the test split, the ONNX graph's probabilities differ from PyTorch's by at most
{inference["onnx_against_pytorch"]:.1e}, and `pipeline()`'s from the model's own batch pass by at most
{inference["pipeline_against_model"]:.1e}.

Full-size films: {inference["full_size_films"]} real test films upscaled (bicubic) to each long side,
sent as PNG, beside the decoding of the same files alone, timed in one interleaved run:

{table(["path", "p50 ms", "p95 ms"], full)}
{warning_section(inference.get("attention_warning"))}

Command: `python -m bench.inference --model {model}`."""


def fresh_build_section(fresh: dict, model: str) -> str:
    rows = [[f"make {r['target']}", r["wall_s"], round(r["wall_s"] / 60, 1), r["peak_rss_mb"]] for r in fresh["rows"]]
    rows.append(
        ["all four", fresh["total_s"], round(fresh["total_s"] / 60, 1), max(r["peak_rss_mb"] for r in fresh["rows"])]
    )
    return f"""## From a fresh checkout to a trained model

`make data backbone lungs train` in a fresh clone of commit {fresh["commit"]} (the virtualenv already installed;
`make train` builds the lung segmenter first when the masks are there, so `lungs` is part of what a new user
waits for), measured {fresh["date"]} on {fresh["machine"]}. Peak RSS is the largest process's of all targets run
so far. Of `make train`, the Trainer loop took {fresh["trainer_loop_s"]:.0f} s; the rest is evaluation,
calibration, the card's measurements and the ONNX export. Of `make lungs`, fitting and cross-validating both
segmenters took {fresh["lungs_fit_and_cv_s"]:.0f} s.

{table(["target", "wall s", "wall min", "peak RSS MB"], rows)}

Command: `python -m bench.fresh_build`."""


def warning_section(warning: dict | None) -> str:
    """How often the Space's attention warning fired over the test split, per source and label (empty when the
    run had no lung segmenter)."""
    if not warning:
        return ""
    rows = [[g["source"], g["label"], g["images"], g["answered"], "" if g["warned"] is None else f"{g['warned']:.0%}"]
            for g in warning["groups"]]  # fmt: skip
    return f"""

*Attention warning* on the Space's path over the whole test split: the share of the answered images (a heat
map and lungs found; refusals aside) whose COVID-19 heat is less than {warning["below"]} times as dense on the
lungs as on the image as a whole, the point below which the Space tells the reader that the answer rests no
more on the lungs than on the rest of the film (`covid_cxr.lungs.measures.attention_warning`).

{table(["source", "label", "test images", "answered", "warning fired"], rows)}"""


def soak_section(soak: dict, model: str) -> str:
    runs = [soak["baseline"], soak] if soak.get("baseline") else [soak]

    def summary(run: dict) -> list[object]:
        curve = run["curve"]
        name = "glibc default arenas" if run["arena_max"] == 0 else "the Space (arenas bounded)"
        return [name, run["requests"], run["distinct_images"], run["clients"], run["errors"], curve[0]["rss_mb"],
                curve[len(curve) // 2]["rss_mb"], max(p["rss_mb"] for p in curve), curve[-1]["rss_mb"],
                run["rss_growth_mb_per_1000_last_half"]]  # fmt: skip

    header = ["server", "requests", "distinct X-rays", "clients", "errors", "RSS start MB", "RSS mid-run MB"]
    header += ["RSS peak MB", "RSS end MB", "growth MB per 1,000 (last half)"]
    points = sorted({p["requests"] for run in runs for p in run["curve"]})
    rss = [[n, *(next((p["rss_mb"] for p in run["curve"] if p["requests"] == n), "") for run in runs)] for n in points]
    names = ["glibc default arenas MB" if run["arena_max"] == 0 else "arenas bounded MB" for run in runs]
    bounded, warm = soak["curve"], next(p for p in soak["curve"] if p["requests"] >= 250)
    finding = (
        f"From the 250th answer to the last ({bounded[-1]['requests']}) the bounded server's RSS moved by "
        f"{bounded[-1]['rss_mb'] - warm['rss_mb']:+.0f} MB."
    )
    if soak.get("baseline"):
        finding += (
            f" With glibc's default arenas it still grew {soak['baseline']['rss_growth_mb_per_1000_last_half']:.0f} MB "
            f"per 1,000 answers over its second half, against {soak['rss_growth_mb_per_1000_last_half']:.0f} bounded: "
            "the same code and images, so the growth was mostly memory the arenas keep, not a leak (the few MB per "
            "1,000 left are not told apart from noise by a run of this length)."
            if soak["rss_growth_mb_per_1000_last_half"] < soak["baseline"]["rss_growth_mb_per_1000_last_half"] / 2
            else " Bounding the arenas did not flatten the curve: look for a leak."
        )
    return f"""## Memory under a soak

`space/app.py` on 127.0.0.1 answering real X-rays (every image of the dataset, each its own file, in turn) from
{soak["clients"]} concurrent `gradio_client` clients; the server's RSS sampled every 250 answers. Measured
{soak["date"]} on {soak["machine"]}, shared with other jobs. *Growth* is the slope over the second half of the
run: a leak keeps it above zero, an allocator that has reached its working set keeps it near zero.

{table(header, [summary(run) for run in runs])}

{finding}

The RSS curves:

{table(["requests answered", *names], rss)}

Command: `python -m bench.soak --model {model}` (`--baseline_requests 0` skips the run with glibc's default arenas)."""


def render(results: dict[str, dict], model: str) -> str:
    inference, build = results["inference"], results["dataset_build"]
    load = results["load_space"]
    first = build
    return f"""# Benchmarks

Machine: {first["machine"]}; {first["versions"]}; measured {first["date"]}. Reproduce everything with
`make bench` (or one benchmark with the command under its table). GPU benchmarks (fine-tune throughput, MFU,
time to a trained model, scaling on GPUs) have not been run: no GPU was lent to this project yet. The
training benchmarks run unchanged on a GPU (`python -m bench.train_throughput` picks CUDA, bf16, batch 64
and adds a torch.compile row) and print the same tables.

{inference_section(inference, model)}

{scoring_section(results["scoring"], model)}

{fresh_build_section(results["fresh_build"], model)}

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

{load_section(load, model)}

{soak_section(results["soak"], model)}

{training_sections(results["train_throughput"], results["train_scaling"])}"""


def training_sections(throughput: dict, scaling: dict) -> str:
    """The fine-tune's throughput, its scaling with data and resolution, and what a COVIDx-scale run would take."""
    return "\n".join([throughput_section(throughput), scaling_section(scaling), covidx_estimate(throughput, scaling)])


def throughput_table(rows: list[dict]) -> str:
    return table(
        [
            "px",
            "recipe",
            "batch",
            "images/s",
            "step ms",
            "loader wait ms",
            "busy share",
            "GFLOPs/image",
            "MFU",
            "peak RSS MB",
            "warm-up s",
            "speed-up",
        ],
        [
            [
                r["image_size"],
                r["name"],
                r["batch"],
                r["images_per_s"],
                r["step_ms"],
                r["loader_wait_ms"],
                r["device_busy_share"],
                r["gflops_per_image"],
                r["mfu"],
                r["peak_rss_mb"],
                r["warmup_s"],
                r["speedup"],
            ]
            for r in rows
        ],
    )


def throughput_section(throughput: dict) -> str:
    rows = throughput["rows"]
    largest = max(r["image_size"] for r in rows)
    ref_largest = next(r for r in rows if r["image_size"] == largest and r["name"] == "pil-loader")
    at_largest = [r for r in rows if r["image_size"] == largest and r["name"] != "pil-loader"]
    ours_largest = max(at_largest, key=lambda r: r["speedup"])
    return f"""## Fine-tune throughput: the PIL-loader recipe against ours ({throughput["machine"]})

Full fine-tune of the default backbone (DINOv2 ViT-S/14), same data and batch size for both recipes, each
in its own process; medians over the timed steps after warm-up. *PIL loader*: the transformers
image-classification example's data path and precision (fp32, PIL decode + augmentation in dataloader workers
through `set_transform`, plain AdamW), with this project's augmentation, loss and Trainer subclass rather than
the example's torchvision transforms (torchvision's PyPI wheel does not load against the CPU torch pin): it
isolates the data path and precision, not the whole example.
*Ours* (the default of `train/finetune.py`): images pre-decoded once to uint8 pixels and augmented on the
device, fused AdamW, SDPA attention, bf16 where the device computes it natively (CUDA; not this CPU). MFU is
images/s x counted FLOPs per image over the {rows[0]["peak_dtype"]} matmul ceiling measured in the same process
({min(r["peak_tflops"] for r in rows):.2f} to {max(r["peak_tflops"] for r in rows):.2f} TFLOPS here); busy
share: {rows[0]["busy_measure"]}.

{throughput_table(rows)}

At {ref_largest["image_size"]} px the fastest of ours runs at {ours_largest["speedup"]:.2f}x the PIL loader with
{100 * ours_largest["mfu"]:.0f}% MFU. *Warm-up s* is the wall time of the untimed first steps, torch.compile's
compilation included: compile pays only when the steps it saves outweigh it. On this CPU the model's matmuls
already keep both cores busy, so the data path can only remove the PIL loader's decode cost and the loader
wait; the issue's targets (>= 5x and >= 35% MFU at 448 px) are for an
H100, where the PIL loader is expected to be the bottleneck, and remain to be measured there.
Command: `python -m bench.train_throughput` (`--compile` adds the torch.compile rows; on by default on CUDA).
"""


def scaling_section(scaling: dict) -> str:
    default = scaling["by_size"][0]
    biggest = max((r for r in scaling["by_size"] if r["recipe"] == "ours"), key=lambda r: r["repeat"])
    pil = next(r for r in scaling["by_size"] if r["recipe"] == "pil-loader" and r["repeat"] == default["repeat"])
    return f"""## Training time and memory against dataset size and resolution ({scaling["machine"]})

Default recipe (pre-decoded data, last 2 blocks trained, batch {default["batch"]}); the train split repeated
x1, x4 and x16. *pre-decode s*: the one-time decode of the train and validation splits (cached beside the dataset by
`datasets`, so later runs skip it); *epoch min*: train images / measured images/s.

{
        table(
            ["data path", "train images", "px", "pre-decode s", "images/s", "epoch min", "peak RSS MB", "private MB"],
            [
                [
                    r["recipe"],
                    r["train_images"],
                    r["image_size"],
                    r["prepare_s"],
                    r["images_per_s"],
                    r["epoch_min"],
                    r["peak_rss_mb"],
                    r["private_mb"],
                ]
                for r in scaling["by_size"]
            ],
        )
    }

Images/s stays flat as the data grows, so an epoch grows linearly with it. The pre-decoded pixels are read in
place from `datasets`' memory-mapped Arrow cache: they count in a process's RSS once touched (the few timed
steps here touch few of them; a full epoch touches the whole file), but as page cache that every process on the
machine shares (accelerate ranks, loader workers). *Private MB*, the memory only that process holds after
training, grows from {default["private_mb"]:.0f} MB at x1 to {biggest["private_mb"]:.0f} MB for
{biggest["train_images"]} images. The PIL path (`--no_predecode`) decodes every epoch instead; on this CPU it
runs at {pil["images_per_s"] / default["images_per_s"]:.2f}x the pre-decoded speed at x1, because here the model,
not the loader, is the bottleneck.

{
        table(
            ["px", "GFLOPs/image", "images/s", "MFU", "epoch min", "peak RSS MB"],
            [
                [r["image_size"], r["gflops_per_image"], r["images_per_s"], r["mfu"], r["epoch_min"], r["peak_rss_mb"]]
                for r in scaling["by_resolution"]
            ],
        )
    }

Command: `python -m bench.train_scaling`.
"""


def covidx_estimate(throughput: dict, scaling: dict) -> str:
    """Arithmetic from the measured rates: this CPU's, and an H100's at an assumed MFU (said as such)."""
    rows, default = throughput["rows"], scaling["by_size"][0]
    largest = max(r["image_size"] for r in rows)
    ref_largest = next(r for r in rows if r["image_size"] == largest and r["name"] == "pil-loader")
    per_image_s = 1 / default["images_per_s"]
    decode_s = default["prepare_s"] / default["train_images"]
    flops_448 = ref_largest["gflops_per_image"] * 1e9
    gpu_epoch_s = COVIDX_IMAGES * flops_448 / (ASSUMED_MFU * H100_BF16_DENSE_TFLOPS * 1e12)
    return f"""## Estimate: a COVIDx-scale run ({COVIDX_IMAGES:,} images)

- **This CPU, default recipe** (measured rates above): pre-decoding {decode_s * COVIDX_IMAGES / 60:.0f} min once,
  then {per_image_s * COVIDX_IMAGES / 60:.0f} min per epoch, {3 * per_image_s * COVIDX_IMAGES / 3600:.1f} h for
  the default 3 epochs.
- **One H100, `train/configs/gpu.yaml`** (448 px, full fine-tune, {flops_448 / 1e9:.0f} GFLOPs per training
  image counted above): *arithmetic, not a measurement*: at the {100 * ASSUMED_MFU:.0f}% MFU target of the
  {H100_BF16_DENSE_TFLOPS} TFLOPS bf16 datasheet peak, {gpu_epoch_s:.0f} s per epoch and
  {15 * gpu_epoch_s / 60:.0f} min for 15 epochs, plus validation passes and a one-time pre-decode (CPU-bound,
  parallel over `--preprocessing_num_workers`). The pre-decoded train pixels at 512 px take
  {COVIDX_IMAGES * 512 * 512 / 2**30:.1f} GiB on disk and, while training, in the page cache.
- **8 H100s with `accelerate launch --multi_gpu --num_processes 8`**: ideally 1/8 of that compute time; each
  step also all-reduces the 22 M fp32 gradients (88 MB; bf16 autocast keeps fp32 weights), small against a
  448 px step at batch 64 per GPU.
  The pre-decoded pixels are memory-mapped, so the 8 processes share one copy in the page cache. Again not
  measured.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--reuse", nargs="*", default=[], choices=BENCHES, help="Keep these results/*.json.")
    parser.add_argument(
        "--only", choices=list(SECTIONS), help="Run this benchmark alone and replace only its section of RESULTS.md."
    )
    args = parser.parse_args()
    if args.only:
        extra = ["--model", args.model] if args.only in MODEL_BENCHES else []
        replace_section(SECTIONS[args.only](run_module(f"bench.{args.only}", RESULTS_DIR, extra), args.model))
        return
    results = run_all("bench", BENCHES, RESULTS_DIR, args.model, MODEL_BENCHES, args.reuse)
    (BENCH_DIR / "RESULTS.md").write_text(render(results, args.model))
    print(f"Wrote {BENCH_DIR / 'RESULTS.md'}")


SECTIONS = {  # benchmarks whose section can be refreshed on its own
    "fresh_build": fresh_build_section,
    "inference": inference_section,
    "scoring": scoring_section,
    "load_space": load_section,
    "soak": soak_section,
}


def replace_section(section: str) -> None:
    """Swap the section with the same `## ` heading in RESULTS.md for `section` (a new one goes in before the
    training benchmarks)."""
    path = BENCH_DIR / "RESULTS.md"
    text = path.read_text()
    heading = section.splitlines()[0]
    if heading + "\n" not in text:  # a new section: before the training benchmarks
        text = text.replace("\n## Fine-tune throughput", f"\n{heading}\n\n## Fine-tune throughput", 1)
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    path.write_text(text[:start] + section + ("\n" + text[end:] if end != -1 else "\n"))
    print(f"Replaced '{heading}' in {path}")


if __name__ == "__main__":
    main()
