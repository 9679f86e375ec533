"""docs/lungs.json, docs/lungs.png and the lung block of docs/lungs.md (`make lungs-report`).

bench/lungs.py measures the segmenter over every image of a collection; this writes what it measured, a montage
of predicted outlines on images of every source and both labels, and the page's block rendered from the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from bench.lungs import Samples, measure
from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.modeling.heatmap import outline
from pages.blocks import DOCS, Artefact, Block, fill

MONTAGE = DOCS / "lungs.png"
LISTED = 10  # failing images named on the page; the rest are counted


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


def source_table(groups: list[dict]) -> str:
    header = ["source", "label", "images", "median lung share", "two lung regions", "no plausible lungs"]
    rows = [
        [
            g["source"],
            g["label"],
            g["images"],
            f"{g['median_lung_share']:.2f}",
            f"{g['two_components']:.0%}",
            g["implausible"],
        ]
        for g in groups
    ]
    return markdown_rows(header, rows)


def listed(failures: list[str]) -> str:
    if not failures:
        return ""
    more = f" and {len(failures) - LISTED} more" if len(failures) > LISTED else ""
    return ": " + ", ".join(f"`{f}`" for f in failures[:LISTED]) + more


def body(results: Artefact) -> str:
    cv = results["cross_validation"]
    (dice_low, dice_high), (iou_low, iou_high) = cv["dice_ci95"], cv["iou_ci95"]
    standard = cv["pipeline"]
    return fill(
        "lungs.md",
        {
            "folds": cv["folds"],
            "masks": cv["images"],
            "patients": cv["patients"],
            "dice": f"{cv['dice_mean']:.3f}",
            "dice_low": f"{dice_low:.3f}",
            "dice_high": f"{dice_high:.3f}",
            "iou": f"{cv['iou_mean']:.3f}",
            "iou_low": f"{iou_low:.3f}",
            "iou_high": f"{iou_high:.3f}",
            "dice_min": f"{cv['dice_min']:.3f}",
            "mean_mask_dice": f"{cv['mean_mask_dice']:.3f}",
            "standard_dice": f"{standard['dice_mean']:.3f}",
            "standard_dice_low": f"{standard['dice_ci95'][0]:.3f}",
            "standard_dice_high": f"{standard['dice_ci95'][1]:.3f}",
            "seconds": f"{cv['seconds']:.0f}",
            "machine": results["machine"],
            "date": results["date"],
            "images": results["images"],
            "table": source_table(results["by_source"]),
            "failures": len(results["implausible"]),
            "listed": listed(results["implausible"]),
        },
    )


BLOCK = Block("lungs", DOCS / "lungs.md", DOCS / "lungs.json", "make lungs-report", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="build/lungs", help="Segmenter folder (make lungs).")
    parser.add_argument("--images", default="../shared/cxr", help="Curated collection to run the sanity pass on.")
    args = parser.parse_args()
    results, samples = measure(Path(args.model), Path(args.images))
    montage(samples, MONTAGE)
    BLOCK.source.write_text(json.dumps(results, indent=2) + "\n")
    BLOCK.write(results)
    print(f"{BLOCK.source.name}, {MONTAGE.name} and the lung block of {BLOCK.page.name} written")


if __name__ == "__main__":
    main()
