"""The classifier as ONNX beside its safetensors, in the layout transformers.js and Optimum read
(``onnx/model.onnx`` and the int8 ``onnx/model_quantized.onnx``), checked against PyTorch, and the onnxruntime
session the Space runs when the fp32 export is current.

Besides the ``logits`` the graph returns every layer's hidden states (``hidden_states``, stacked, embeddings
first): the scope guard, Grad-CAM and the lung segmenter read them, so the Space makes one backbone pass. The
TorchScript exporter is used (``dynamo=False``: the dynamo one needs onnxscript); the image size is fixed at the
processor's crop, as DINOv2's position embeddings are interpolated for it at export.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image
from torch import nn

from covid_cxr.modeling.heatmap import has_dinov2_head
from covid_cxr.modeling.inference import load_folder, softmax

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
CHECK_FILE = "export_check.json"  # what the export was checked against, and the weights it came from
WEIGHTS_FILE = "model.safetensors"
OUTPUTS = ("logits", "hidden_states")


class _WithHiddenStates(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=pixel_values, output_hidden_states=True)
        return outputs.logits, torch.stack(outputs.hidden_states)


def exportable(model: nn.Module) -> bool:
    """Whether the export can carry the model's hidden states: a DINOv2 classifier's are tokens of one shape, which
    the Space's shared pass reads; a CNN's are maps of many shapes, and it is served through PyTorch."""
    return has_dinov2_head(model)


def weights_digest(model_folder: Path) -> str:
    """SHA-256 of the safetensors weights: an export counts only for the weights it was made from."""
    digest = hashlib.sha256()
    with (model_folder / WEIGHTS_FILE).open("rb") as handle:
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
    """Write onnx/model.onnx and onnx/model_quantized.onnx for the model in `model_folder` and compare both with
    PyTorch on `images` (a fixed random batch when None): the largest logit and probability differences, also
    written to onnx/export_check.json with the digest of the weights exported."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # needs onnx, which the Space does not ship

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
    fp32, int8 = folder / FP32_FILE, folder / INT8_FILE
    staging = folder / f".{FP32_FILE}.part"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python conditions fixed at this input size
        torch.onnx.export(
            _WithHiddenStates(model),
            (pixels[:1],),
            str(staging),
            dynamo=False,
            input_names=["pixel_values"],
            output_names=list(OUTPUTS),
            dynamic_axes={
                "pixel_values": {0: "batch_size"},
                "logits": {0: "batch_size"},
                "hidden_states": {1: "batch_size"},
            },
            opset_version=17,
        )
    quantize_dynamic(staging, folder / f".{INT8_FILE}.part", weight_type=QuantType.QInt8)
    os.replace(staging, fp32)
    os.replace(folder / f".{INT8_FILE}.part", int8)
    with torch.no_grad():
        reference = model(pixel_values=pixels).logits.numpy()
    check: dict[str, object] = {"weights_sha256": weights_digest(model_folder), "images": len(pixels)}
    for name, path in (("onnx", fp32), ("onnx_int8", int8)):
        (logits, _) = make_session(path).run(list(OUTPUTS), {"pixel_values": pixels.numpy()})
        check[f"{name}_max_logit_difference"] = float(np.abs(logits - reference).max())
        check[f"{name}_max_probability_difference"] = float(np.abs(softmax(logits) - softmax(reference)).max())
    (folder / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n")
    return check


def current_session(model_folder: Path, file: str = FP32_FILE) -> onnxruntime.InferenceSession | None:
    """The onnxruntime session of the model's ONNX export when there is one made from the weights now in the
    folder, with both outputs the Space reads; None otherwise (the caller runs PyTorch)."""
    folder = Path(model_folder) / ONNX_DIR
    if not (folder / file).is_file() or not (folder / CHECK_FILE).is_file():
        return None
    if json.loads((folder / CHECK_FILE).read_text()).get("weights_sha256") != weights_digest(Path(model_folder)):
        return None
    session = make_session(folder / file)
    return session if {o.name for o in session.get_outputs()} >= set(OUTPUTS) else None
