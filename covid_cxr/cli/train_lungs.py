"""Train the lung-field segmenter: a small head on frozen DINOv2 patch tokens, fitted on lung masks (a folder
with metadata.csv and masks/, such as the project's 298 CC BY masks), measured by patient-grouped
cross-validation, saved as safetensors.

    covid-cxr train-lungs --masks cxr-lung-masks/ --images cxr/ --output_dir lungs/

Writes lung_segmenter.safetensors + lung_segmenter.json (the model) and cv_results.json (Dice and IoU per fold,
with patient-bootstrap 95% intervals) into --output_dir.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.lungs.fitting import (
    TARGET_SCALE,
    cross_validate,
    fit_head,
    mask_targets,
    read_mask,
    read_pairs,
    token_features,
)
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.backbones import resolve_backbone
from covid_cxr.outputs import OutputFolderError, check_output_dir

CV_RESULTS = "cv_results.json"


@dataclass
class LungArguments:
    """The masks, the images they belong to, and the segmenter's input."""

    masks: str = field(metadata={"help": "Lung-mask folder (metadata.csv, masks/)."})
    images: str = field(metadata={"help": "Curated image folder (metadata.csv + images/) the masks belong to."})
    output_dir: str = field(metadata={"help": "Where to save the segmenter (may not lie inside the inputs)."})
    backbone: str = field(
        default="dinov2-small-imgfocus", metadata={"help": "Offline backbone name, or a DINOv2 model folder."}
    )
    image_size: int = field(default=224, metadata={"help": "Square input side (a multiple of 14)."})
    folds: int = field(default=5, metadata={"help": "Patient-grouped cross-validation folds (0: skip)."})


def main(
    argv: Sequence[str] | None = None, prog: str = "covid-cxr train-lungs", defaults: Mapping[str, Any] | None = None
) -> None:
    (args,) = parse_arguments((LungArguments,), argv, prog=prog, description=__doc__, defaults=defaults)
    try:
        check_output_dir(args.output_dir, {"--masks": args.masks, "--images": args.images})
    except OutputFolderError as err:
        raise SystemExit(f"error: {err}") from None
    start = time.perf_counter()
    pairs = read_pairs(Path(args.masks), Path(args.images))
    if not pairs:
        raise SystemExit(f"no mask in {args.masks} belongs to an image of {args.images}")
    segmenter = LungSegmenter.from_backbone(resolve_backbone(args.backbone), image_size=args.image_size)
    features = token_features(segmenter, [p.image for p in pairs])
    masks = [read_mask(p.mask) for p in pairs]
    patients = [p.patient_id for p in pairs]
    results = cross_validate(segmenter, features, masks, patients, args.folds) if args.folds > 1 else {}
    fit_head(segmenter, features, mask_targets(masks, features.shape[-1] * TARGET_SCALE))
    trained_on = {"masks": args.masks, "images": len(pairs), "patients": len(set(patients)), "backbone": args.backbone}
    segmenter.config.trained_on.update(trained_on)
    segmenter.save_pretrained(args.output_dir)
    results |= {"seconds": round(time.perf_counter() - start, 1), **trained_on}
    (Path(args.output_dir) / CV_RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    if "dice_mean" in results:
        (low, high), iou = results["dice_ci95"], results["iou_mean"]
        print(f"Cross-validated Dice {results['dice_mean']:.3f} (95% CI {low:.3f}-{high:.3f}), IoU {iou:.3f}")
    print(f"Lung segmenter saved to {args.output_dir}/ in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
