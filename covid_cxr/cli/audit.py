"""Measure what a COVID-19 chest X-ray classifier reads: per-source and mixed-label figures, the occlusion test
(lungs only, lungs hidden), how well its features name the source, and inside the mixed-label sources the
projection, sex and age (ROC AUC within strata and of the stratum alone; a projection probe), each with a
patient-bootstrap 95% CI.

Works on any image classifier (a folder or a Hub id, safetensors, no remote code) and any dataset this project
builds or has built. Writes audit.json, AUDIT.md and its plots; prints a short summary. A bad input ends with
one line and exit status 2. Under `accelerate launch` the processes share the scoring (each on its GPU when there
is one), and the report is the one a single process writes.

    covid-cxr audit --model ID_OR_FOLDER --data DATASET_OR_FOLDER --lung_segmenter lungs/ --output_dir audit/
    accelerate launch --multi_gpu --num_processes 2 -m covid_cxr.cli.audit --model ... --output_dir audit/
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from covid_cxr.audit.classifier import AuditError
from covid_cxr.audit.images import ALL_SPLITS
from covid_cxr.audit.run import MARKDOWN_NAME, REPORT_NAME, audit
from covid_cxr.cli.parsing import parse_arguments
from covid_cxr.outputs import OutputFolderError


@dataclass
class AuditArguments:
    """What to audit, on what, and where to write the report."""

    model: str = field(
        metadata={
            "help": "The classifier: a model folder or a Hub id of any AutoModelForImageClassification with its "
            "image processor, loaded from safetensors without remote code."
        }
    )
    data: str = field(
        metadata={
            "help": "A dataset this project built (a folder with dataset_dict.json, or its Hub id), or a folder it "
            "can build one from: curated layout, class folders or an ieee8023 clone (every image is audited)."
        }
    )
    output_dir: str = field(
        metadata={
            "help": f"Where to write {REPORT_NAME}, {MARKDOWN_NAME} and its plots: a new folder or an earlier "
            "audit's; never inside --model, --data or --lung_segmenter."
        }
    )
    positive_label: str = field(
        default="covid",
        metadata={"help": "The model's label for COVID-19 (any case; COVID-19, positive, ... are matched too)."},
    )
    lung_segmenter: str | None = field(
        default=None,
        metadata={
            "help": "Lung fields for the occlusion test: a lung segmenter folder (covid-cxr train-lungs) or a "
            "folder of <stem>.png masks (covid-cxr lungs); without it the occlusion test is not run."
        },
    )
    split: str = field(
        default="test",
        metadata={"help": f"The split of a built dataset to audit, or {ALL_SPLITS}; ignored for a folder of images."},
    )
    batch_size: int = field(default=16, metadata={"help": "Images per forward pass."})
    bootstrap_rounds: int = field(
        default=2000, metadata={"help": "Patient-bootstrap resamples behind every 95%% interval."}
    )


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr audit") -> None:
    """Parse, audit, print the summary; exit status 2 with the reason for an input the audit cannot use."""
    (args,) = parse_arguments((AuditArguments,), argv, prog=prog, description=__doc__)
    try:
        report = audit(**vars(args))
    except (AuditError, OutputFolderError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    if report is None:  # another process of a launch: the main one reports
        return
    print(report.summary())
    print(f"Wrote {report.output_dir / REPORT_NAME} and {report.output_dir / MARKDOWN_NAME}")


if __name__ == "__main__":
    main()
