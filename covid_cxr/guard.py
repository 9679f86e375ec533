"""Out-of-scope guard: refuse images that do not look like frontal chest radiographs instead of scoring them.

Two layers. Pixel checks catch the obvious (colour photos, blank frames, extreme aspect ratios). A feature check
then compares the model's own penultimate features with those of the validation X-rays: the mean cosine
distance to the k nearest reference images must stay below the 99th percentile seen among the references
themselves (leave-one-out). The reference set is written beside the model at training time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

GUARD_FILE = "scope_guard.safetensors"
MAX_CHROMA = 0.08  # mean (max - min channel) / 255; real radiographs, even as RGB JPEGs, stay near 0
MIN_GREY_STD = 8.0  # grey levels; below this the frame is blank
MAX_ASPECT = 2.5


def pixel_reason(image: Image.Image) -> str | None:
    """Why the pixels alone rule the image out, or None."""
    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return f"its aspect ratio ({width}x{height}) is far from that of a chest film"
    if image.mode == "RGB":
        pixels = np.asarray(image, dtype=np.int16)
        chroma = float((pixels.max(axis=2) - pixels.min(axis=2)).mean()) / 255.0
        if chroma > MAX_CHROMA:
            return f"it is a colour image (mean chroma {chroma:.2f}); radiographs are grey-scale"
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    if grey.std() < MIN_GREY_STD:
        return f"it is blank or nearly uniform (grey-level spread {grey.std():.1f})"
    return None


def _normalise(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-8)


@dataclass
class ScopeGuard:
    reference: np.ndarray  # (n, d) unit-norm features of in-scope X-rays
    threshold: float
    k: int = 5

    @classmethod
    def fit(cls, features: np.ndarray, quantile: float = 0.99, k: int = 5) -> ScopeGuard:
        reference = _normalise(features.astype(np.float32))
        distances = 1.0 - reference @ reference.T
        np.fill_diagonal(distances, np.inf)  # leave one out
        scores = np.sort(distances, axis=1)[:, :k].mean(axis=1)
        return cls(reference, float(np.quantile(scores, quantile)), k)

    def scores(self, features: np.ndarray) -> np.ndarray:
        distances = 1.0 - _normalise(features.astype(np.float32)) @ self.reference.T
        return np.sort(distances, axis=1)[:, : self.k].mean(axis=1)

    def reason(self, features: np.ndarray) -> str | None:
        score = float(self.scores(features[None] if features.ndim == 1 else features)[0])
        if score > self.threshold:
            return (
                f"the model's features are unlike any chest X-ray it was validated on "
                f"(distance {score:.3f} > {self.threshold:.3f})"
            )
        return None

    def save(self, folder: Path) -> None:
        save_file(
            {
                "reference": torch.from_numpy(self.reference),
                "threshold": torch.tensor([self.threshold]),
                "k": torch.tensor([self.k]),
            },
            str(Path(folder) / GUARD_FILE),
        )

    @classmethod
    def load(cls, folder: Path) -> ScopeGuard | None:
        path = Path(folder) / GUARD_FILE
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        return cls(tensors["reference"].numpy(), float(tensors["threshold"][0]), int(tensors["k"][0]))
