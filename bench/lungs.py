"""The lung segmenter measured over a whole collection: its cross-validated Dice and IoU (from the segmenter
folder's cv_results.json) and a sanity pass over every image (lung share, connected components, images where no
plausible lung fields are found, per source and label), written as JSON beside a montage of predicted outlines on
images of every source and both labels; `make lungs-report` writes docs/lungs.json and docs/lungs.png with it, and
pages/lungs.py renders the page's block from the JSON.

    python -m bench.lungs --model build/lungs --images ../shared/cxr --output docs/lungs.json --montage docs/lungs.png
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from covid_cxr.data.imaging import load_image
from covid_cxr.lungs.measures import components, implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import SEGMENTER_CV
from covid_cxr.modeling.heatmap import outline
from devtools.measuring import machine, report

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


def montage(samples: Samples, path: Path, tile: int = 192) -> None:
    """One row per source x label, predicted outlines in green."""
    keys = sorted(samples)
    sheet = Image.new("RGB", (tile * 2 + 220, tile * len(keys)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, key in enumerate(keys):
        draw.text((8, row * tile + tile // 2 - 10), f"{key[0]}\n{key[1]}", fill="black")
        for column, (image, mask) in enumerate(samples[key]):
            shown = outline(image.convert("RGB"), mask).resize((tile, tile))
            sheet.paste(shown, (220 + column * tile, row * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/lungs", help="Segmenter folder (make lungs).")
    parser.add_argument("--images", default="../shared/cxr", help="Curated collection to run the sanity pass on.")
    parser.add_argument("--output", default=None, help="Where to write the JSON (default: print only).")
    parser.add_argument("--montage", default=None, help="Where to write the montage PNG (default: none).")
    args = parser.parse_args()
    results, samples = measure(Path(args.model), Path(args.images))
    if args.montage:
        montage(samples, Path(args.montage))
    report(results, args.output)


if __name__ == "__main__":
    main()
