"""Out-of-scope guard: refuse images that do not look like frontal chest radiographs instead of scoring them.

Two layers. Pixel checks catch the obvious (colour photos, blank frames, extreme aspect ratios). A feature check
then compares the model's middle-layer features (generic image features, little changed by fine-tuning; the
penultimate ones collapse onto the two classes and separate X-rays from photos poorly) with those of the
validation X-rays: after standardising each dimension, the mean Euclidean distance to the k nearest reference
images must stay below the 99th percentile seen among the references themselves (leave-one-out). The reference
set is written beside the model at training time: the validation films, topped up with training films when they
are fewer than MIN_REFERENCES (docs/scope_guard.md measures why: a guard fitted on a few films turns ordinary chest
X-rays away).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from covid_cxr.model_folder import SCOPE_GUARD

MAX_CHROMA = 0.08  # mean (max - min channel) / 255; real radiographs, even as RGB JPEGs, stay near 0
MIN_GREY_STD = 8.0  # grey levels; below this the frame is blank
MAX_ASPECT = 2.5
STATS_SIDE = 256  # the pixel statistics are read from the film box-averaged to about this shorter side
MIN_REFERENCES = 100  # films a guard is fitted on at least, when the data has them (docs/scope_guard.md)


def pixel_reason(image: Image.Image) -> str | None:
    """Why the pixels alone rule the image out, or None."""
    width, height = image.size
    if max(width, height) / min(width, height) > MAX_ASPECT:
        return f"its aspect ratio ({width} x {height} pixels) is far from that of a chest film"
    image = image.reduce(max(1, min(width, height) // STATS_SIDE))  # a full-size film costs no more than a small one
    if image.mode == "RGB":
        pixels = np.asarray(image, dtype=np.int16)
        chroma = float((pixels.max(axis=2) - pixels.min(axis=2)).mean()) / 255.0
        if chroma > MAX_CHROMA:
            return "it is a colour image; X-rays are grey-scale"
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    if grey.std() < MIN_GREY_STD:
        return "it is blank or nearly uniform"
    return None


def scope_features(hidden_states: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Pool the middle hidden state: CLS + mean token for a ViT (B, T, D), spatial mean for a CNN (B, C, H, W)."""
    middle = hidden_states[len(hidden_states) // 2].detach().float()
    pooled = torch.cat([middle[:, 0], middle[:, 1:].mean(dim=1)], dim=1) if middle.dim() == 3 else middle.mean((2, 3))
    return pooled.cpu().numpy()


def _knn_distance(reference: np.ndarray, queries: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    distances = np.sqrt(
        np.maximum((queries**2).sum(1)[:, None] + (reference**2).sum(1)[None, :] - 2 * queries @ reference.T, 0)
    )
    if leave_one_out:
        np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def references(validation: np.ndarray, training: Callable[[int], np.ndarray]) -> np.ndarray:
    """The features a guard is fitted on: the validation films', and when they are fewer than MIN_REFERENCES, as
    many of the training films' as make up the difference (`training(n)` gives at most n of them). Training films
    are in scope by definition, and a fine-tune leaves the middle layer the guard reads nearly as it was."""
    missing = MIN_REFERENCES - len(validation)
    return validation if missing <= 0 else np.concatenate([validation, training(missing)])


@dataclass
class ScopeGuard:
    mean: np.ndarray  # (d,) of the reference features
    scale: np.ndarray  # (d,) their standard deviation
    reference: np.ndarray  # (n, d) standardised features of in-scope X-rays
    threshold: float
    k: int = 5

    @classmethod
    def fit(cls, features: np.ndarray, quantile: float = 0.99, k: int = 5) -> ScopeGuard:
        features = features.astype(np.float32)
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        reference = (features - mean) / scale
        scores = _knn_distance(reference, reference, k, leave_one_out=True)
        return cls(mean, scale, reference, float(np.quantile(scores, quantile)), k)

    def scores(self, features: np.ndarray) -> np.ndarray:
        return _knn_distance(self.reference, (features.astype(np.float32) - self.mean) / self.scale, self.k)

    def reason(self, features: np.ndarray) -> str | None:
        """Why the features rule the image out, in plain words (the distance itself means nothing to a reader)."""
        score = float(self.scores(features[None] if features.ndim == 1 else features)[0])
        if score > self.threshold:
            return "its image features are unlike those of the chest X-rays the model was validated on"
        return None

    def save(self, folder: Path) -> None:
        arrays = {"mean": self.mean, "scale": self.scale, "reference": self.reference}
        tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}
        tensors |= {"threshold": torch.tensor([self.threshold]), "k": torch.tensor([self.k])}
        save_file(tensors, str(Path(folder) / SCOPE_GUARD))

    @classmethod
    def load(cls, folder: Path) -> ScopeGuard | None:
        path = Path(folder) / SCOPE_GUARD
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        return cls(
            tensors["mean"].numpy(),
            tensors["scale"].numpy(),
            tensors["reference"].numpy(),
            float(tensors["threshold"][0]),
            int(tensors["k"][0]),
        )
