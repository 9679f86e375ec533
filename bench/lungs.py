"""The lung segmenter measured over a whole collection: its cross-validated Dice and IoU (from the segmenter
folder's cv_results.json) and a sanity pass over every image (lung share, connected components, images where no
plausible lung fields are found, per source and label). `make lungs-report` (pages/lungs.py) publishes it.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from bench.common import machine
from covid_cxr.data.imaging import load_image
from covid_cxr.lungs.measures import components, implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import SEGMENTER_CV

Samples = dict[tuple[str, str], list[tuple[Image.Image, np.ndarray]]]


def sanity_pass(segmenter: LungSegmenter, root: Path) -> tuple[list[dict], Samples]:
    """Every image's lung share, components and refusal reason; a few masks per source x label for the montage."""
    with (root / "metadata.csv").open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    records, samples = [], defaultdict(list)
    for row in tqdm(rows, desc="Lung masks", unit="img"):
        image = load_image(root / row["file_name"]).image
        (probability,) = segmenter.probabilities([image])
        mask = probability >= segmenter.config.threshold
        records.append(
            {
                "file_name": row["file_name"],
                "source": row["source"],
                "label": row["label"],
                "lung_share": round(float(mask.mean()), 4),
                "components": components(mask),
                "implausible": implausible_lungs(probability, segmenter.config.threshold),
            }
        )
        if len(samples[row["source"], row["label"]]) < 2:
            samples[row["source"], row["label"]].append((image, mask))
    return records, samples


def summarise(records: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for record in records:
        groups[record["source"], record["label"]].append(record)
    return [
        {
            "source": source,
            "label": label,
            "images": len(members),
            "median_lung_share": float(np.median([m["lung_share"] for m in members])),
            "two_components": float(np.mean([m["components"] == 2 for m in members])),
            "implausible": sum(m["implausible"] is not None for m in members),
        }
        for (source, label), members in sorted(groups.items())
    ]


def measure(model: Path, images: Path) -> tuple[dict, Samples]:
    """The segmenter's report over the collection at `images`, and the sample masks a montage shows."""
    segmenter = LungSegmenter.from_pretrained(model)
    records, samples = sanity_pass(segmenter, images)
    cv = json.loads((model / SEGMENTER_CV).read_text())
    report = {
        **machine(),
        "cross_validation": {k: v for k, v in cv.items() if k != "per_image_dice"},
        "images": len(records),
        "by_source": summarise(records),
        "implausible": [r["file_name"] for r in records if r["implausible"]],
    }
    return report, samples
