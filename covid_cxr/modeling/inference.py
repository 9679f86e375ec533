"""Batch inference helpers shared by training, evaluation, the Space and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, AutoModelForImageClassification, BaseImageProcessor, PreTrainedModel

from covid_cxr.modeling.calibration import classifier_head
from covid_cxr.modeling.scope_guard import scope_features


@dataclass
class Outputs:
    logits: np.ndarray  # (n, num_labels)
    features: np.ndarray  # (n, d): the input of the classifier's last linear layer
    scope: np.ndarray | None  # (n, d'): middle-layer features for the scope guard, when asked for


@torch.no_grad()
def run_model(
    model: PreTrainedModel,
    processor: BaseImageProcessor,
    images: Sequence[Image.Image],
    batch_size: int = 32,
    desc: str | None = None,
    scope: bool = False,
) -> Outputs:
    """Logits and penultimate features for PIL images (a list or a `datasets` image column), and with `scope`
    the middle-layer features the scope guard is fitted on (which keeps every layer's output per batch)."""
    captured: list[torch.Tensor] = []
    hook = classifier_head(model).register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
    model.eval()
    device = next(model.parameters()).device
    logits, middle = [], []
    try:
        for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=desc is None, unit="batch"):
            batch = [images[i].convert("RGB") for i in range(start, min(start + batch_size, len(images)))]
            pixels = processor(batch, return_tensors="pt")["pixel_values"].to(device, dtype=model.dtype)
            outputs = model(pixel_values=pixels, output_hidden_states=scope)
            logits.append(outputs.logits.float().cpu())
            if scope:
                middle.append(scope_features(outputs.hidden_states))
    finally:
        hook.remove()
    features = torch.cat(captured).float().cpu().numpy()
    return Outputs(torch.cat(logits).numpy(), features, np.concatenate(middle) if scope else None)


def seen_images(pixel_values: torch.Tensor, processor: BaseImageProcessor) -> list[Image.Image]:
    """The model's input (n, 3, h, w), un-normalised back to 8-bit RGB images: what the model saw."""
    mean = np.asarray(processor.image_mean)[:, None, None]
    std = np.asarray(processor.image_std)[:, None, None]
    pixels = np.clip((pixel_values.float().cpu().numpy() * std + mean) * 255, 0, 255).astype(np.uint8)
    return [Image.fromarray(image.transpose(1, 2, 0)) for image in pixels]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def load_folder(path: str | Path) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """A trained model folder's model (safetensors only) and image processor."""
    model = AutoModelForImageClassification.from_pretrained(str(path), use_safetensors=True)
    return model, AutoImageProcessor.from_pretrained(str(path))


class CovidClassifier:
    """A trained model folder: calibrated probabilities and the decision at its stored threshold."""

    def __init__(self, model: PreTrainedModel, processor: BaseImageProcessor) -> None:
        self.model = model.eval()
        self.processor = processor
        self.threshold = float(getattr(model.config, "decision_threshold", 0.5))
        self.positive = model.config.label2id.get("covid", 1)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CovidClassifier:
        return cls(*load_folder(path))

    def predict(self, images: Sequence[Image.Image]) -> list[dict[str, object]]:
        probabilities = softmax(run_model(self.model, self.processor, images).logits)
        results = []
        for row in probabilities:
            scores = {self.model.config.id2label[i]: float(p) for i, p in enumerate(row)}
            positive = float(row[self.positive]) >= self.threshold
            results.append({"probabilities": scores, "covid_detected": positive, "threshold": self.threshold})
        return results
