"""docs/results.json and the results block of docs/results.md from a trained model's artefacts (`make results`).

The figures are copied from <model>/all_results.json, config.json and run_config.json into docs/results.json
(committed), and the block is rendered from that file, so the page quotes the run and never a hand-typed figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import datasets

from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.evaluation.keys import (
    ALL,
    GUARD_FALSE_REJECTS,
    MIXED,
    PROBE,
    PROBE_TEST,
    TEMPERATURE,
    TEST,
    TRAIN_RUNTIME,
    metric_key,
)
from covid_cxr.model_folder import read_config, read_results, read_run_config
from covid_cxr.modeling.lungs_first import MODEL_TYPE as LUNGS_FIRST_MODEL
from covid_cxr.training.report import mixed_sources_of
from pages.blocks import DOCS, Artefact, Block, fill, number

CONFIG_KEYS = ("decision_threshold", "threshold_target_sensitivity", "threshold_validation_sensitivity",
               "threshold_validation_specificity", "backbone_description")  # fmt: skip
ROWS = (  # (name, prefix of the figures, subset); the probe rows exist when the probes ran (images: the test's)
    ("**mixed-label sources ({mixed})**", TEST, MIXED),
    ("all sources", TEST, ALL),
    ("linear probe on frozen features, mixed-label sources", PROBE_TEST, MIXED),
    ("linear probe on frozen features, all sources", PROBE_TEST, ALL),
)


def collect(model_dir: Path) -> Artefact:
    """What the page shows, from the model folder's own files."""
    config, run = read_config(model_dir), read_run_config(model_dir)
    splits = datasets.load_from_disk(run["data"]["dataset"])  # the data the model was trained and tested on
    return {
        "mixed_sources": mixed_sources_of(splits),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "metrics": read_results(model_dir),
        "config": {key: config.get(key) for key in CONFIG_KEYS},
        "recipe": {
            "image_size": run["model"]["image_size"],
            "trainable_blocks": run["model"]["trainable_blocks"],
            "epochs": run["training"]["num_train_epochs"],
            "batch": run["training"]["per_device_train_batch_size"],
            "seed": run["training"]["seed"],
            "lungs_first": config.get("model_type") == LUNGS_FIRST_MODEL,
        },
    }


def split_table(metrics: dict[str, float], mixed: list[str]) -> str:
    rows = [
        [name.format(mixed=" + ".join(mixed)), metrics[metric_key(TEST, subset, "n")]]
        + [number(metrics[metric_key(prefix, subset, key)]) for key in ("roc_auc", "sensitivity", "specificity")]
        for name, prefix, subset in ROWS
        if metric_key(prefix, subset, "roc_auc") in metrics
    ]
    return markdown_rows(["test subset", "n", "ROC AUC", "sensitivity", "specificity"], rows)


def shortcut(metrics: dict[str, float]) -> str:
    """The source-probe sentence, when the probes ran."""
    accuracy = metric_key(PROBE, ALL, "source_accuracy")
    if accuracy not in metrics:
        return ""
    return " " + fill(
        "shortcut.md",
        {
            "sources": metrics[metric_key(PROBE, ALL, "n_sources")],
            "accuracy": number(metrics[accuracy], "{:.0%}"),
            "baseline": number(metrics[metric_key(PROBE, ALL, "source_majority_baseline")], "{:.0%}"),
        },
    )


def versus_probe(metrics: dict[str, float]) -> str:
    """The fine-tune beside the linear probe on the mixed-label sources of this split, when the probes ran: two
    figures of one small split with no paired interval, so neither is said to beat the other."""
    fine_tune, probe = metric_key(TEST, MIXED, "roc_auc"), metric_key(PROBE_TEST, MIXED, "roc_auc")
    if probe not in metrics:
        return ""
    figures = {"fine_tune": number(metrics[fine_tune]), "probe": number(metrics[probe])}
    return fill("versus_probe.md", figures | {"n": int(metrics[metric_key(TEST, MIXED, "n")])})


def focus(recipe: dict[str, object]) -> str:
    """What the model saw of each film."""
    if not recipe.get("lungs_first"):
        return "the whole film, no lung focus"
    return "lungs first: the one model blurs every film outside the dilated lung fields it finds, inside its forward"


def body(results: Artefact) -> str:
    metrics, config, recipe = results["metrics"], results["config"], results["recipe"]
    blocks = recipe["trainable_blocks"]
    return fill(
        "results.md",
        {
            "date": results["date"],
            "machine": results["machine"],
            "backbone": config["backbone_description"],
            "image_size": recipe["image_size"],
            "blocks": "all" if blocks < 0 else f"the last {blocks}",
            "epochs": number(recipe["epochs"], "{:g}"),
            "batch": recipe["batch"],
            "seed": recipe["seed"],
            "focus": focus(recipe),
            "test_n": metrics[metric_key(TEST, ALL, "n")],
            "threshold": number(config["decision_threshold"]),
            "target": number(config["threshold_target_sensitivity"], "{:.0%}"),
            "validation_sensitivity": number(config["threshold_validation_sensitivity"]),
            "validation_specificity": number(config["threshold_validation_specificity"]),
            "table": split_table(metrics, results["mixed_sources"]),
            "ece": number(metrics[metric_key(TEST, ALL, "ece")]),
            "temperature": number(metrics[TEMPERATURE], "{:.2f}"),
            "refused": number(metrics[GUARD_FALSE_REJECTS], "{:.1%}"),
            "shortcut": shortcut(metrics),
            "versus_probe": versus_probe(metrics),
            "minutes": number(metrics[TRAIN_RUNTIME] / 60, "{:.1f}"),
        },
    )


BLOCK = Block("results", DOCS / "results.md", DOCS / "results.json", "make results", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/model", help="Trained model folder (make train).")
    args = parser.parse_args()
    results = collect(Path(args.model))
    BLOCK.source.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    BLOCK.write(results)
    print(f"{BLOCK.source.name} and the results block of {BLOCK.page.name} written from {args.model}")


if __name__ == "__main__":
    main()
