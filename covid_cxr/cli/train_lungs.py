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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.data.processor_size import InputSizeError, check_input_side
from covid_cxr.hub import HUB_ID_FILE, HubArguments, HubPreflightError
from covid_cxr.lungs.fitting import read_pairs
from covid_cxr.lungs.segmenter import LungSegmenter, SegmenterConfig
from covid_cxr.lungs.training import fit, save
from covid_cxr.model_folder import PIPELINE_FOLDER
from covid_cxr.modeling.backbones import resolve_backbone
from covid_cxr.outputs import OutputFolderError, check_output_dir


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
    pairs = read_pairs(Path(args.masks), Path(args.images))
    if not pairs:
        raise SystemExit(f"no mask in {args.masks} belongs to an image of {args.images}")
    segmenter = _segmenter(args)
    segmenter.config.trained_on.update(masks=args.masks, backbone=args.backbone)
    fitted = fit(pairs, segmenter, args.folds)
    folder = save(fitted, pairs, args.output_dir, args.masks_license, hub.hub_repo_id)
    _report(fitted.results)
    print(f"Lung segmenter saved to {args.output_dir}/ in {fitted.seconds:.0f} s")
    if hub.hub_repo_id:
        print(hub.publish(folder))
        if not hub.dry_run:  # a lungs-first fine-tune names its standard segmenter by it
            (folder.parent / HUB_ID_FILE).write_text(hub.hub_repo_id + "\n")


def _segmenter(args: LungArguments) -> LungSegmenter:
    """The segmenter, head untrained, over the backbone asked for; a readable refusal for a wrong one."""
    try:
        segmenter = LungSegmenter.from_backbone(resolve_backbone(args.backbone), image_size=args.image_size)
    except ValueError as err:
        raise SystemExit(f"error: --backbone {args.backbone}: {err}") from None
    try:
        check_input_side(args.image_size, segmenter.config.backbone.get("patch_size"))
    except InputSizeError as err:
        raise SystemExit(f"error: {err}") from None
    return segmenter


def _report(results: dict) -> None:
    """The cross-validated Dice of both models, when cross-validated."""
    if "dice_mean" not in results:
        return
    for name, figures in (
        ("Cross-validated", results),
        (f"The standard pipeline model ({PIPELINE_FOLDER}/):", results["pipeline"]),
    ):
        (low, high), iou = figures["dice_ci95"], figures["iou_mean"]
        print(f"{name} Dice {figures['dice_mean']:.3f} (95% CI {low:.3f}-{high:.3f}), IoU {iou:.3f}")


if __name__ == "__main__":
    main()
