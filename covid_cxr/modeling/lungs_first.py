"""Lungs first as one transformers model: find the lung fields, blur everything outside them, classify.

A DINOv2 image classifier whose `forward(pixel_values)` takes the standard image processor's output (the whole
film squashed to the input square) and, inside the model, runs a frozen lung finder (its own DINOv2 and a small
convolutional head over two of its layers' patch tokens), dilates the lung fields it finds, blurs everything
outside them with a fixed Gaussian at the input resolution, and classifies what is left. Text labels, markers,
film borders and the rest of what tells one hospital from another mostly lie outside the lungs (DeGrave et al.,
Nature Machine Intelligence 2021); the dilation keeps the lung borders sharp and the blur fades in, so no hard
edge becomes a new shortcut. A film on which no plausible lung fields are found is classified whole, as it was
in training.

The finder's backbone is the classifier's pretrained DINOv2 cut after the deepest layer it reads. When the
classifier keeps those first blocks frozen (its default recipe), their weights are the same, and the model folder
stores them once: the finder's `shared_modules` (the embeddings, then one block after another) are read from the
classifier's on loading. Those frozen blocks hold the finder's weights (the pretrained ones rounded to bf16, as the
finder was fitted on them).

This file is the whole model: it imports torch and transformers only, so it travels in the model folder
(`auto_map` in config.json) for `pipeline(..., trust_remote_code=True)` without the covid-cxr package; with the
package installed, `import covid_cxr` registers the same classes with the Auto classes and no remote code runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import transformers
from torch import nn
from torch.nn import functional as F
from transformers import Dinov2Config, Dinov2ForImageClassification, Dinov2Model
from transformers.modeling_outputs import ImageClassifierOutput

if int(transformers.__version__.split(".")[0]) < 5:  # 4.x names the DINOv2 weights otherwise: it would load none
    raise ImportError(f"this lungs-first model needs transformers>=5.23, found {transformers.__version__}")

MODEL_TYPE = "covid-cxr-lungs-first"
# Where the lung probability is judged and the focus's strengths, each a share of the film's side
FOCUS_DEFAULTS = {
    "mask_side": 112,  # the lung probability map's side, where its plausibility is judged
    "dilation": 0.05,  # the margin kept sharp around the lungs
    "blur": 0.04,  # Gaussian sigma outside: enough to wipe out text at the input resolution
    "feather": 0.015,  # sigma of the fade from sharp to blurred
}
# A lung probability map that is none of a frontal chest film's: unsure over much of it (the finder is confident
# on chest films), too little or too much lung, or lung on one side only
MAX_UNSURE = 0.35  # set above the validation X-rays' unsure shares; bench/lungs.py counts the chest films it refuses
LUNG_SHARE = (0.08, 0.75)
MIN_SIDE_BALANCE = 0.15  # the smaller lung side's share over the larger's


class LungsFirstConfig(Dinov2Config):
    """Dinov2Config of the classifier, plus the frozen lung finder's settings and the focus's strengths."""

    model_type = MODEL_TYPE

    # {"backbone": Dinov2Config dict, "layers": [...], "hidden": int, "threshold": float, "image_size": int,
    #  "shared_modules": int (optional: how many of the finder's embeddings and blocks are the classifier's)}
    lung_finder: dict | None = None
    focus: dict | None = None  # FOCUS_DEFAULTS, or what the model was trained with

    def __post_init__(self, **kwargs) -> None:
        self.focus = FOCUS_DEFAULTS | (self.focus or {})
        super().__post_init__(**kwargs)


class LungHead(nn.Module):
    """Patch tokens (B, C, h, w) to lung logits on the same grid."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(tokens)


class LungFinder(nn.Module):
    """The frozen lung segmenter: DINOv2 patch tokens of `layers`, concatenated, through a LungHead."""

    def __init__(self, settings: dict) -> None:
        super().__init__()
        self.settings = settings
        self.backbone = Dinov2Model(Dinov2Config(**settings["backbone"]))
        self.head = LungHead(self.backbone.config.hidden_size * len(settings["layers"]), settings["hidden"])
        self.requires_grad_(False)

    def shared_weights(self, count: int) -> list[str]:
        """The names (in our backbone) of our weights that are the classifier's when we share its embeddings and
        first `count - 1` blocks."""
        prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(count - 1)))
        return [name for name, _ in self.backbone.named_parameters() if count >= 1 and name.startswith(prefixes)]

    def forward(self, pixel_values: torch.Tensor, side: int) -> torch.Tensor:
        """Lung probability (B, side, side) of normalised films, read at the finder's own input size."""
        size = self.settings["image_size"]
        if int(pixel_values.shape[-1]) != size:
            pixel_values = F.interpolate(pixel_values, size=(size, size), mode="bilinear", align_corners=False)
        hidden = self.backbone(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        grid = size // self.backbone.config.patch_size
        tokens = [hidden[i][:, hidden[i].shape[1] - grid * grid :, :] for i in self.settings["layers"]]
        maps = torch.cat([t.transpose(1, 2).unflatten(2, (grid, grid)) for t in tokens], dim=1)
        logits = F.interpolate(self.head(maps), size=(side, side), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[:, 0]


def lung_plausibility(probability: torch.Tensor, threshold: float) -> dict[str, torch.Tensor]:
    """Per map (B, h, w): the share where the finder is unsure, the lung share, and the smaller lung side's share
    over the larger's; `plausible` when all three are those of a frontal chest film."""
    unsure = ((probability > 0.2) & (probability < 0.8)).float().mean(dim=(1, 2))
    mask = (probability >= threshold).float()
    share = mask.mean(dim=(1, 2))
    half = mask.shape[-1] // 2
    left, right = mask[..., :half].mean(dim=(1, 2)), mask[..., half:].mean(dim=(1, 2))
    balance = torch.minimum(left, right) / torch.maximum(left, right).clamp_min(1e-12)
    plausible = (unsure <= MAX_UNSURE) & (share >= LUNG_SHARE[0]) & (share <= LUNG_SHARE[1])
    return {
        "unsure": unsure,
        "share": share,
        "balance": balance,
        "plausible": plausible & (balance >= MIN_SIDE_BALANCE),
    }


def gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian (truncated at 4 sigma, as scipy's) over each channel of (B, C, H, W), edges repeated."""
    radius = max(1, int(4 * sigma + 0.5))
    weights = [math.exp(-0.5 * (offset / sigma) ** 2) for offset in range(-radius, radius + 1)]
    kernel = torch.tensor([w / sum(weights) for w in weights], dtype=pixels.dtype, device=pixels.device)
    channels = int(pixels.shape[1])  # Python numbers throughout: the ONNX export needs the kernel constant
    rows = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    cols = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    padded = F.pad(pixels, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(F.conv2d(padded, rows, groups=channels), cols, groups=channels)


def blur_outside(pixels: torch.Tensor, lungs: torch.Tensor, focus: dict) -> torch.Tensor:
    """Films (B, C, H, W) with everything outside the dilated lung masks (B, h, w; any size) blurred: pixels inside
    the dilated fields unchanged, the blur fading in over a few pixels outside them. Strengths are shares of the
    longer side."""
    side = max(int(pixels.shape[-2]), int(pixels.shape[-1]))  # constants when traced for ONNX: the size is fixed
    mask = F.interpolate(lungs[:, None].to(pixels.dtype), size=pixels.shape[-2:], mode="bilinear") >= 0.5
    radius = max(1, round(focus["dilation"] * side))
    kept = F.max_pool2d(mask.to(pixels.dtype), 2 * radius + 1, stride=1, padding=radius)
    weight = torch.maximum(gaussian_blur(kept, focus["feather"] * side), kept)
    return weight * pixels + (1 - weight) * gaussian_blur(pixels, focus["blur"] * side)


@dataclass
class LungsFirstOutput(ImageClassifierOutput):
    """The classifier's output; with `output_lungs`, also the lung probability (B, mask_side, mask_side) of each
    film, whether it was plausible (a film without is classified whole), and the focused input the classifier saw."""

    lung_probability: torch.FloatTensor | None = None
    lungs_plausible: torch.BoolTensor | None = None
    focused_pixel_values: torch.FloatTensor | None = None


class LungsFirstForImageClassification(Dinov2ForImageClassification):
    """Dinov2ForImageClassification that focuses its input on the lungs first (the lung finder is frozen)."""

    config_class = LungsFirstConfig

    def __init__(self, config: LungsFirstConfig) -> None:
        super().__init__(config)
        self.lungs = LungFinder(config.lung_finder)
        # Stored once, as the classifier's, and copied into the finder on loading (tie_weights). The modules stay
        # apart: transformers records hidden states by hooks on them, which a shared module would fire twice.
        self.shared_finder_weights = self.lungs.shared_weights(int(config.lung_finder.get("shared_modules", 0)))
        self._keys_to_ignore_on_save = [f"lungs.backbone.{name}" for name in self.shared_finder_weights]
        self._keys_to_ignore_on_load_missing = self._keys_to_ignore_on_save
        self.tie_weights()

    def tie_weights(self, *args, **kwargs) -> None:
        """transformers' ties, then the finder's shared weights made the classifier's (which hold the only copy)."""
        super().tie_weights(*args, **kwargs)
        shared = getattr(self, "shared_finder_weights", [])  # no finder yet while PreTrainedModel.__init__ ties
        with torch.no_grad():
            for name in shared:
                self.lungs.backbone.get_parameter(name).copy_(self.dinov2.get_parameter(name))

    def focus_on_lungs(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(focused films, lung probability at mask_side, plausible): an implausible film's mask is all lung."""
        focus = self.config.focus
        with torch.no_grad():
            probability = self.lungs(pixel_values, focus["mask_side"])
        threshold = self.config.lung_finder["threshold"]
        plausible = lung_plausibility(probability, threshold)["plausible"]
        lungs = (probability >= threshold) | ~plausible[:, None, None]
        return blur_outside(pixel_values, lungs, focus), probability, plausible

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_lungs: bool = False,
        **kwargs,
    ) -> LungsFirstOutput:
        focused, probability, plausible = self.focus_on_lungs(pixel_values)
        outputs = super().forward(pixel_values=focused, labels=labels, **kwargs)
        extra = {"lung_probability": probability, "lungs_plausible": plausible, "focused_pixel_values": focused}
        return LungsFirstOutput(**outputs, **(extra if output_lungs else {}))


LungsFirstConfig.register_for_auto_class()
LungsFirstForImageClassification.register_for_auto_class("AutoModelForImageClassification")
