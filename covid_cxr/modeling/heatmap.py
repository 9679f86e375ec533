"""Where the model looked: Grad-CAM on the last hidden state of the backbone, for CNNs and ViTs alike.

For a CNN the last hidden state is a C x H x W feature map; for a ViT it is a token sequence whose patch
tokens are laid back on their grid (prefix tokens such as CLS or registers are dropped). Grad-CAM weighs each
channel by the mean gradient of the COVID logit and keeps the positive part.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from transformers import PreTrainedModel

from covid_cxr.modeling.scope_guard import scope_features


def _as_grid(activation: torch.Tensor, pixel_values: torch.Tensor, model: PreTrainedModel) -> torch.Tensor:
    """(B, C, H, W) feature maps from a CNN block output or a ViT token sequence."""
    if activation.dim() == 4:
        return activation
    patch = int(getattr(model.config, "patch_size", 16))
    rows, cols = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
    tokens = activation[:, activation.shape[1] - rows * cols :, :]
    return tokens.transpose(1, 2).reshape(activation.shape[0], -1, rows, cols)


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
    grid = _as_grid(activation.detach(), pixel_values, model)
    weights = _as_grid(gradients, pixel_values, model).mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * grid).sum(dim=1))
    cam = cam / cam.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None]
    return outputs.logits.detach().float().cpu().numpy(), scope_features(outputs.hidden_states), cam.cpu().numpy()


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [0, 1] heat map resized (bilinear) to an image's (width, height)."""
    return np.asarray(Image.fromarray(np.float32(cam), mode="F").resize(size, Image.Resampling.BILINEAR))


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heat map, upsampled and coloured (jet), blended over the image the model saw."""
    coloured = matplotlib.colormaps["jet"](np.clip(upsample(cam, image.size), 0, 1))[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return Image.fromarray(np.uint8(255 * ((1 - alpha) * base + alpha * coloured)))


def outline(image: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = (0, 255, 0)) -> Image.Image:
    """The mask's boundary (2 px) drawn over an image of the mask's size."""
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    pixels = np.array(image.convert("RGB"))
    pixels[edge] = colour
    return Image.fromarray(pixels)
