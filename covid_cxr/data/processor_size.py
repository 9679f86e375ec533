"""The square side an image processor produces, and setting it: shared by training, pre-decoding and the Space
(apart from the augmentation's module, so that serving needs no kornia)."""

from __future__ import annotations

from PIL import Image
from transformers import BaseImageProcessor

WHOLE_FILM = "whole film"  # the recipe's framing (covid_cxr.cards.model.Recipe): squashed to a square, no crop


def processor_size(processor: BaseImageProcessor) -> int:
    """The square input side the processor produces (its crop size, else its resize target)."""
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = crop or processor.size
    return int(size.get("height") or size.get("shortest_edge"))


def presized(image: Image.Image, processor: BaseImageProcessor) -> Image.Image:
    """The film as RGB, already resized as a squashing processor resizes it (any other: only made RGB), so that
    the processor's own resize is a copy and its output is the same to the bit: PIL resizes every channel alike,
    so a grey film's one channel is resized instead of three, and the full-size RGB copy is never made."""
    if not processor.do_resize or getattr(processor, "do_center_crop", False) or "height" not in processor.size:
        return image.convert("RGB")
    size = (processor.size["width"], processor.size["height"])
    return image.resize(size, Image.Resampling(processor.resample)).convert("RGB")


def set_processor_size(processor: BaseImageProcessor, side: int) -> None:
    """Make the processor squash the whole film to side x side, as `pipeline()` then does too.

    A centre crop (most backbones' processors resize the short side and crop its centre) cuts the lateral lung
    edges of a wide film, where COVID-19 opacities tend to be, and the apices and bases of a tall one. Squashing
    keeps every lung pixel, and it is what the training augmentation and the lung segmenter already see."""
    processor.do_center_crop = False
    processor.size = {"height": side, "width": side}


class InputSizeError(ValueError):
    """An input side a patch backbone cannot see whole; the message says which sides it can."""


def check_input_side(side: int, patch: int | None) -> None:
    """Refuse a side that is not a whole number of the backbone's patches (None: not a patch backbone): the patch
    embedding drops the remainder, so the right and bottom edges of every film would never be seen."""
    if patch and side % patch:
        lower, upper = side // patch * patch, (side // patch + 1) * patch
        raise InputSizeError(
            f"--image_size {side} is not a multiple of the backbone's {patch} px patches: the last {side % patch} "
            f"px of every film (its right and bottom edges) would never be seen; use {lower or upper} or {upper}"
        )
