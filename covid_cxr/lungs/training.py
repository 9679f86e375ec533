"""The lung segmenter's training, as `covid-cxr train-lungs` runs it: patch tokens of every masked image computed
once, the project's head and the standard UperNet each cross-validated by patient and then fitted on every mask,
and both saved with the standard model's card, the masks' terms and the cross-validation beside them.

    segmenter = LungSegmenter.from_backbone(backbone)
    segmenter.config.trained_on.update(masks=masks_folder, backbone=backbone)
    fitted = fit(pairs, segmenter, folds=5)
    save(fitted, pairs, output_dir, masks_license, hub_id)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import UperNetForSemanticSegmentation

from covid_cxr.cards.segmenter import render_segmenter_card, segmenter_terms
from covid_cxr.lungs.fitting import (
    TARGET_SCALE,
    MaskedImage,
    cross_validate,
    fit_head,
    mask_targets,
    read_mask,
    token_features,
    train_head,
)
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.lungs.standard import EPOCHS as STANDARD_EPOCHS
from covid_cxr.lungs.standard import lung_logits, lung_probability, save_standard, stage_features, standard_model
from covid_cxr.model_folder import CARD, LICENSE, PIPELINE_FOLDER, SEGMENTER_CV
from covid_cxr.modeling.backbones import provenance
from covid_cxr.outputs import share_weights


@dataclass
class Fitted:
    """The project's segmenter and the standard model over the same backbone, fitted on every mask, and their
    cross-validation (the standard model's under "pipeline"; empty when not cross-validated), and the seconds the
    fitting took."""

    segmenter: LungSegmenter
    standard: UperNetForSemanticSegmentation
    results: dict[str, object]
    seconds: float


def fit(pairs: list[MaskedImage], segmenter: LungSegmenter, folds: int) -> Fitted:
    """Both heads cross-validated over `folds` patient-grouped folds (none when `folds` < 2), then fitted on all;
    the images and patients they saw are added to the segmenter's `trained_on`."""
    start = time.perf_counter()
    segmenter.config.trained_on.update(images=len(pairs), patients=len({p.patient_id for p in pairs}))
    features = token_features(segmenter, [p.image for p in pairs])
    masks = [read_mask(p.mask) for p in pairs]
    standard, stages = standard_model(segmenter), stage_features(segmenter, features)

    def fit_project(x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        fit_head(segmenter, x, y, seed=seed)

    def fit_standard(x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        train_head(standard.decode_head, lambda batch: lung_logits(standard, batch), x, y, STANDARD_EPOCHS, seed)

    results: dict[str, object] = {}
    if folds > 1:
        patients = [p.patient_id for p in pairs]
        threshold = segmenter.config.threshold
        results = cross_validate(
            fit_project, segmenter.decode, features, masks, patients, folds, threshold, "Cross-validating the head"
        )
        standard_cv = cross_validate(
            fit_standard,
            lambda x, size: lung_probability(standard, x, size),
            stages,
            masks,
            patients,
            folds,
            desc="Cross-validating the UperNet",
        )
        results["pipeline"] = {k: v for k, v in standard_cv.items() if k != "per_image_dice"}
    targets = mask_targets(masks, features.shape[-1] * TARGET_SCALE)
    fit_project(features, targets, 0)
    fit_standard(stages, targets, 0)
    return Fitted(segmenter, standard, results, time.perf_counter() - start)


def save(
    fitted: Fitted, pairs: list[MaskedImage], output_dir: str | Path, masks_license: str | None, hub_id: str | None
) -> Path:
    """The segmenter into `output_dir` with its cross-validation (SEGMENTER_CV: what it was trained on and the
    seconds the fitting took beside the figures), and the standard model with its card and terms into its
    PIPELINE_FOLDER, which is returned (what a push sends; the card names `hub_id` when given, else the folder)."""
    segmenter = fitted.segmenter
    segmenter.save_pretrained(output_dir)
    folder = Path(output_dir) / PIPELINE_FOLDER
    save_standard(fitted.standard, segmenter, folder)
    share_weights(output_dir)
    card = render_segmenter_card(
        pairs,
        fitted.results.get("pipeline"),
        provenance(str(segmenter.config.trained_on["backbone"])),
        segmenter.config.image_size,
        hub_id or str(folder),
        masks_license,
    )
    card.save(folder / CARD)
    (folder / LICENSE).write_text(segmenter_terms(pairs, masks_license), encoding="utf-8")
    record = fitted.results | {"seconds": round(fitted.seconds, 1), **segmenter.config.trained_on}
    (Path(output_dir) / SEGMENTER_CV).write_text(json.dumps(record, indent=2) + "\n")
    return folder
