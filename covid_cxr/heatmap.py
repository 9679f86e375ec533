"""Where the model looked: Grad-CAM on the last block of the backbone, for CNNs and ViTs alike.

For a CNN the last block's output is a C x H x W feature map; for a ViT it is a token sequence whose patch
tokens are laid back on their grid (prefix tokens such as CLS or registers are dropped). Grad-CAM weighs each
channel by the mean gradient of the COVID logit and keeps the positive part.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import PreTrainedModel

from covid_cxr.calibration import classifier_head


def last_block(model: PreTrainedModel) -> nn.Module:
    blocks = max((m for m in model.base_model.modules() if isinstance(m, nn.ModuleList)), key=len)
    return blocks[-1]


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
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """One forward + backward: logits, classifier-input features and a [0, 1] heat map per image."""
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(_module, _inputs, output):
        activation = output[0] if isinstance(output, tuple) else output
        activation.retain_grad()
        captured["activation"] = activation

    hooks = [
        last_block(model).register_forward_hook(keep_activation),
        classifier_head(model).register_forward_hook(lambda _m, i, _o: captured.update(features=i[0].detach())),
    ]
    try:
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            logits = model(pixel_values=pixel_values).logits
            logits[:, target].sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    activation = captured["activation"]
    grid = _as_grid(activation.detach(), pixel_values, model)
    gradients = _as_grid(activation.grad, pixel_values, model)
    cam = torch.relu((gradients.mean(dim=(2, 3), keepdim=True) * grid).sum(dim=1))
    cam = cam / cam.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None]
    return logits.detach(), captured["features"].cpu().numpy(), cam.cpu().numpy()


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heat map, upsampled and coloured (jet), blended over the image the model saw."""
    heat = Image.fromarray(np.uint8(cam * 255)).resize(image.size, Image.Resampling.BILINEAR)
    coloured = matplotlib.colormaps["jet"](np.asarray(heat) / 255.0)[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return Image.fromarray(np.uint8(255 * ((1 - alpha) * base + alpha * coloured)))
