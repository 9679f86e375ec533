"""The classifier under audit: any `AutoModelForImageClassification` with its own image processor, from a folder or
the Hub, loaded from safetensors without remote code, and the facts a reviewer needs before reading its figures.

Nothing here assumes the model was trained by this project: the positive class is found by name among its labels,
the threshold is its config's `decision_threshold` when it has one and 0.5 otherwise, and the input size is what
its processor actually produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, BaseImageProcessor, PreTrainedModel

from covid_cxr.labels import normalise_label

DEFAULT_THRESHOLD = 0.5


class AuditError(ValueError):
    """An input the audit cannot work with; the message says which and what to do."""


@dataclass
class AuditedClassifier:
    """A loaded model, its processor, and how its output is read as P(COVID-19)."""

    name: str
    model: PreTrainedModel
    processor: BaseImageProcessor
    positive: int  # the index of the COVID-19 class among the model's outputs
    threshold: float
    threshold_from: str  # where the threshold came from, in words

    @property
    def labels(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def facts(self) -> dict[str, object]:
        """What the report says about the model itself."""
        height, width = input_size(self.processor)
        return {
            "id": self.name,
            "architecture": type(self.model).__name__,
            "labels": self.labels,
            "positive_label": self.labels[self.positive],
            "input_size": [height, width],
            "processor": type(self.processor).__name__,
            "crops_the_film": crop_description(self.processor),
            "threshold": self.threshold,
            "threshold_from": self.threshold_from,
        }


def load_classifier(name: str, positive_label: str = "covid") -> AuditedClassifier:
    """Load `name` (a model folder or a Hub id) through the same from_pretrained calls a Hub user makes."""
    try:
        model = AutoModelForImageClassification.from_pretrained(name, use_safetensors=True, trust_remote_code=False)
        processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        where = "folder" if Path(name).exists() else "Hub id (offline: it must be in the local Hub cache)"
        raise AuditError(
            f"--model {name}: cannot load it as an image classifier with its image processor from safetensors "
            f"without remote code, as a {where}: {err}"
        ) from err
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    positive = positive_index(labels, positive_label)
    threshold = getattr(model.config, "decision_threshold", None)
    if isinstance(threshold, int | float):
        return AuditedClassifier(name, model.eval(), processor, positive, float(threshold), "its config")
    reason = "the default: its config has no decision_threshold"
    return AuditedClassifier(name, model.eval(), processor, positive, DEFAULT_THRESHOLD, reason)


def positive_index(labels: list[str], positive_label: str) -> int:
    """The one output named `positive_label` (any case), or, failing that, the one whose name is a known spelling of
    the same class (COVID-19, positive, ...)."""
    exact = [i for i, label in enumerate(labels) if label.strip().lower() == positive_label.strip().lower()]
    wanted = normalise_label(positive_label)
    aliased = [i for i, label in enumerate(labels) if wanted is not None and normalise_label(label) == wanted]
    found = exact or aliased
    if len(found) == 1:
        return found[0]
    problem = "no label" if not found else f"{len(found)} labels"
    raise AuditError(
        f"the model's labels ({', '.join(labels)}) hold {problem} for the positive class {positive_label!r}; "
        "pass --positive_label with the name of its COVID-19 class"
    )


def input_size(processor: BaseImageProcessor) -> tuple[int, int]:
    """(height, width) of what the processor gives the model for a square film: measured, not read from settings."""
    pixels = processor([Image.new("RGB", (512, 512))], return_tensors="np")["pixel_values"]
    return tuple(int(side) for side in np.asarray(pixels).shape[-2:])


def crop_description(processor: BaseImageProcessor) -> str:
    """Whether the processor cuts the film's edges off (a centre crop after resizing), in words."""
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        crop = processor.crop_size
        return (
            f"yes: resized ({size_words(processor.size)}), then centre-cropped to {crop['height']}x{crop['width']} px"
        )
    crop_pct = getattr(processor, "crop_pct", None)  # ConvNeXt's: a crop below its 384 px shortest edge
    if crop_pct is not None and crop_pct < 1 and processor.size.get("shortest_edge", 384) < 384:
        return f"yes: resized, then centre-cropped to {crop_pct:.0%} of the shorter side"
    return f"no: the whole film is resized ({size_words(processor.size)})"


def size_words(size: object) -> str:
    """A processor's `size` setting (a dict or SizeDict) as its set fields, e.g. shortest_edge 192."""
    fields = size.items() if isinstance(size, dict) else vars(size).items()
    return ", ".join(f"{key} {value}" for key, value in fields if value is not None) or "as given"
