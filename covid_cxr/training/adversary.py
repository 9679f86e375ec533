"""Domain-adversarial training (Ganin & Lempitsky, 2015) against the source shortcut.

Most negatives come from one hospital and most positives from others, so the features that tell the hospital
also tell the label (DeGrave et al., 2021). A small source classifier reads the same pooled features as the
label head, through a gradient-reversal layer: it learns to name the source, while the reversed gradient pushes
the backbone towards features it cannot name the source from. It exists during training only; the saved model
is the plain classifier, so `pipeline()` users never see it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, TrainerCallback

ATTRIBUTE = "source_adversary"  # the training-only submodule: checkpoints (and resume) carry it, the saved model not


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return features.view_as(features)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * gradient, None


class SourceAdversary(nn.Module):
    """Source logits from the label head's input; the gradient reaching those features is reversed and scaled."""

    def __init__(self, in_features: int, n_sources: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Linear(in_features, n_sources)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(_ReverseGradient.apply(features, self.scale))


def attach_source_adversary(model: PreTrainedModel, n_sources: int, scale: float) -> None:
    """Give `model` a source adversary on its classifier's input (removed again by `detach_source_adversary`)."""
    setattr(model, ATTRIBUTE, SourceAdversary(model.classifier.in_features, n_sources, scale))


def detach_source_adversary(model: PreTrainedModel) -> None:
    if hasattr(model, ATTRIBUTE):
        delattr(model, ATTRIBUTE)


def dann_ramp(progress: float) -> float:
    """Ganin et al. (2016)'s schedule for the reversal scale, 2 / (1 + exp(-10 p)) - 1 at training progress p:
    0 at the start, while the features are still the backbone's own, 0.76 at a fifth and 0.99 at half."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class AdversaryRamp(TrainerCallback):
    """Raise the adversary's reversal scale from 0 to `scale` along `dann_ramp` (set before each step, from the
    Trainer's step count, so a resumed run continues the schedule)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def on_step_begin(self, args, state, control, model: PreTrainedModel | None = None, **kwargs) -> None:
        getattr(model, ATTRIBUTE).scale = self.scale * dann_ramp(state.global_step / max(state.max_steps, 1))


def source_ids(sources: Sequence[str]) -> np.ndarray:
    """Each image's source as an index into the sorted source names."""
    _, ids = np.unique(np.asarray(sources), return_inverse=True)
    return ids


@contextmanager
def classifier_inputs(model: PreTrainedModel) -> Iterator[list[torch.Tensor]]:
    """Collect what the classifier head receives during the forward passes inside the block."""
    seen: list[torch.Tensor] = []
    handle = model.classifier.register_forward_hook(lambda _module, args, _output: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


def adversary_losses(model: PreTrainedModel, features: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """The adversary's cross-entropy of each image (the Trainer divides it like the label loss)."""
    logits = getattr(model, ATTRIBUTE)(features.float())
    return F.cross_entropy(logits, sources.to(logits.device), reduction="none")


class WithSources(torch.utils.data.Dataset):
    """A training dataset whose examples also carry their source index (`source_ids`) for the adversary."""

    def __init__(self, data: torch.utils.data.Dataset, ids: np.ndarray) -> None:
        if len(data) != len(ids):
            raise ValueError(f"{len(ids)} source ids for {len(data)} training images")
        self.data, self.ids = data, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {**self.data[index], "source_ids": int(self.ids[index])}
