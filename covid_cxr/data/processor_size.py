"""The square side an image processor produces, and setting it: shared by training, pre-decoding and the Space
(apart from the augmentation's module, so that serving needs no kornia)."""

from __future__ import annotations

from transformers import BaseImageProcessor


def processor_size(processor: BaseImageProcessor) -> int:
    """The square input side the processor produces (its crop size, else its resize target)."""
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = crop or processor.size
    return int(size.get("height") or size.get("shortest_edge"))


def set_processor_size(processor: BaseImageProcessor, side: int) -> None:
    """Make the processor produce side x side inputs, keeping its resize-then-crop ratio (e.g. 256/224)."""
    if getattr(processor, "do_center_crop", False) and "shortest_edge" in processor.size:
        ratio = processor.size["shortest_edge"] / processor_size(processor)
        processor.size = {"shortest_edge": round(side * ratio)}
        processor.crop_size = {"height": side, "width": side}
    else:
        processor.size = {"height": side, "width": side}
