"""MobileNetV2 1.0-224 from the npm ``nsfwjs@4.3.0`` TF.js model to a Hugging Face ``MobileNetV2Model`` folder.

The facts are in ``../shared/BACKBONES.md``: uint8-quantised weights (value = q * scale + min) stored in
manifest order, Keras layer names mapped onto transformers' modules, kernels transposed from HWIO (HWC1 for
depthwise) to OIHW. The 5-class NSFW head is dropped. The conversion ends by running the original TF.js model
(``@tensorflow/tfjs`` on node, CPU backend) on the same input and comparing the pooled features.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import MobileNetV2Config, MobileNetV2ImageProcessorPil, MobileNetV2Model

from covid_cxr.modeling.backbones.cache import downloads_folder

NPM_PACKAGE = "nsfwjs@4.3.0"
TFJS_PACKAGES = (
    "@tensorflow/tfjs-core@4.22.0",
    "@tensorflow/tfjs-layers@4.22.0",
    "@tensorflow/tfjs-backend-cpu@4.22.0",
)
MODEL_DIR_IN_PACKAGE = "package/dist/models/mobilenet_v2"
READER = Path(__file__).with_name("tfjs_mobilenet.js")
# TF.js CPU kernels and PyTorch differ in float32 rounding; the measured error is kept in provenance.json
MAX_RELATIVE_ERROR = 1e-3
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


class ConversionError(RuntimeError):
    """The converted weights do not reproduce the source model."""


def _npm(*args: str, cwd: Path) -> None:
    if shutil.which("npm") is None:
        raise FileNotFoundError("the MobileNetV2 weights come from the npm package nsfwjs: install Node.js and npm")
    subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, text=True)


def fetch(downloads: Path | None = None) -> tuple[Path, Path]:
    """`npm pack` nsfwjs and `npm install` the TF.js reader into ``downloads`` (default: `downloads_folder`, once);
    return both folders."""
    downloads = downloads or downloads_folder()
    downloads.mkdir(parents=True, exist_ok=True)
    model_dir = downloads / "nsfwjs" / MODEL_DIR_IN_PACKAGE
    if not model_dir.is_dir():
        _npm("pack", NPM_PACKAGE, "--pack-destination", str(downloads.resolve()), cwd=downloads)
        with tarfile.open(next(downloads.glob("nsfwjs-*.tgz"))) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(MODEL_DIR_IN_PACKAGE) and m.isfile()]
            archive.extractall(downloads / "nsfwjs", members=members, filter="data")
    tfjs_dir = downloads / "tfjs"
    if not (tfjs_dir / "node_modules" / "@tensorflow" / "tfjs-layers").is_dir():
        tfjs_dir.mkdir(exist_ok=True)
        _npm("install", "--no-audit", "--no-fund", "--prefix", str(tfjs_dir.resolve()), *TFJS_PACKAGES, cwd=tfjs_dir)
    return model_dir, tfjs_dir


def _run_reader(model_dir: Path, tfjs_dir: Path, out_dir: Path, input_file: Path | None = None) -> None:
    command = ["node", str(READER), str(model_dir.resolve()), str(out_dir)]
    if input_file is not None:
        command.append(str(input_file))
    env = {"NODE_PATH": str((tfjs_dir / "node_modules").resolve()), "PATH": os.environ.get("PATH", "")}
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)


def dequantise(manifest: list[dict], shard: bytes) -> dict[str, np.ndarray]:
    """Keras weight name -> float32 array, reading uint8 (or float32) weights in manifest order."""
    weights, offset = {}, 0
    for spec in (w for group in manifest for w in group["weights"]):
        shape, count = spec["shape"], int(np.prod(spec["shape"]))
        quantisation = spec.get("quantization")
        if quantisation:
            raw = np.frombuffer(shard, dtype=np.uint8, count=count, offset=offset)
            values = raw.astype(np.float32) * quantisation["scale"] + quantisation["min"]
            offset += count
        else:
            values = np.frombuffer(shard, dtype=np.float32, count=count, offset=offset)
            offset += 4 * count
        weights[spec["name"]] = values.reshape(shape)
    return weights


def _keras_to_hf_prefixes() -> dict[str, str]:
    prefixes = {
        "Conv1": "conv_stem.first_conv",
        "bn_Conv1": "conv_stem.first_conv",
        "expanded_conv_depthwise": "conv_stem.conv_3x3",
        "expanded_conv_depthwise_BN": "conv_stem.conv_3x3",
        "expanded_conv_project": "conv_stem.reduce_1x1",
        "expanded_conv_project_BN": "conv_stem.reduce_1x1",
        "Conv_1": "conv_1x1",
        "Conv_1_bn": "conv_1x1",
    }
    for i in range(1, 17):
        for keras, hf in (("expand", "expand_1x1"), ("depthwise", "conv_3x3"), ("project", "reduce_1x1")):
            prefixes[f"block_{i}_{keras}"] = prefixes[f"block_{i}_{keras}_BN"] = f"layer.{i - 1}.{hf}"
    return prefixes


def state_dict_from_keras(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    prefixes = _keras_to_hf_prefixes()
    state = {}
    for name, value in weights.items():
        layer, variable = name.split("/")
        if layer.startswith("dense"):
            continue  # the NSFW classifier head
        prefix = prefixes[layer]
        if variable == "kernel":
            state[f"{prefix}.convolution.weight"] = value.transpose(3, 2, 0, 1)
        elif variable == "depthwise_kernel":
            state[f"{prefix}.convolution.weight"] = value.transpose(2, 3, 0, 1)
        else:
            state[f"{prefix}.normalization.{_BN[variable]}"] = value
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}


def mobilenet_config() -> MobileNetV2Config:
    return MobileNetV2Config(
        depth_multiplier=1.0,
        image_size=224,
        tf_padding=True,
        layer_norm_eps=1e-3,
        hidden_act="relu6",
        finegrained_output=True,
        first_layer_is_expansion=True,
        architectures=["MobileNetV2Model"],
    )


def image_processor() -> MobileNetV2ImageProcessorPil:
    return MobileNetV2ImageProcessorPil(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def convert(output_dir: Path, downloads: Path | None = None) -> float:
    """Write the Hugging Face folder and return the measured relative error against TF.js."""
    model_dir, tfjs_dir = fetch(downloads)
    with tempfile.TemporaryDirectory(prefix="covid-cxr-mobilenet-") as scratch:
        scratch_dir = Path(scratch)
        pixels = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
        (scratch_dir / "input.bin").write_bytes(pixels.tobytes())
        _run_reader(model_dir, tfjs_dir, scratch_dir, scratch_dir / "input.bin")
        bundle = json.loads((scratch_dir / "model.json").read_text())
        weights = dequantise(bundle["weightsManifest"], (scratch_dir / "weights.bin").read_bytes())
        expected = np.frombuffer((scratch_dir / "features.bin").read_bytes(), dtype=np.float32).reshape(2, -1)
    model = MobileNetV2Model(mobilenet_config()).eval()
    missing, unexpected = model.load_state_dict(state_dict_from_keras(weights), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConversionError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        actual = model(torch.from_numpy(pixels).permute(0, 3, 1, 2)).pooler_output.numpy()
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    if error > MAX_RELATIVE_ERROR:
        raise ConversionError(f"converted backbone differs from the TF.js model: relative error {error:.2e}")
    model.save_pretrained(output_dir, safe_serialization=True)
    image_processor().save_pretrained(output_dir)
    return error
