"""Which input size and which two layers the lung finder reads: patient-grouped cross-validated Dice on the lung
masks, beside the finder's own time per film.

The finder runs inside every lungs-first forward pass, in training and for every film the Space answers, so its
cost is paid as often as the classifier's. Its backbone is cut after the deepest layer its head reads, so reading
earlier layers at a smaller input is cheaper; this measures what that costs in Dice. Each row's head is fitted and
cross-validated exactly as `covid-cxr train-lungs` does (covid_cxr.lungs.fitting); the time is one film's finder
pass (its backbone and head) in PyTorch, median over repeats on this machine's threads. Writes
study/results/lung_finder.json and the table of docs/lungs.md (`python -m study.lung_finder`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.lungs.fitting import cross_validate, fit_head, read_mask, read_pairs, token_features
from covid_cxr.lungs.segmenter import LungSegmenter, SegmenterConfig
from devtools.measuring import machine, percentile, report, timed
from pages.blocks import DOCS, Block

RESULTS = Path(__file__).resolve().parent / "results" / "lung_finder.json"
SIZES = (112, 140, 168, 224)
LAYER_PAIRS = ((2, 4), (3, 6), (4, 8), (6, 12))


def finder_ms(segmenter: LungSegmenter, repeats: int = 20) -> float:
    """Median ms of one film's pass through the finder as a lungs-first model holds it (backbone cut, head)."""
    pixels = torch.randn(1, 3, segmenter.config.image_size, segmenter.config.image_size)

    def once() -> None:
        with torch.no_grad():
            segmenter.head(segmenter.tokens(pixels))

    return 1000 * percentile(timed(once, repeats), 50)


def size_rows(backbone: str, size: int, pairs: list, patients: list[str]) -> list[dict[str, object]]:
    """Every layer pair's row at one input size, from one pass of the backbone over the masked images."""
    every = sorted({layer for pair in LAYER_PAIRS for layer in pair})
    full = LungSegmenter.from_backbone(backbone, image_size=size, layers=tuple(every))
    features = token_features(full, [p.image for p in pairs]).unflatten(1, (len(every), -1))
    masks = [read_mask(p.mask) for p in pairs]
    rows = []
    for layers in LAYER_PAIRS:
        segmenter = LungSegmenter.from_backbone(backbone, image_size=size, layers=layers)
        chosen = features[:, [every.index(layer) for layer in layers]].flatten(1, 2)
        cv = cross_validate(
            lambda x, y, seed, fitted=segmenter: fit_head(fitted, x, y, seed=seed),
            segmenter.decode,
            chosen,
            masks,
            patients,
            threshold=segmenter.config.threshold,
            desc=f"{size} px, layers {layers}",
        )
        rows.append(
            {"image_size": size, "layers": list(layers), "ms": finder_ms(segmenter)}
            | {key: cv[key] for key in ("dice_mean", "dice_ci95", "dice_min", "folds", "images", "patients")}
        )
    return rows


def body(results: dict) -> str:
    default = (SegmenterConfig.image_size, list(SegmenterConfig.layers))
    header = ["input px", "layers read", "Dice (95% CI)", "worst image", "ms per film"]
    rows = [
        [
            f"**{row['image_size']}**" if (row["image_size"], row["layers"]) == default else row["image_size"],
            " and ".join(map(str, row["layers"])),
            f"{row['dice_mean']:.3f} ({row['dice_ci95'][0]:.3f}-{row['dice_ci95'][1]:.3f})",
            f"{row['dice_min']:.3f}",
            f"{row['ms']:.0f}",
        ]
        for row in results["rows"]
    ]
    first = results["rows"][0]
    return (
        f"Patient-grouped {first['folds']}-fold cross-validation on the {first['images']} masks "
        f"({first['patients']} patients), one head per row fitted as `covid-cxr train-lungs` fits it; the finder's "
        f"time for one film in PyTorch ({results['machine']}, {results['threads']} threads, {results['date']}). "
        f"The default is in bold.\n\n{markdown_rows(header, rows)}"
    )


BLOCK = Block("lung-finder", DOCS / "lungs.md", RESULTS, "python -m study.lung_finder", body)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", default="../shared/cxr-lung-masks", help="Lung-mask folder (default: %(default)s).")
    parser.add_argument("--images", default="../shared/cxr", help="Images the masks belong to (default: %(default)s).")
    parser.add_argument(
        "--backbone", default="build/backbones/dinov2-small-imgfocus", help="DINOv2 folder (default: %(default)s)."
    )
    args = parser.parse_args()
    pairs = read_pairs(Path(args.masks), Path(args.images))
    patients = [p.patient_id for p in pairs]
    rows = [row for size in SIZES for row in size_rows(args.backbone, size, pairs, patients)]
    result = report(machine() | {"threads": torch.get_num_threads(), "masks": args.masks, "rows": rows}, str(RESULTS))
    BLOCK.write(result)
    return result


if __name__ == "__main__":
    main()
