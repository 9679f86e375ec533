"""Rebuild an offline pretrained backbone (weights shipped in a registry package) as a Hugging Face model folder.

The converter checks its own output against the source model and fails loudly on any mismatch.

    python train/convert_backbone.py --name dinov2-small-imgfocus --output_root build/backbones
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from covid_cxr.modeling.backbones import DEFAULT_BACKBONE, OFFLINE_BACKBONES, materialise, provenance
from covid_cxr.modeling.backbones.cache import backbone_root


@dataclass
class ConvertArguments:
    name: str = field(
        default=DEFAULT_BACKBONE, metadata={"help": "Backbone to convert.", "choices": list(OFFLINE_BACKBONES)}
    )
    output_root: str = field(
        default_factory=lambda: str(backbone_root()),
        metadata={"help": "Folder receiving <name>/ (default: the user cache, $COVID_CXR_CACHE/backbones)."},
    )
    force: bool = field(default=False, metadata={"help": "Convert again even if the folder exists."})


def main() -> None:
    (args,) = HfArgumentParser(ConvertArguments).parse_args_into_dataclasses()
    folder = materialise(args.name, Path(args.output_root), force=args.force)
    facts = provenance(str(folder))
    print(f"{args.name} -> {folder} (max relative error vs source: {facts['max_relative_error_vs_source']:.2e})")


if __name__ == "__main__":
    main()
