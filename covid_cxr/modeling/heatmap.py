"""Where the model looked: Grad-CAM on the last hidden state of the backbone, for CNNs and ViTs alike.

For a CNN the last hidden state is a C x H x W feature map; for a ViT it is a token sequence whose patch
tokens are laid back on their grid (prefix tokens such as CLS or registers are dropped). Grad-CAM weighs each
channel by the mean gradient of the COVID logit and keeps the positive part. A DINOv2 classifier's logits
depend on its last hidden state only through its head, so its Grad-CAM needs no graph through the backbone:
`head_cam` re-runs the head alone on a hidden state from any forward pass (PyTorch without gradients, or ONNX).
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from transformers import Dinov2ForImageClassification, PreTrainedModel

from covid_cxr.modeling.scope_guard import scope_features

COLOUR_MAP = "jet"


def token_grid(pixel_values: torch.Tensor, model: PreTrainedModel) -> tuple[int, int]:
    """(rows, columns) of a ViT's patch tokens for this input."""
    patch = int(getattr(model.config, "patch_size", 16))
    return pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch


def _as_grid(activation: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) feature maps from a CNN block output or a ViT token sequence."""
    if activation.dim() == 4:
        return activation
    rows, cols = grid
    tokens = activation[:, activation.shape[1] - rows * cols :, :]
    return tokens.transpose(1, 2).reshape(activation.shape[0], -1, rows, cols)


def _cam(activation: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Channels weighed by their mean gradient, the positive part kept, each map scaled to [0, 1]."""
    weights = _as_grid(gradients, grid).mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * _as_grid(activation.detach(), grid)).sum(dim=1))
    return (cam / cam.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None]).float().cpu().numpy()


def grad_cam(
    model: PreTrainedModel, pixel_values: torch.Tensor, target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward + backward: logits, scope-guard features and a [0, 1] heat map per image.

    No hooks and no parameter gradients (``torch.autograd.grad`` on the last hidden state only), so concurrent
    requests on one shared model cannot interfere.
    """
    with torch.enable_grad():
        outputs = model(pixel_values=pixel_values, output_hidden_states=True)
        activation = outputs.hidden_states[-1]
        (gradients,) = torch.autograd.grad(outputs.logits[:, target].sum(), activation)
    cam = _cam(activation, gradients, token_grid(pixel_values, model))
    return outputs.logits.detach().float().cpu().numpy(), scope_features(outputs.hidden_states), cam


def has_dinov2_head(model: PreTrainedModel) -> bool:
    return isinstance(model, Dinov2ForImageClassification)


def _dinov2_head(model: Dinov2ForImageClassification, last_hidden: torch.Tensor) -> torch.Tensor:
    """The logits from the last hidden state: final layer norm, CLS token and mean patch token, linear layer
    (Dinov2ForImageClassification's own head)."""
    sequence = model.dinov2.layernorm(last_hidden)
    return model.classifier(torch.cat([sequence[:, 0], sequence[:, 1:].mean(dim=1)], dim=1))


def head_cam(model: PreTrainedModel, last_hidden: torch.Tensor, grid: tuple[int, int], target: int) -> np.ndarray:
    """Grad-CAM of a DINOv2 classifier from its last hidden state (B, T, D): the same maps as `grad_cam`, with
    the backward pass through the head only."""
    with torch.enable_grad():
        activation = last_hidden.detach().to(model.dtype).requires_grad_()
        (gradients,) = torch.autograd.grad(_dinov2_head(model, activation)[:, target].sum(), activation)
    return _cam(activation, gradients, grid)


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [0, 1] heat map resized (bilinear) to an image's (width, height)."""
    return np.asarray(Image.fromarray(np.float32(cam), mode="F").resize(size, Image.Resampling.BILINEAR))


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heat map, upsampled and coloured (COLOUR_MAP), blended over the image the model saw."""
    coloured = matplotlib.colormaps[COLOUR_MAP](np.clip(upsample(cam, image.size), 0, 1))[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return Image.fromarray(np.uint8(255 * ((1 - alpha) * base + alpha * coloured)))


def colour_stops(count: int = 6) -> list[str]:
    """COLOUR_MAP sampled at `count` even steps from 0 to 1, as CSS hex colours: the heat map's legend."""
    colours = matplotlib.colormaps[COLOUR_MAP](np.linspace(0, 1, count))[:, :3]
    return ["#" + "".join(f"{round(255 * c):02x}" for c in colour) for colour in colours]


def outline(image: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = (0, 255, 0)) -> Image.Image:
    """The mask's boundary (2 px) drawn over an image of the mask's size."""
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    pixels = np.array(image.convert("RGB"))
    pixels[edge] = colour
    return Image.fromarray(pixels)
