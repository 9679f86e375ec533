"""The lung block of docs/lungs.md, rendered from docs/lungs.json (`make lungs-report`).

bench/lungs.py measures the segmenter over every image of a collection and writes that JSON and the montage
docs/lungs.png; this only renders.
"""

from __future__ import annotations

import argparse
import json

from covid_cxr.cards.markdown import markdown_rows
from pages.blocks import DOCS, Artefact, Block, fill

LISTED = 10  # failing images named on the page; the rest are counted


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
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    BLOCK.write(json.loads(BLOCK.source.read_text()))
    print(f"The lung block of {BLOCK.page.name} rendered from {BLOCK.source.name}")


if __name__ == "__main__":
    main()
