"""The model as ONNX beside its safetensors, in the layout transformers.js and Optimum read (``onnx/model.onnx``),
checked against PyTorch, and the onnxruntime session the Space runs when the export is current.

Besides the ``logits`` the graph returns every layer's hidden states (``hidden_states``, stacked, embeddings
first): the scope guard and Grad-CAM read them, so the Space makes one pass. A lungs-first model's graph is its
whole forward (segment, focus, classify) and also returns what it found (LUNG_OUTPUTS: the lung probability,
whether it was plausible, the focused input). The TorchScript exporter is used (``dynamo=False``: the dynamo one
needs onnxscript); the image size is fixed at the processor's, and DINOv2's position embeddings, interpolated for
it by PyTorch once at export, are constants of the graph (interpolated in onnxruntime they took a fifth of a
pass). No int8 export: dynamic quantisation moved a lungs-first model's probabilities by far more than 0.01.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image
from torch import nn

from covid_cxr.model_folder import ONNX_CHECK, ONNX_DIR, ONNX_MODEL, WEIGHTS, read_config
from covid_cxr.modeling.heatmap import has_dinov2_head
from covid_cxr.modeling.inference import load_folder, softmax
from covid_cxr.modeling.lungs_first import MODEL_TYPE as LUNGS_FIRST_MODEL
from covid_cxr.modeling.lungs_first import LungsFirstForImageClassification

OUTPUTS = ("logits", "hidden_states")
LUNG_OUTPUTS = ("lung_probability", "lungs_plausible", "focused_pixel_values")  # a lungs-first model's too


def output_names(model_type: str) -> tuple[str, ...]:
    """The graph's outputs for a model of this `model_type`: a lungs-first model's include what it found."""
    return OUTPUTS + LUNG_OUTPUTS if model_type == LUNGS_FIRST_MODEL else OUTPUTS


class _WithHiddenStates(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.lungs_first = isinstance(model, LungsFirstForImageClassification)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        extra = {"output_lungs": True} if self.lungs_first else {}
        outputs = self.model(pixel_values=pixel_values, output_hidden_states=True, **extra)
        found = tuple(outputs[name] for name in LUNG_OUTPUTS) if self.lungs_first else ()
        return outputs.logits, torch.stack(outputs.hidden_states), *found


@contextmanager
def constant_position_embeddings(model: nn.Module) -> Iterator[None]:
    """Within it, each embeddings module of `model` (the classifier's, the lung finder's) gives the position
    embeddings it first interpolated for an input size again, as a tensor: run the model once, then trace it, and
    the traced graph holds them as constants instead of interpolating them on every pass."""
    patched = [m for m in model.modules() if callable(getattr(m, "interpolate_pos_encoding", None))]
    for module in patched:
        cache: dict[tuple[int, int], torch.Tensor] = {}

        def cached(embeddings, height, width, original=module.interpolate_pos_encoding, cache=cache) -> torch.Tensor:
            key = (int(height), int(width))
            if key not in cache:
                cache[key] = original(embeddings, height, width).detach()
            return cache[key]

        module.interpolate_pos_encoding = cached
    try:
        yield
    finally:
        for module in patched:
            del module.interpolate_pos_encoding  # the class's own method again


def exportable(model: nn.Module) -> bool:
    """Whether the export can carry the model's hidden states: a DINOv2 classifier's are tokens of one shape, which
    the Space's shared pass reads; a CNN's are maps of many shapes, and it is served through PyTorch."""
    return has_dinov2_head(model)


def weights_digest(model_folder: Path) -> str:
    """SHA-256 of the safetensors weights: an export counts only for the weights it was made from."""
    digest = hashlib.sha256()
    with (model_folder / WEIGHTS).open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def make_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(model_folder: Path, images: Sequence[Image.Image] | None = None) -> dict[str, object]:
    """Write onnx/model.onnx for the model in `model_folder` and compare it with PyTorch on `images` (a fixed random
    batch when None): the largest logit and probability differences, also written to onnx/export_check.json with the
    digest of the weights exported."""
    model_folder = Path(model_folder)
    model, processor = load_folder(model_folder)
    model.eval().requires_grad_(False)
    if images:
        pixels = processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    else:
        crop = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
        pixels = torch.randn(4, 3, crop["height"], crop["width"], generator=torch.Generator().manual_seed(0))
    folder = model_folder / ONNX_DIR
    folder.mkdir(exist_ok=True)
    names = output_names(model.config.model_type)
    staging = folder / f".{ONNX_MODEL}.part"
    with warnings.catch_warnings(), constant_position_embeddings(model):
        warnings.simplefilter("ignore")  # the tracer's notes on Python conditions fixed at this input size
        with torch.no_grad():
            model(pixel_values=pixels[:1])  # interpolates the position embeddings for this size, untraced
        torch.onnx.export(
            _WithHiddenStates(model),
            (pixels[:1],),
            str(staging),
            dynamo=False,
            input_names=["pixel_values"],
            output_names=list(names),
            dynamic_axes={"pixel_values": {0: "batch_size"}, "hidden_states": {1: "batch_size"}}
            | {name: {0: "batch_size"} for name in names if name != "hidden_states"},
            opset_version=17,
        )
    os.replace(staging, folder / ONNX_MODEL)
    with torch.no_grad():
        reference = model(pixel_values=pixels).logits.numpy()
    (logits, _, *_) = make_session(folder / ONNX_MODEL).run(list(names), {"pixel_values": pixels.numpy()})
    check: dict[str, object] = {
        "weights_sha256": weights_digest(model_folder),
        "images": len(pixels),
        "onnx_max_logit_difference": float(np.abs(logits - reference).max()),
        "onnx_max_probability_difference": float(np.abs(softmax(logits) - softmax(reference)).max()),
    }
    (folder / ONNX_CHECK).write_text(json.dumps(check, indent=2) + "\n")
    return check


def current_session(model_folder: Path, file: str = ONNX_MODEL) -> onnxruntime.InferenceSession | None:
    """The onnxruntime session of the model's ONNX export when there is one made from the weights now in the
    folder, with both outputs the Space reads; None otherwise (the caller runs PyTorch)."""
    folder = Path(model_folder) / ONNX_DIR
    if not (folder / file).is_file() or not (folder / ONNX_CHECK).is_file():
        return None
    if json.loads((folder / ONNX_CHECK).read_text()).get("weights_sha256") != weights_digest(Path(model_folder)):
        return None
    session = make_session(folder / file)
    model_type = read_config(model_folder).get("model_type", "")
    return session if {o.name for o in session.get_outputs()} >= set(output_names(model_type)) else None
