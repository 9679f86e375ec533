"""The lung segmenter as a standard transformers model: UperNet over the same frozen DINOv2 (`Dinov2Backbone`), so
that `pipeline("image-segmentation", model=...)` returns the lung mask with neither remote code nor this package.

It reads the same hidden states as the project's head (covid_cxr.lungs.segmenter), layer-normed as
`Dinov2Backbone` gives them, and is fitted on the same masks with the same loss (covid_cxr.lungs.fitting). Its
lung logit is the difference of its two class logits, so the pipeline's arg-max is the project's 0.5 threshold.
The image processor squashes the whole film to the square, as the project's segmenter does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import (
    Dinov2Config,
    SegformerImageProcessorPil,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from covid_cxr.lungs.segmenter import LungSegmenter

LABELS = ("background", "lung")
HIDDEN = 32  # UperNet's channels: the masks are smooth, so a narrow head does (the default 512 is for ADE20k)
# Its head's epochs: half the project head's, as good on the curated masks (the cross-validated Dice moved by less
# than a tenth of its 95% CI) at less than half the time, which `make train` pays before it can start
EPOCHS = 20


def standard_model(segmenter: LungSegmenter, hidden: int = HIDDEN) -> UperNetForSemanticSegmentation:
    """An UperNet (head untrained) on the segmenter's own frozen backbone weights and layers."""
    backbone = Dinov2Config.from_dict(segmenter.config.backbone)
    backbone.out_features = [f"stage{layer}" for layer in segmenter.config.layers]
    backbone.reshape_hidden_states = backbone.apply_layernorm = True
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=hidden,
        pool_scales=[1, 2, 3, 6],
        use_auxiliary_head=False,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = UperNetForSemanticSegmentation(config).eval()
    model.backbone.load_state_dict(segmenter.backbone.state_dict())
    model.backbone.requires_grad_(False)
    return model


def standard_processor(segmenter: LungSegmenter) -> SegformerImageProcessorPil:
    side = segmenter.config.image_size
    return SegformerImageProcessorPil(  # the PIL one by name: the other warns without torchvision, then is this one
        size={"height": side, "width": side},
        resample=Image.Resampling.BICUBIC,
        image_mean=list(segmenter.config.image_mean),
        image_std=list(segmenter.config.image_std),
        do_reduce_labels=False,
    )


def stage_features(segmenter: LungSegmenter, tokens: torch.Tensor) -> torch.Tensor:
    """The project's patch tokens (N, C x layers, h, w) as `Dinov2Backbone` feature maps (N, layers, C, h, w): the
    same hidden states, layer-normed, so the standard head trains on what its backbone will give it."""
    layers = len(segmenter.config.layers)
    n, channels, rows, cols = tokens.shape
    grids = tokens.float().reshape(n, layers, channels // layers, rows, cols)
    with torch.no_grad():
        normed = segmenter.backbone.layernorm(grids.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
    return normed.half()


def lung_logits(model: UperNetForSemanticSegmentation, features: torch.Tensor) -> torch.Tensor:
    """Stage feature maps (N, layers, C, h, w) to the lung logit on their grid (N, 1, h, w)."""
    logits = model.decode_head([features[:, i].float() for i in range(features.shape[1])])
    return (logits[:, 1] - logits[:, 0])[:, None]


@torch.no_grad()
def lung_probability(
    model: UperNetForSemanticSegmentation, features: torch.Tensor, size: tuple[int, int]
) -> np.ndarray:
    """One image's stage feature maps (layers, C, h, w) to its lung probability at `size` (height, width)."""
    logit = lung_logits(model, features[None])
    return torch.sigmoid(nn.functional.interpolate(logit, size=size, mode="bilinear"))[0, 0].numpy()


def save_standard(model: UperNetForSemanticSegmentation, segmenter: LungSegmenter, folder: str | Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    standard_processor(segmenter).save_pretrained(folder)
