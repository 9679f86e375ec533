"""Does `--lung_focus` help? The default recipe trained with and without it, over several seeds, on the same
splits; each run scored on the test split's mixed-label sources (ROC AUC with a patient-bootstrap 95% CI) and on
where its attention lies (share of the Grad-CAM heat inside the lungs, from the run's own metrics).

Each run is `train/finetune.py` in its own process; a finished run
(`all_results.json` present) is reused, so an interrupted study picks up where it stopped. Delete
--output_root to start afresh.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np

from bench.common import machine, report
from covid_cxr.evaluation.bootstrap import roc_auc, roc_auc_ci
from covid_cxr.evaluation.keys import ALL, MIXED, TEST, metric_key
from covid_cxr.modeling.inference import CovidClassifier, run_model, softmax
from covid_cxr.training.report import mixed_sources_of

REPO_ROOT = Path(__file__).resolve().parents[1]
ARMS = {"default": [], "lung focus": ["--lung_focus"]}
KEPT = tuple(
    metric_key(TEST, subset, metric)
    for subset, metric in (  # in the order of study/RESULTS.md's columns
        (MIXED, "sensitivity"),
        (MIXED, "specificity"),
        (ALL, "roc_auc"),
        (ALL, "lung_attention_mean"),
        (MIXED, "lung_attention_mean"),
        (ALL, "lung_attention_below_half"),
    )
)


def train(output_dir: Path, seed: int, extra: list[str], args: argparse.Namespace) -> None:
    """Train one run unless it has finished before."""
    if (output_dir / "all_results.json").is_file():
        return
    command = [sys.executable, "train/finetune.py", "--dataset", args.dataset, "--output_dir", str(output_dir)]
    command += ["--model_name_or_path", args.backbone, "--lung_segmenter", args.lungs, "--seed", str(seed)]
    command += ["--linear_probe", "false", *extra]
    subprocess.run(command, check=True, cwd=REPO_ROOT)


def mixed_auc(model_dir: Path, test: datasets.Dataset, mixed_sources: list[str]) -> dict[str, object]:
    """ROC AUC on the mixed-label test images with its patient-bootstrap interval."""
    classifier = CovidClassifier.from_pretrained(model_dir)
    scores = softmax(run_model(classifier.model, classifier.processor, test["image"], desc=model_dir.name).logits)
    mixed = np.isin(test["source"], mixed_sources)
    labels, covid = np.asarray(test["label"])[mixed], scores[mixed, classifier.positive]
    patients = np.asarray(test["patient_id"])[mixed]
    return {
        "n_mixed": int(mixed.sum()),
        "mixed_roc_auc": roc_auc(labels, covid),
        "mixed_ci95": roc_auc_ci(labels, covid, patients),
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--backbone", default="build/backbones/dinov2-small-imgfocus")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter folder (`make lungs`).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output_root", default="build/study/lung_focus")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    splits = datasets.load_from_disk(args.dataset)
    mixed_sources = mixed_sources_of(splits)
    rows = []
    for seed in args.seeds:
        for arm, extra in ARMS.items():
            output_dir = Path(args.output_root) / f"{arm.replace(' ', '_')}-seed{seed}"
            train(output_dir, seed, extra, args)
            results = json.loads((output_dir / "all_results.json").read_text())
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    **mixed_auc(output_dir, splits["test"], mixed_sources),
                    **{key: results.get(key) for key in KEPT},
                    "trainer_minutes": results["train_runtime"] / 60,
                }
            )
    result = {**machine(), "mixed_sources": mixed_sources, "seeds": args.seeds, "rows": rows}
    return report(result, args.output)


if __name__ == "__main__":
    main()
