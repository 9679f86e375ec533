"""Run the studies of a trained model (the scope guard, where it looks) and write
study/RESULTS.md (`make study`). Each also runs on its own: `python -m study.<name> --help`."""

from __future__ import annotations

import argparse
from pathlib import Path

from devtools.measuring import run_all, table

STUDY_DIR = Path(__file__).resolve().parent
RESULTS_DIR = STUDY_DIR / "results"
STUDIES = MODEL_STUDIES = ("scope_guard", "lung_attention")


def guard_section(guard: dict, model: str) -> str:
    lungs = guard.get("lung_check_alone")
    lung_text = ""
    if lungs:
        rejects, caught = lungs["false_rejects"], lungs["caught"]
        lung_text = f"""

The lung-field check on its own (no plausible lung fields on the image as the model sees it; {guard["lungs"]})
refuses {rejects["refused"]} of the {guard["test_xrays"]} test X-rays ({100 * rejects["rate"]:.1f}%) and catches
{caught["refused"]} of the {guard["non_xrays"]} non-X-rays ({100 * caught["rate"]:.0f}%): it is a third layer behind the
pixel and feature checks, not a replacement for them. Test X-rays it refuses:
{", ".join(f"`{name}`" for name in rejects["examples"]) or "none"}.

{table(["image", "lung check alone"], [[name, verdict] for name, verdict in lungs["per_image"].items()])}"""
    return f"""## Space scope guard

The whole guard as the Space runs it: pixel checks, feature distance{", lung fields" if lungs else ""}. Measured
{guard["date"]}. False rejects on the {guard["test_xrays"]} real test X-rays: **{guard["false_rejects"]}
({100 * guard["false_reject_rate"]:.1f}%)**. Caught among {guard["non_xrays"]} non-X-ray images (all
scikit-image sample images, blank frames, a text page, a cropped strip of an X-ray):
**{guard["caught"]} ({100 * guard["catch_rate"]:.0f}%)**.

{table(["image", "verdict"], [[name, verdict] for name, verdict in guard["per_image"].items()])}{lung_text}

Command: `python -m study.scope_guard --model {model}`."""


def attention_section(attention: dict, model: str) -> str:
    rows = [
        [
            r["source"],
            r["label"],
            r["images"],
            r["mean"],
            f"{r['q1']:.2f}-{r['q3']:.2f}",
            r["ratio_median"],
            r["warned"],
        ]
        for r in attention["rows"]
    ]
    focus = (
        "\nThe model was trained lungs first, so each film is measured as it is given it: blurred outside its dilated "
        "lung fields, as in training."
        if attention.get("lungs_first")
        else ""
    )
    return f"""## Where the model looks: Grad-CAM heat inside the lungs (test split)

Model `{model}`, lung fields from `{attention["lungs"]}`; measured {attention["date"]} on {attention["machine"]}.
The share of the COVID-19 Grad-CAM heat that lies inside the lung fields, per image of the test split, and the
ratio of that share to the lungs' share of the image: 1 is a map spread evenly over the film, "no more on the lungs
than elsewhere". The Space, `covid-cxr predict` and the card warn when the ratio is below
{attention["warning_below"]}; the last column is how often that warning fires.{focus}

{table(["source", "label", "images", "mean share", "share quartiles", "median ratio", "warned"], rows)}

![Heat on the lungs against their share of the image, per source and label](../docs/lung_attention.png)

Command: `python -m study.lung_attention --model {model}`."""


def render(results: dict[str, dict], model: str) -> str:
    return f"""# Studies of the trained model

Reproduce everything with `make study` (or one study with the command under its table); each section says
when and where it was measured.

{guard_section(results["scope_guard"], model)}

{attention_section(results["lung_attention"], model)}

## Lungs first

Whether blurring everything outside the lungs, in training and scoring, helps is measured on the cross-validated
yardstick, not on this model's test split: study/WHOLE_FILM.md (`python -m study.whole_film`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="build/model")
    parser.add_argument("--reuse", nargs="*", default=[], choices=STUDIES, help="Keep these results/*.json.")
    args = parser.parse_args()
    results = run_all("study", STUDIES, RESULTS_DIR, args.model, MODEL_STUDIES, args.reuse)
    (STUDY_DIR / "RESULTS.md").write_text(render(results, args.model))
    print(f"Wrote {STUDY_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
