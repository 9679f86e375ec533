"""Train the lung-field segmenter (`make lungs`): a small head on frozen DINOv2 patch tokens, fitted on the
lung masks of ../shared/cxr-lung-masks, measured by patient-grouped cross-validation, saved as safetensors.

    python train/train_lungs.py --masks ../shared/cxr-lung-masks --images ../shared/cxr --output_dir build/lungs

Writes lung_segmenter.safetensors + lung_segmenter.json (the model) and cv_results.json (Dice and IoU per fold,
with patient-bootstrap 95% intervals) into --output_dir.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

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
    masks: str = field(
        default="../shared/cxr-lung-masks", metadata={"help": "Lung-mask folder (metadata.csv, masks/)."}
    )
    images: str = field(default="../shared/cxr", metadata={"help": "Curated image folder the masks belong to."})
    backbone: str = field(default="dinov2-small-imgfocus", metadata={"help": "Offline backbone name or DINOv2 folder."})
    output_dir: str = field(default="build/lungs", metadata={"help": "Where to save the segmenter."})
    image_size: int = field(default=224, metadata={"help": "Square input side (a multiple of 14)."})
    folds: int = field(default=5, metadata={"help": "Patient-grouped cross-validation folds (0: skip)."})


def main() -> None:
    (args,) = HfArgumentParser(LungArguments).parse_args_into_dataclasses()
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
