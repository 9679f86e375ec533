"""The Space's predictor: one chest X-ray file in; calibrated probabilities, the decision at the stored threshold,
the scope check and the Grad-CAM overlay out.

The scope check has three layers: the pixels (colour, blank, aspect ratio), the model's features (unlike the
validation X-rays), and, with a lung segmenter, the lung fields (none plausible on the image the model saw).

One pass of the model serves them all: its forward (onnxruntime when the model folder holds a current ONNX
export, else PyTorch without gradients) gives the logits and every hidden state; the scope guard reads the middle
one and Grad-CAM re-runs only the head on the last one. A lungs-first model (covid_cxr.modeling.lungs_first) also
gives the lungs it found, the outline and the lung check, and the film it focused on them, the image shown; for
another model a lung segmenter, when given, continues from the last block it shares with the classifier (the
frozen ones), running just its own later blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from covid_cxr.data.imaging import load_image
from covid_cxr.data.processor_size import presized, processor_size
from covid_cxr.evaluation.keys import QUOTED
from covid_cxr.lungs.attention import lung_measures
from covid_cxr.lungs.measures import implausible_lungs
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import read_results
from covid_cxr.modeling.conformal import DEFAULT_COVERAGE, Conformal
from covid_cxr.modeling.heatmap import grad_cam, has_dinov2_head, head_cam, outline, overlay, token_grid
from covid_cxr.modeling.inference import CovidClassifier, load_folder, seen_images, softmax
from covid_cxr.modeling.lungs_first import LungsFirstForImageClassification
from covid_cxr.modeling.onnx_export import LUNG_OUTPUTS, current_session
from covid_cxr.modeling.scope_guard import ScopeGuard, pixel_reason, scope_features

logger = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DISPLAY_PX = 448  # the side of the result images: the model's input upscaled, so outlines and heat stay legible
# the smallest classifier input, as a share of the segmenter's own, whose tokens the segmenter reads (coarser
# grids blur the lung fields; bench/inference.py measures the Dice at both sizes)
MIN_SHARED_SCALE = 0.75


class OutdatedModel(ValueError):
    """A model folder this version cannot serve as it was meant to be served; the message says what to do."""


class OutOfScope(ValueError):
    """The image is readable but is not a frontal chest radiograph; the message says why."""


@dataclass
class Prediction:
    probabilities: dict[str, float]
    covid_probability: float
    covid_detected: bool
    seen: Image.Image | None  # the image as the model saw it (resized; focused when lungs first), lungs outlined
    heatmap: Image.Image | None  # Grad-CAM over the image seen, with the same outline (both None unless displayed)
    lung_attention: float | None = None  # share of the Grad-CAM heat inside the lung fields
    lung_attention_ratio: float | None = None  # that share over the lungs' share of the image (1: evenly spread)
    lungs_first: bool = False  # the film was blurred outside its lungs before the model saw it, as in its training
    prediction_set: str | None = None  # covid_cxr.modeling.conformal's set at the predictor's coverage; None: none


@dataclass
class ForwardPass:
    logits: np.ndarray  # (1, labels)
    scope: np.ndarray  # (1, d) the scope guard's features
    cam: np.ndarray | None  # (1, rows, cols) Grad-CAM, when asked for
    hidden_states: tuple[torch.Tensor, ...] | None  # every layer's tokens, embeddings first; None after a CNN
    lung_probability: np.ndarray | None = None  # (1, side, side) the lungs a lungs-first model found
    focused: torch.Tensor | None = None  # (1, 3, h, w) the input a lungs-first model's classifier saw

    def row(self, index: int) -> ForwardPass:
        """The pass of one film of a batch, as a batch of one."""
        one = slice(index, index + 1)
        return ForwardPass(
            self.logits[one],
            self.scope[one],
            None if self.cam is None else self.cam[one],
            None if self.hidden_states is None else tuple(state[one] for state in self.hidden_states),
            None if self.lung_probability is None else self.lung_probability[one],
            None if self.focused is None else self.focused[one],
        )


def headline_figures(results: dict[str, float | None]) -> dict[str, float | None]:
    """The figures the Space quotes (QUOTED), under the keys all_results.json holds them by; None when absent."""
    return {key: results.get(key) for key in QUOTED}


class Predictor(CovidClassifier):
    """A trained model folder ready to serve: the classifier plus its scope guard and card facts."""

    def __init__(
        self,
        folder: str | Path,
        segmenter: LungSegmenter | None = None,
        device: torch.device | str = "cpu",
        bf16: bool = False,
    ) -> None:
        """`device` and `bf16` move the model (PyTorch then, not the ONNX graph, which runs float32 on the CPU);
        everything after the model's pass runs on the CPU."""
        self.folder = Path(folder)
        model, processor = load_folder(self.folder)
        if getattr(model.config, "lung_focus", None):  # written before lungs first became one model
            raise OutdatedModel(
                f"{self.folder} was trained lungs first by an earlier covid-cxr, which focused films outside the "
                "model: train it again (covid-cxr finetune --lung_segmenter ...; in a checkout, make train)"
            )
        super().__init__(model.requires_grad_(False), processor)  # Grad-CAM takes gradients of activations only
        self.lungs_first = isinstance(model, LungsFirstForImageClassification)
        self.segmenter = None if self.lungs_first else segmenter  # a lungs-first model finds the lungs itself
        self.guard = ScopeGuard.load(self.folder)
        self.conformal = Conformal.load(self.folder)  # None: the model claims no coverage
        self.coverage = DEFAULT_COVERAGE  # of the prediction sets
        self.results = read_results(self.folder)
        self.head_cam = has_dinov2_head(self.model)
        self.device = torch.device(device)
        if self.device.type != "cpu" or bf16:
            self.model.to(self.device, torch.bfloat16 if bf16 else torch.float32)
        on_cpu = self.device.type == "cpu" and not bf16
        self.session = current_session(self.folder) if self.head_cam and on_cpu else None
        self.shared = self._shared_layers()

    @property
    def lung_threshold(self) -> float | None:
        """The lung probability a pixel needs to count as lung; None when nothing finds the lungs."""
        if self.lungs_first:
            return float(self.model.config.lung_finder["threshold"])
        return None if self.segmenter is None else self.segmenter.config.threshold

    def _shared_layers(self) -> int:
        """How many hidden states the segmenter takes over from the classifier's pass (0: it runs its own)."""
        if self.segmenter is None or not self.head_cam:
            return 0
        if processor_size(self.processor) < MIN_SHARED_SCALE * self.segmenter.config.image_size:
            return 0
        return self.segmenter.shared_layers(self.model.base_model)

    def band(self, coverage: float | None = None) -> tuple[float, float] | None:
        """The scores at which both classes stay in the prediction set (uncertain) at `coverage` (the predictor's
        own by default), within 0-1; None when the model claims no coverage or no score is uncertain."""
        return None if self.conformal is None else self.conformal.band(coverage or self.coverage)

    def prediction_set(self, covid: float, coverage: float | None = None) -> str | None:
        """The prediction set of a calibrated P(covid) at `coverage` (the predictor's own by default); None when
        the model claims no coverage."""
        return None if self.conformal is None else self.conformal.sets([covid], coverage or self.coverage)[0]

    def facts(self) -> dict[str, object]:
        config = self.model.config
        return {
            "backbone": getattr(config, "backbone_description", config.model_type),
            "dataset": getattr(config, "training_dataset", "unknown"),
            "threshold": self.threshold,
            "validation_sensitivity": getattr(config, "threshold_validation_sensitivity", None),
            "validation_specificity": getattr(config, "threshold_validation_specificity", None),
            # what the page may say of the training data (recorded by the fine-tune; a foreign model has none)
            "training_sources": list(getattr(config, "training_sources", [])),
            "public_collection": getattr(config, "training_data_public_collection", None),
            "confounded": getattr(config, "training_data_confounded", None),
        } | headline_figures(self.results)

    def analyse(
        self, source: str | Path | bytes, heatmap: bool = True, max_bytes: int = MAX_UPLOAD_BYTES
    ) -> Prediction:
        """Raise ImageError (unreadable or larger than `max_bytes`) or OutOfScope (not a frontal CXR); else return
        the analysis, with the images the Space shows."""
        (answer,) = self.analyse_images([load_image(source, max_bytes=max_bytes).image], heatmap, display=True)
        if isinstance(answer, OutOfScope):
            raise answer
        return answer

    def analyse_images(
        self, images: Sequence[Image.Image], heatmap: bool = True, display: bool = False
    ) -> list[Prediction | OutOfScope]:
        """Each decoded film's analysis, or OutOfScope with the reason, from one batched pass of the model; the
        images the Space shows (`seen`, `heatmap`) only with `display` (a batch command writes figures only)."""
        answers: list[Prediction | OutOfScope | None] = [
            OutOfScope(reason) if (reason := pixel_reason(image)) else None for image in images
        ]
        todo = [index for index, answer in enumerate(answers) if answer is None]
        if todo:
            squares = [presized(images[index], self.processor) for index in todo]
            pixels = self.processor(squares, return_tensors="pt")["pixel_values"]
            forward = self.forward(pixels, heatmap)
            for row, index in enumerate(todo):
                try:
                    answers[index] = self._answer(forward.row(row), pixels[row : row + 1], display)
                except OutOfScope as refusal:
                    answers[index] = refusal
        return answers

    def _answer(self, forward: ForwardPass, pixels: torch.Tensor, display: bool) -> Prediction:
        """One film's analysis from its row of the batch's pass; OutOfScope when a scope check refuses it."""
        if forward.lung_probability is not None and (
            reason := implausible_lungs(forward.lung_probability[0], self.lung_threshold)
        ):
            raise OutOfScope(reason)
        if self.guard is not None and (reason := self.guard.reason(forward.scope[0])):
            raise OutOfScope(reason)
        seen = None
        if display or (self.segmenter is not None and not self.shared):  # the segmenter's own pass reads it
            (seen,) = seen_images(pixels if forward.focused is None else forward.focused, self.processor)
        lung_mask = self._lungs(forward, pixels, seen) if self.lung_threshold is not None else None
        row = softmax(forward.logits)[0]
        covid = float(row[self.positive])
        measured = forward.cam is not None and lung_mask is not None
        share, ratio = lung_measures(forward.cam[0], lung_mask) if measured else (None, None)
        shown = heat = None
        if display:
            shown = seen.resize((DISPLAY_PX, DISPLAY_PX), Image.Resampling.BICUBIC)
            heat = None if forward.cam is None else overlay(shown, forward.cam[0])
            if lung_mask is not None:
                shown = outline(shown, lung_mask)
                heat = None if heat is None else outline(heat, lung_mask)
        return Prediction(
            {self.model.config.id2label[i]: float(p) for i, p in enumerate(row)},
            covid,
            covid >= self.threshold,
            shown,
            heat,
            share,
            ratio,
            self.lungs_first,
            self.prediction_set(covid),
        )

    def forward(self, pixels: torch.Tensor, heatmap: bool) -> ForwardPass:
        """Logits, scope features, hidden states and (with `heatmap`) Grad-CAM, from one pass of the backbone."""
        pixels = pixels.to(self.device, self.model.dtype)
        if not self.head_cam:  # a CNN: its Grad-CAM needs the backbone's graph
            if heatmap:
                return ForwardPass(*grad_cam(self.model, pixels, self.positive), None)
            with torch.no_grad():
                outputs = self.model(pixel_values=pixels, output_hidden_states=True)
            return ForwardPass(outputs.logits.float().cpu().numpy(), scope_features(outputs.hidden_states), None, None)
        ask = {"output_lungs": True} if self.lungs_first else {}
        if self.session is not None:
            names = [output.name for output in self.session.get_outputs()]
            found = dict(zip(names, self.session.run(names, {"pixel_values": pixels.numpy()}), strict=True))
            logits, hidden = found["logits"], tuple(torch.from_numpy(found["hidden_states"]))
        else:
            with torch.no_grad():
                outputs = self.model(pixel_values=pixels, output_hidden_states=True, **ask)
            logits, hidden = outputs.logits.float().cpu().numpy(), outputs.hidden_states
            found = {name: outputs[name].float().cpu().numpy() for name in LUNG_OUTPUTS if self.lungs_first}
        cam = head_cam(self.model, hidden[-1], token_grid(pixels, self.model), self.positive) if heatmap else None
        if hidden[0].device.type != "cpu" or hidden[0].dtype != torch.float32:
            hidden = tuple(state.float().cpu() for state in hidden)
        if not self.lungs_first:
            return ForwardPass(logits, scope_features(hidden), cam, hidden)
        focused = torch.as_tensor(found["focused_pixel_values"])
        return ForwardPass(logits, scope_features(hidden), cam, hidden, found["lung_probability"], focused)

    def _lungs(self, forward: ForwardPass, pixels: torch.Tensor, seen: Image.Image) -> np.ndarray:
        """The lung mask at the display size: the lungs a lungs-first model found, else the segmenter's, from the
        shared pass when it shares the classifier's first blocks, else from its own pass over the image seen;
        OutOfScope when no lungs are plausible."""
        if forward.lung_probability is not None:
            found = torch.from_numpy(np.asarray(forward.lung_probability, dtype=np.float32))[:, None]
            size = (DISPLAY_PX, DISPLAY_PX)
            probability = torch.nn.functional.interpolate(found, size=size, mode="bilinear")[0, 0].numpy()
            return probability >= self.lung_threshold
        if self.shared and forward.hidden_states is not None:
            tokens = self.segmenter.tokens_from(forward.hidden_states, self.shared, token_grid(pixels, self.model))
        else:
            tokens = self.segmenter.tokens(self.segmenter.pixel_values([seen]))
        probability = self.segmenter.decode(tokens[0], (DISPLAY_PX, DISPLAY_PX))
        if reason := implausible_lungs(probability, self.segmenter.config.threshold):
            raise OutOfScope(reason)
        return probability >= self.segmenter.config.threshold
