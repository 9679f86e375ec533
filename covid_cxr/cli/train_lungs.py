"""Train the lung-field segmenter: a small head on frozen DINOv2 patch tokens, fitted on lung masks (a folder
with metadata.csv and masks/, such as the project's 298 CC BY masks), measured by patient-grouped
cross-validation, saved as safetensors.

    covid-cxr train-lungs --masks cxr-lung-masks/ --images cxr/ --output_dir lungs/
    covid-cxr train-lungs --masks cxr-lung-masks/ --images cxr/ --output_dir lungs/ --hub_repo_id my-org/cxr-lungs

Writes lung_segmenter.safetensors + lung_segmenter.json (the model), pipeline/ (the same segmenter as a standard
transformers UperNet that `pipeline("image-segmentation", model=".../pipeline")` loads with no remote code, with
its card and terms), and cv_results.json (Dice and IoU of both, with patient-bootstrap 95% intervals) into
--output_dir. --hub_repo_id pushes pipeline/ to the Hub in one commit (checked before any fitting starts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_cxr.cards.segmenter import render_segmenter_card, segmenter_terms
from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.data.processor_size import InputSizeError, check_input_side
from covid_cxr.hub import HUB_ID_FILE, HubArguments, HubPreflightError
from covid_cxr.lungs.fitting import (
    TARGET_SCALE,
    cross_validate,
    fit_head,
    mask_targets,
    read_mask,
    read_pairs,
    token_features,
    train_head,
)
from covid_cxr.lungs.segmenter import LungSegmenter, SegmenterConfig
from covid_cxr.lungs.standard import (
    lung_logits,
    lung_probability,
    save_standard,
    stage_features,
    standard_model,
)
from covid_cxr.model_folder import CARD, LICENSE, PIPELINE_FOLDER, SEGMENTER_CV
from covid_cxr.modeling.backbones import provenance, resolve_backbone
from covid_cxr.outputs import OutputFolderError, check_output_dir, share_weights


@dataclass
class LungArguments:
    """The masks, the images they belong to, and the segmenter's input."""

    masks: str = field(metadata={"help": "Lung-mask folder (metadata.csv, masks/)."})
    images: str = field(metadata={"help": "Curated image folder (metadata.csv + images/) the masks belong to."})
    output_dir: str = field(metadata={"help": "Where to save the segmenter (may not lie inside the inputs)."})
    backbone: str = field(
        default="dinov2-small-imgfocus", metadata={"help": "Offline backbone name, or a DINOv2 model folder."}
    )
    image_size: int = field(
        default=SegmenterConfig.image_size, metadata={"help": "Square input side (a multiple of 14)."}
    )
    folds: int = field(default=5, metadata={"help": "Patient-grouped cross-validation folds (0: skip)."})
    masks_license: str | None = field(
        default=None, metadata={"help": "The masks' licence, as the card and LICENSE.md should state it."}
    )


def main(
    argv: Sequence[str] | None = None, prog: str = "covid-cxr train-lungs", defaults: Mapping[str, Any] | None = None
) -> None:
    args, hub = parse_arguments((LungArguments, HubArguments), argv, prog=prog, description=__doc__, defaults=defaults)
    inputs = {"--masks": args.masks, "--images": args.images}
    try:
        check_output_dir(args.output_dir, inputs)
        if hub.dry_run:
            check_output_dir(hub.dry_run, inputs | {"--output_dir": args.output_dir}, flag="--dry_run")
        hub.check_push()  # before the fitting: a push that cannot happen stops here
    except (OutputFolderError, HubPreflightError) as err:
        raise SystemExit(f"error: {err}") from None
    start = time.perf_counter()
    pairs = read_pairs(Path(args.masks), Path(args.images))
    if not pairs:
        raise SystemExit(f"no mask in {args.masks} belongs to an image of {args.images}")
    try:
        segmenter = LungSegmenter.from_backbone(resolve_backbone(args.backbone), image_size=args.image_size)
    except ValueError as err:
        raise SystemExit(f"error: --backbone {args.backbone}: {err}") from None
    try:
        check_input_side(args.image_size, segmenter.config.backbone.get("patch_size"))
    except InputSizeError as err:
        raise SystemExit(f"error: {err}") from None
    features = token_features(segmenter, [p.image for p in pairs])
    masks = [read_mask(p.mask) for p in pairs]
    patients = [p.patient_id for p in pairs]
    targets = mask_targets(masks, features.shape[-1] * TARGET_SCALE)

    def fit_project(x, y, seed: int) -> None:
        fit_head(segmenter, x, y, seed=seed)

    standard, stages = standard_model(segmenter), stage_features(segmenter, features)

    def fit_standard(x, y, seed: int) -> None:
        train_head(standard.decode_head, lambda batch: lung_logits(standard, batch), x, y, seed=seed)

    def decode_standard(x, size: tuple[int, int]):
        return lung_probability(standard, x, size)

    results = {}
    if args.folds > 1:
        threshold = segmenter.config.threshold
        results = cross_validate(
            fit_project, segmenter.decode, features, masks, patients, args.folds, threshold, "Cross-validating the head"
        )
        standard_cv = cross_validate(
            fit_standard, decode_standard, stages, masks, patients, args.folds, desc="Cross-validating the UperNet"
        )
        results["pipeline"] = {k: v for k, v in standard_cv.items() if k != "per_image_dice"}
    fit_project(features, targets, 0)
    fit_standard(stages, targets, 0)
    trained_on = {"masks": args.masks, "images": len(pairs), "patients": len(set(patients)), "backbone": args.backbone}
    segmenter.config.trained_on.update(trained_on)
    segmenter.save_pretrained(args.output_dir)
    folder = Path(args.output_dir) / PIPELINE_FOLDER
    save_standard(standard, segmenter, folder)
    share_weights(args.output_dir)
    card = render_segmenter_card(
        pairs,
        results.get("pipeline"),
        provenance(str(segmenter.config.trained_on["backbone"])),
        segmenter.config.image_size,
        hub.hub_repo_id or str(folder),
        args.masks_license,
    )
    card.save(folder / CARD)
    (folder / LICENSE).write_text(segmenter_terms(pairs, args.masks_license), encoding="utf-8")
    results |= {"seconds": round(time.perf_counter() - start, 1), **trained_on}
    (Path(args.output_dir) / SEGMENTER_CV).write_text(json.dumps(results, indent=2) + "\n")
    if "dice_mean" in results:
        (low, high), iou = results["dice_ci95"], results["iou_mean"]
        print(f"Cross-validated Dice {results['dice_mean']:.3f} (95% CI {low:.3f}-{high:.3f}), IoU {iou:.3f}")
        standard_cv = results["pipeline"]
        (low, high), iou = standard_cv["dice_ci95"], standard_cv["iou_mean"]
        print(
            f"The standard pipeline model ({PIPELINE_FOLDER}/): Dice {standard_cv['dice_mean']:.3f} "
            f"(95% CI {low:.3f}-{high:.3f}), IoU {iou:.3f}"
        )
    print(f"Lung segmenter saved to {args.output_dir}/ in {results['seconds']:.0f} s")
    if hub.hub_repo_id:
        print(hub.publish(folder))
        if not hub.dry_run:  # a lungs-first fine-tune names its standard segmenter by it
            (folder.parent / HUB_ID_FILE).write_text(hub.hub_repo_id + "\n")


if __name__ == "__main__":
    main()
