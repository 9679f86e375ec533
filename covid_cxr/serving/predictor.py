"""The Space's predictor: one chest X-ray file in; calibrated probabilities, the decision at the stored threshold,
the scope check and the Grad-CAM overlay out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covid_cxr.data.imaging import load_image
from covid_cxr.lungs.measures import attention_share
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.heatmap import grad_cam, outline, overlay, upsample
from covid_cxr.modeling.inference import CovidClassifier, load_folder, softmax
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


class Predictor(CovidClassifier):
    """A trained model folder ready to serve: the classifier plus its scope guard and card facts."""

    def __init__(self, folder: str | Path, lungs: LungSegmenter | None = None) -> None:
        self.folder = Path(folder)
        self.lungs = lungs
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
            "test_roc_auc": self.results.get("test_roc_auc"),
            "test_mixed_roc_auc": self.results.get("test_mixed_sources_roc_auc"),
        }

    def _seen(self, image: Image.Image) -> tuple[Image.Image, torch.Tensor]:
        pixels = self.processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
        mean = np.asarray(self.processor.image_mean)[:, None, None]
        std = np.asarray(self.processor.image_std)[:, None, None]
        seen = np.clip((pixels[0].numpy() * std + mean) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return Image.fromarray(seen), pixels

    def analyse(self, source: str | Path | bytes, heatmap: bool = True) -> Prediction:
        """Raise ImageError (unreadable file) or OutOfScope (not a frontal CXR); else return the analysis."""
        image = load_image(source, max_bytes=MAX_UPLOAD_BYTES).image
        reason = pixel_reason(image)
        if reason:
            raise OutOfScope(reason)
        seen, pixels = self._seen(image)
        if heatmap:
            logits, features, cams = grad_cam(self.model, pixels, self.positive)
        else:
            with torch.no_grad():
                outputs = self.model(pixel_values=pixels, output_hidden_states=True)
            logits, features, cams = outputs.logits.float().numpy(), scope_features(outputs.hidden_states), None
        if self.guard is not None and (reason := self.guard.reason(features[0])):
            raise OutOfScope(reason)
        row = softmax(logits)[0]
        probabilities = {self.model.config.id2label[i]: float(p) for i, p in enumerate(row)}
        covid = float(row[self.positive])
        if cams is None:
            return Prediction(probabilities, covid, covid >= self.threshold, seen, None)
        shown, share = seen, None
        if self.lungs is not None:  # the lung fields outlined on the image seen, and the heat's share inside them
            (lungs,) = self.lungs.masks([seen])
            shown, share = outline(seen, lungs), attention_share(upsample(cams[0], seen.size), lungs)
        return Prediction(probabilities, covid, covid >= self.threshold, shown, overlay(seen, cams[0]), share)
