"""The README's quality headline from the yardstick's report of the default recipe (`python -m pages.quality`).

The one number to quote: the cross-validated mixed-label ROC AUC of the default recipe with its patient-bootstrap
95% CI, beside the all-source figure it must not be confused with. The report is the whole-film study's
(study/results/whole_film.json), whose fine-tune of the default recipe on the yardstick's folds is what `make train`
quotes; the lever tables are in study/QUALITY.md.
"""

from __future__ import annotations

import argparse

from covid_cxr.evaluation.keys import ALL, MIXED
from pages.blocks import README, REPO_ROOT, Artefact, Block, fill
from study.quality_markdown import auc_with_ci

TARGET = 0.80  # the project's goal for the mixed-label ROC AUC (a goal, not a measurement)


def body(result: Artefact) -> str:
    headline = result["headline"]
    mixed = headline["metrics"][MIXED]
    return fill(
        "quality.md",
        {
            "setting": headline["setting"],
            "mixed": auc_with_ci(mixed, ci="95% CI "),
            "folds": result["folds"],
            "mixed_images": result["mixed_images"],
            "sources": ", ".join(result["mixed_sources"]),
            "images": int(headline["metrics"][ALL]["n"]),
            "every": auc_with_ci(headline["metrics"][ALL], ci="95% CI "),
            "date": result["machine"]["date"],
            "target": f"{TARGET:.2f}",
            "reached": "reached" if mixed["roc_auc_low"] >= TARGET else "not reached",
        },
    )


BLOCK = Block("quality", README, REPO_ROOT / "study" / "results" / "whole_film.json", "python -m pages.quality", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    BLOCK.write()
    print(f"the quality headline of {BLOCK.page.name} written from {BLOCK.source.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
