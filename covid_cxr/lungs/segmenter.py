"""A lung-field segmenter: a small convolutional head on the patch tokens of a frozen DINOv2 backbone.

The backbone is the classifier's offline default, kept frozen and cut after the deepest layer the head reads, so
the head (15k weights) trains in a minute on a CPU from features computed once, and every film pays for six
blocks, not twelve. The image is squashed to a square (no crop), so a mask covers the
whole film and maps back to any input size. The backbone is stored in bf16 (half the bytes; the head was fitted
on features of the same rounded weights) beside the head, as safetensors with a JSON config: no pickles.

A classifier fine-tuned from the same backbone with its first blocks frozen computes those blocks exactly as the
segmenter would (up to the bf16 rounding): `shared_layers` finds how many, and `tokens_from` takes the
classifier's hidden states from there, running only the segmenter's own later blocks, so one backbone pass
serves both (on the classifier's input, which the segmenter's fully convolutional head reads at any grid).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, Dinov2Config, Dinov2Model

from covid_cxr.model_folder import SEGMENTER_CONFIG, SEGMENTER_WEIGHTS
from covid_cxr.modeling.lungs_first import LungHead


@dataclass(frozen=True)
class SegmenterConfig:
    backbone: dict  # Dinov2Config.to_dict() of the frozen backbone
    # 12 x 12 patch tokens of 14 px (the classifier's input), layers 3 and 6: a cross-validated Dice above the earlier
    # 224 px, layers 6 and 12, at about a third of its time per film (study/lung_finder.py, docs/lungs.md)
    image_size: int = 168
    layers: tuple[int, ...] = (3, 6)  # hidden states whose patch tokens are concatenated (0 = embeddings)
    hidden: int = 16
    threshold: float = 0.5
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    trained_on: dict = field(default_factory=dict)  # what the head was fitted on, for the README and the card


def holds_segmenter(folder: str | Path) -> bool:
    """Whether `folder` holds a saved segmenter (what `make lungs` writes)."""
    return (Path(folder) / SEGMENTER_CONFIG).is_file()


class LungSegmenter(nn.Module):
    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Dinov2Model(Dinov2Config.from_dict(config.backbone)).eval().requires_grad_(False)
        self.head = LungHead(self.backbone.config.hidden_size * len(config.layers), config.hidden)

    @classmethod
    def from_backbone(cls, backbone_dir: str | Path, **options) -> LungSegmenter:
        """A new segmenter (untrained head) on a DINOv2 model folder, its weights rounded to bf16 as stored."""
        model_type = AutoConfig.from_pretrained(backbone_dir).model_type
        if model_type != "dinov2":  # another architecture would load as a DINOv2 of random weights, silently
            raise ValueError(f"{backbone_dir} holds a {model_type} model: the lung segmenter needs a DINOv2 backbone")
        backbone = Dinov2Model.from_pretrained(backbone_dir, use_safetensors=True)
        depth = max(options.get("layers", SegmenterConfig.layers))  # the blocks after it are never read
        stages = ("stage_names", "out_features", "out_indices")  # named for the blocks it no longer has
        cut = {k: v for k, v in backbone.config.to_dict().items() if k not in stages} | {"num_hidden_layers": depth}
        segmenter = cls(SegmenterConfig(backbone=cut, **options))
        kept = segmenter.backbone.state_dict().keys()
        rounded = {k: v.to(torch.bfloat16).float() for k, v in backbone.state_dict().items() if k in kept}
        segmenter.backbone.load_state_dict(rounded)
        return segmenter

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> LungSegmenter:
        folder = Path(folder)
        if not holds_segmenter(folder):
            raise FileNotFoundError(
                f"no lung segmenter in {folder} (no {SEGMENTER_CONFIG}); train one with `covid-cxr train-lungs` "
                "(in a checkout: `make lungs`)"
            )
        raw = json.loads((folder / SEGMENTER_CONFIG).read_text())
        config = SegmenterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        segmenter = cls(config)
        state = {k: v.float() for k, v in load_file(folder / SEGMENTER_WEIGHTS).items()}
        segmenter.load_state_dict(state)
        return segmenter.eval()

    def finder_settings(self) -> dict:
        """What a lungs-first model's config records of this segmenter (its `lung_finder`, whose weights it holds)."""
        keys = ("backbone", "layers", "hidden", "threshold", "image_size")
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self.config).items()
            if key in keys
        }

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.to(torch.bfloat16) if k.startswith("backbone.") else v for k, v in self.state_dict().items()}
        save_file({k: v.contiguous() for k, v in state.items()}, folder / SEGMENTER_WEIGHTS)
        (folder / SEGMENTER_CONFIG).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """Each image squashed to image_size x image_size, RGB, normalised as the backbone was trained."""
        size = self.config.image_size
        arrays = [np.asarray(i.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for i in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.config.image_mean)[:, None, None]
        std = torch.tensor(self.config.image_std)[:, None, None]
        return (pixels - mean) / std

    @torch.no_grad()
    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The chosen layers' patch tokens laid on their grid: (B, C x layers, h, w)."""
        hidden = self.backbone(pixel_values=pixel_values, output_hidden_states=True).hidden_states
        side = pixel_values.shape[-1] // self.backbone.config.patch_size
        return self._grids(hidden, (side, side))

    def shared_layers(self, backbone: nn.Module) -> int:
        """How many leading hidden states (embeddings first) `backbone`, a DINOv2 of the same shape, computes with
        this segmenter's weights (its own rounded to bf16 as ours are stored): 0 when not even the embeddings are."""
        ours, theirs = self.backbone.state_dict(), backbone.state_dict()
        if any(k not in theirs or ours[k].shape != theirs[k].shape for k in ours):
            return 0

        def same(prefix: str) -> bool:
            return all(
                torch.equal(theirs[k].to(torch.bfloat16).float(), v) for k, v in ours.items() if k.startswith(prefix)
            )

        prefixes = ["embeddings."] + [f"encoder.layer.{i}." for i in range(self.backbone.config.num_hidden_layers)]
        return next((count for count, prefix in enumerate(prefixes) if not same(prefix)), len(prefixes))

    @torch.no_grad()
    def tokens_from(self, hidden_states: Sequence[torch.Tensor], shared: int, grid: tuple[int, int]) -> torch.Tensor:
        """The chosen layers' patch tokens (B, C x layers, rows, cols) from another backbone's hidden states, of
        which the first `shared` (see `shared_layers`) are ours: only our blocks after them run."""
        states = list(hidden_states[:shared])
        for layer in self.backbone.encoder.layer[shared - 1 : max(self.config.layers)]:
            states.append(layer(states[-1].float()))
        return self._grids(states, grid)

    def _grids(self, hidden: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        rows, cols = grid
        layers = [hidden[i][:, hidden[i].shape[1] - rows * cols :, :].float() for i in self.config.layers]
        return torch.cat([tokens.transpose(1, 2).reshape(len(tokens), -1, rows, cols) for tokens in layers], dim=1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """One image's patch tokens (C, h, w) to its lung probability at `size` (height, width), float32 in [0, 1]."""
        logit = self.head(tokens[None].float())
        return torch.sigmoid(nn.functional.interpolate(logit, size=size, mode="bilinear"))[0, 0].numpy()

    def probabilities(self, images: list[Image.Image], size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Per image, the lung probability at `size` (height, width), by default the image's own."""
        tokens = self.tokens(self.pixel_values(images))
        sizes = [size or (image.height, image.width) for image in images]
        return [self.decode(t, side) for t, side in zip(tokens, sizes, strict=True)]

    def masks(self, images: list[Image.Image]) -> list[np.ndarray]:
        """Per image, the boolean lung mask at the image's own size."""
        return [p >= self.config.threshold for p in self.probabilities(images)]
