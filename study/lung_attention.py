"""Where the trained model looks, per source and label: the share of its COVID-19 Grad-CAM heat inside the lung
fields, that share over the lungs' share of the image (the ratio: 1 is an evenly spread map), and how often the
attention warning (ratio below covid_cxr.lungs.measures.RATIO_WARNING) fires, on every image of the test
split. Writes the table's figures (JSON) and a box plot of the ratio per source x label
(docs/lung_attention.png).

A hospital recogniser puts its heat on labels, borders and corners; a model reading the lungs keeps it inside.
The share is a coarse guide (Grad-CAM has one value per 14 px patch), not proof of what the model uses. A model
trained lungs first is measured on the films as it is given them: focused as in training.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from covid_cxr.lungs.attention import LungAttention, lung_attention
from covid_cxr.lungs.measures import RATIO_WARNING
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.inference import CovidClassifier
from covid_cxr.modeling.lungs_first import LungsFirstForImageClassification
from devtools.measuring import machine, report, test_split

PLOT = Path(__file__).resolve().parents[1] / "docs" / "lung_attention.png"  # images live in docs/


def spread(attention: LungAttention, chosen: np.ndarray) -> dict[str, float]:
    values, ratios = attention.share[chosen], attention.ratio[chosen]
    return {
        "images": len(values),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "q1": float(np.percentile(values, 25)),
        "q3": float(np.percentile(values, 75)),
        "below_half": float((values < 0.5).mean()),
        "ratio_median": float(np.nanmedian(ratios)),
        "warned": float(attention.warned[chosen].mean()),
    }


def summarise(attention: LungAttention, sources: list[str], labels: list[str]) -> list[dict[str, object]]:
    """One row per source x label, then one for the whole split."""
    keys = list(zip(sources, labels, strict=True))
    rows = [
        {"source": source, "label": label, **spread(attention, np.asarray([k == (source, label) for k in keys]))}
        for source, label in sorted(set(keys))
    ]
    return [*rows, {"source": "all", "label": "both", **spread(attention, np.ones(len(keys), bool))}]


def box_plot(ratios: np.ndarray, sources: list[str], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for ratio, source, label in zip(ratios, sources, labels, strict=True):
        groups[f"{source}\n{label}"].append(ratio)
    names = sorted(groups)
    figure, axis = plt.subplots(figsize=(1.3 * len(names) + 1, 3.6))
    axis.boxplot([groups[n] for n in names], tick_labels=names)
    axis.axhline(1.0, color="tab:grey", linestyle=":", linewidth=1, label="evenly spread (1)")
    axis.axhline(RATIO_WARNING, color="tab:red", linestyle="--", linewidth=1, label=f"warning below {RATIO_WARNING}")
    axis.set_ylabel("heat on the lungs / lungs' share of the image")
    axis.set_ylim(bottom=0)
    axis.set_title("Test split: where the model's attention lies")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter folder (`make lungs`).")
    parser.add_argument("--dataset", default="build/dataset")
    parser.add_argument("--output", default=None, help="Write the results as JSON here.")
    args = parser.parse_args()
    classifier = CovidClassifier.from_pretrained(args.model)
    segmenter = LungSegmenter.from_pretrained(args.lungs)
    test = test_split(args.dataset)
    focused = isinstance(classifier.model, LungsFirstForImageClassification)  # it focuses each film itself
    attention = lung_attention(classifier.model, classifier.processor, test["image"], segmenter, classifier.positive)
    names = test.features["label"].names
    sources, labels = list(test["source"]), [names[i] for i in test["label"]]
    box_plot(attention.ratio, sources, labels, PLOT)
    rows = summarise(attention, sources, labels)
    result = {**machine(), "model": args.model, "lungs": args.lungs, "lungs_first": focused}
    result |= {"warning_below": RATIO_WARNING, "rows": rows}
    return report(result, args.output)


if __name__ == "__main__":
    main()
