"""The Space's predictor: one chest X-ray file in; calibrated probabilities, the decision at the stored threshold,
the scope check and the Grad-CAM overlay out.

The scope check has three layers: the pixels (colour, blank, aspect ratio), the model's features (unlike the
validation X-rays), and, with a lung segmenter, the lung fields (none plausible on the image the model saw).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covid_cxr.data.imaging import load_image
from covid_cxr.evaluation.keys import ALL, CV, MIXED, TEST, metric_key
from covid_cxr.lungs.attention import lung_share
from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.heatmap import grad_cam, outline, overlay
from covid_cxr.modeling.inference import CovidClassifier, load_folder, seen_images, softmax
from covid_cxr.modeling.scope_guard import ScopeGuard, pixel_reason, scope_features

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class OutOfScope(ValueError):
    """The image is readable but is not a frontal chest radiograph; the message says why."""


@dataclass
class Prediction:
    probabilities: dict[str, float]
    covid_probability: float
    covid_detected: bool
    seen: Image.Image  # the image as the model saw it (resized and cropped), lung fields outlined when known
    heatmap: Image.Image | None
    lung_attention: float | None = None  # share of the Grad-CAM heat inside the lung fields


def headline_figures(results: dict[str, float]) -> dict[str, float | None]:
    """The figures the Space quotes, read from all_results.json by the keys its writers use; None when absent."""
    keys = {
        "test_roc_auc": metric_key(TEST, ALL, "roc_auc"),
        "test_mixed_roc_auc": metric_key(TEST, MIXED, "roc_auc"),
        "cv_mixed_roc_auc": metric_key(CV, MIXED, "roc_auc"),
        "cv_mixed_roc_auc_low": metric_key(CV, MIXED, "roc_auc_low"),
        "cv_mixed_roc_auc_high": metric_key(CV, MIXED, "roc_auc_high"),
        "cv_folds": metric_key(CV, ALL, "folds"),
    }
    return {fact: results.get(key) for fact, key in keys.items()}


class Predictor(CovidClassifier):
    """A trained model folder ready to serve: the classifier plus its scope guard and card facts."""

    def __init__(self, folder: str | Path, segmenter: LungSegmenter | None = None) -> None:
        self.folder = Path(folder)
        self.segmenter = segmenter
        super().__init__(*load_folder(self.folder))
        self.guard = ScopeGuard.load(self.folder)
        results_file = self.folder / "all_results.json"
        self.results = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def facts(self) -> dict[str, object]:
        config = self.model.config
        return {
            "backbone": getattr(config, "backbone_description", config.model_type),
            "dataset": getattr(config, "training_dataset", "unknown"),
            "threshold": self.threshold,
            "validation_sensitivity": getattr(config, "threshold_validation_sensitivity", None),
            "validation_specificity": getattr(config, "threshold_validation_specificity", None),
        } | headline_figures(self.results)

    def analyse(self, source: str | Path | bytes, heatmap: bool = True) -> Prediction:
        """Raise ImageError (unreadable file) or OutOfScope (not a frontal CXR); else return the analysis."""
        image = load_image(source, max_bytes=MAX_UPLOAD_BYTES).image
        if reason := pixel_reason(image):
            raise OutOfScope(reason)
        pixels = self.processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
        (seen,) = seen_images(pixels, self.processor)
        logits, features, cams = self._forward(pixels, heatmap)
        if self.guard is not None and (reason := self.guard.reason(features[0])):
            raise OutOfScope(reason)
        lung_mask = None
        if self.segmenter is not None:
            (probability,) = self.segmenter.probabilities([seen])
            if reason := implausible_lungs(probability, self.segmenter.config.threshold):
                raise OutOfScope(reason)
            lung_mask = probability >= self.segmenter.config.threshold
        row = softmax(logits)[0]
        probabilities = {self.model.config.id2label[i]: float(p) for i, p in enumerate(row)}
        covid = float(row[self.positive])
        return Prediction(
            probabilities,
            covid,
            covid >= self.threshold,
            seen if lung_mask is None else outline(seen, lung_mask),
            None if cams is None else overlay(seen, cams[0]),
            None if cams is None or lung_mask is None else lung_share(cams[0], lung_mask),
        )

    def _forward(self, pixels: torch.Tensor, heatmap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Logits, scope features and (with `heatmap`) the Grad-CAM maps of one forward pass."""
        if heatmap:
            return grad_cam(self.model, pixels, self.positive)
        with torch.no_grad():
            outputs = self.model(pixel_values=pixels, output_hidden_states=True)
        return outputs.logits.float().numpy(), scope_features(outputs.hidden_states), None
