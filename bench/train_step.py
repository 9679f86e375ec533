"""Measure one fine-tuning configuration: step time, images/s, loader wait, device busy share, peak memory, MFU.

bench.train_throughput and bench.train_scaling run this once per configuration, each in its own process so
that peak memory belongs to that configuration alone. Both recipes train the same model on the same data:

  pil-loader the transformers image-classification example's data path and precision: fp32, PIL decode +
             augmentation in dataloader workers (`set_transform`), plain AdamW, no compile; with this project's
             augmentation and loss (torchvision, which the example's transforms need, does not load on the CPU pin)
  ours       images pre-decoded once to uint8 tensors and augmented on the device (covid_cxr.data.predecode),
             bf16 autocast where the device computes bf16 natively (CUDA), fused AdamW, SDPA attention;
             --compile adds torch.compile

Model FLOPs per image are counted (torch.utils.flop_counter, forward + backward of exactly the trainable
configuration, eager attention so attention's matmuls are counted too) and MFU is measured images/s x FLOPs
per image over the matmul ceiling measured on the same device: bf16 on a GPU, fp32 on a CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import datasets
import numpy as np
import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoImageProcessor, TrainerCallback, TrainingArguments

from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.training.arguments import DataArguments
from covid_cxr.training.inputs import prepare_inputs
from covid_cxr.training.trainer import build_trainer, freeze_backbone, load_model
from devtools.measuring import machine, report

RECIPES = ("pil-loader", "ours")


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (begin -> end: compute) and between step ends (the whole period).

    Trainer fetches a step's batch before `on_step_begin`, so period - compute is time spent waiting for data.
    On CUDA both ends synchronise, so the times are the device's, not the launch queue's.
    """

    def __init__(self, warmup: int, profile: bool) -> None:
        self.warmup, self.profile = warmup, profile
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.profiler: torch.profiler.profile | None = None

    @staticmethod
    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.begins.append(self.now())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.ends.append(self.now())
        if self.profile and len(self.ends) == self.warmup:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.__enter__()
            self.profile_start = time.perf_counter()

    def stop_profiler(self) -> float | None:
        """Fraction of the timed steps' wall time during which at least one CUDA kernel ran."""
        if self.profiler is None:
            return None
        self.profiler.__exit__(None, None, None)
        wall_us = (self.ends[-1] - self.profile_start) * 1e6
        kernels = [
            (e.time_range.start, e.time_range.end)
            for e in self.profiler.events()
            if e.device_type == torch.autograd.DeviceType.CUDA
        ]
        return busy_time(kernels) / wall_us

    def summary(self, batch: int) -> dict[str, float]:
        periods = [self.ends[i] - self.ends[i - 1] for i in range(max(self.warmup, 1), len(self.ends))]
        computes = [self.ends[i] - self.begins[i] for i in range(max(self.warmup, 1), len(self.ends))]
        step = statistics.median(periods)
        return {
            "warmup_s": self.ends[self.warmup - 1] - self.begins[0] if self.warmup else 0.0,  # compile included
            "timed_steps": len(periods),
            "step_ms": 1000 * step,
            "images_per_s": batch / step,
            "loader_wait_ms": 1000 * max(0.0, step - statistics.median(computes)),
            "compute_share": sum(computes) / sum(periods),
        }


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals (overlapping kernels count once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Best measured FLOP/s of an n x n matmul: the device's practical ceiling for dense layers."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 2):
        start = StepTimer.now()
        a @ b
        best = min(best, StepTimer.now() - start)
    return 2 * n**3 / best


def flops_per_image(backbone: str, image_size: int, trainable_blocks: int) -> float:
    """Forward + backward FLOPs of one training image (eager attention: every matmul is seen)."""
    model = load_model(backbone, attn_implementation="eager")
    freeze_backbone(model, trainable_blocks)
    model.train()
    pixels = torch.randn(2, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=pixels).logits.sum().backward()
    return counter.get_total_flops() / 2


def training_args(recipe: str, args: argparse.Namespace, output_dir: str) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    common = dict(
        output_dir=output_dir,
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=5e-5,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=10_000,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=not cuda,
        seed=0,
    )
    if recipe == "pil-loader":
        return TrainingArguments(**common, dataloader_num_workers=args.workers)
    return TrainingArguments(
        **common,
        bf16=cuda,
        optim="adamw_torch_fused",
        torch_compile=args.compile,
        dataloader_num_workers=0,
    )


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=RECIPES, default="ours")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--backbone", default="build/backbones/dinov2-small-imgfocus")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--trainable_blocks", type=int, default=-1, help="-1: full fine-tune.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first (compile, allocator, workers).")
    parser.add_argument("--repeat", type=int, default=1, help="Train split repeated this many times (scaling).")
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="Loader workers of the pil-loader recipe.",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (ours).")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()

    datasets.disable_caching()  # measure decoding, not a cache hit
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits = datasets.load_from_disk(args.dataset)
    splits["train"] = datasets.concatenate_datasets([splits["train"]] * args.repeat)
    processor = AutoImageProcessor.from_pretrained(args.backbone)
    set_processor_size(processor, args.image_size)
    model = load_model(args.backbone)
    freeze_backbone(model, args.trainable_blocks)
    targs = training_args(args.recipe, args, output_dir=f"build/bench-train/{args.recipe}")
    data_args = DataArguments(dataset=args.dataset, predecode=args.recipe == "ours")

    train_labels = np.asarray(splits["train"]["label"])  # before set_transform hides it
    start = time.perf_counter()
    train_data, _, device_pixels = prepare_inputs(splits, processor, data_args, targs)
    prepare_s = time.perf_counter() - start
    timer = StepTimer(args.warmup, profile=device.type == "cuda")
    trainer = build_trainer(model, targs, train_data, train_labels, device_pixels=device_pixels, callbacks=[timer])
    trainer.train()
    busy = timer.stop_profiler()
    private_mb = psutil.Process().memory_full_info().uss / 2**20  # memory-mapped pixels are shared, not here

    flops = flops_per_image(args.backbone, args.image_size, args.trainable_blocks)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, peak_dtype, 8192 if device.type == "cuda" else 2048)
    result = machine() | vars(args) | timer.summary(args.batch)
    result |= {
        "train_images": len(train_data),
        "prepare_s": prepare_s,
        "device_busy_share": busy if busy is not None else result["compute_share"],
        "busy_measure": "CUDA kernel time / wall (profiler)" if busy is not None else "compute / step period",
        "gflops_per_image": flops / 1e9,
        "peak_tflops": peak / 1e12,
        "peak_dtype": str(peak_dtype).removeprefix("torch."),
        "mfu": result["images_per_s"] * flops / peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "private_mb": private_mb,
        "peak_device_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }
    return report(result, args.output)


if __name__ == "__main__":
    main()
