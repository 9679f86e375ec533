"""docs/audit.json, docs/audit_*.png and the audit block of docs/audit.md, from `covid-cxr audit` output folders.

    python -m pages.audit --audit "DINOv2-S fine-tune=build/audit-model" --audit "MobileNetV2=build/audit-mobilenet"

Each folder's audit.json is copied into docs/audit.json (committed) under its name, the side-by-side plot is drawn
from those figures and the example film copied from the first audit; the block is rendered from docs/audit.json,
so the page quotes the audits and never a hand-typed figure. The page's planted block (PLANTED) is rendered here too,
from study/planted.py's artefact, by that study.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from covid_cxr.audit.occlusion import LUNGS_HIDDEN, LUNGS_ONLY, VIEW_NAMES, VIEWS
from covid_cxr.audit.plots import SUBSET_NAMES, plot_occlusion
from covid_cxr.audit.report import (
    OCCLUSION_PLOT,
    STRATIFIER_WORDS,
    VIEWS_PLOT,
    looks,
    number,
    signed,
    within_sentence,
)
from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.evaluation.keys import ALL, MIXED
from pages.blocks import DOCS, REPO_ROOT, Artefact, Block, fill


def figure_rows(audits: dict[str, dict]) -> list[list[str]]:
    """One row per figure, one column per model."""
    rows = []
    for subset in (ALL, MIXED):
        entries = [a["occlusion"][subset] for a in audits.values()]
        counts = [f"{e['n']} ({e['n_covid']})" for e in entries]
        rows.append([f"**{SUBSET_NAMES[subset]}**: images (COVID-19)", *counts])
        rows += [[f"ROC AUC, {VIEW_NAMES[v]}", *[number(e[v]["roc_auc"]) for e in entries]] for v in VIEWS]
        rows += [
            [f"change, {VIEW_NAMES[v]} vs whole", *[signed(e[v]["change"]) for e in entries]]
            for v in (LUNGS_ONLY, LUNGS_HIDDEN)
        ]
        kept = [number(e[LUNGS_HIDDEN]["kept"], "{:.0%}") for e in entries]
        rows.append(["discrimination kept, lungs hidden", *kept])
    rows.append(["source alone predicts the label: ROC AUC", *[number(a["source_only"]) for a in audits.values()]])
    probes = [a["source_probe"] for a in audits.values()]
    read = [f"{p['source_accuracy']:.0%} ({p['source_majority_baseline']:.0%})" for p in probes]
    rows.append(["source read from the model's features (always the commonest source)", *read])
    return rows


def inside_rows(audits: dict[str, dict]) -> list[list[str]]:
    """The projection, sex and age rows (audit.json's "strata") and the projection probe, where measured."""
    rows = []
    for name, words in STRATIFIER_WORDS.items():
        entries = [(a["strata"] or {}).get(name) for a in audits.values()]
        if not any(entries):
            continue
        subset = SUBSET_NAMES[next(a["strata"]["subset"] for a in audits.values() if a["strata"])]
        counts = [f"{e['n']} ({e['n_covid']})" if e else "n/a" for e in entries]
        rows.append([f"**{words}**, {subset} where recorded: images (COVID-19)", *counts])
        rows += [
            [label, *[number(e[key]) if e else "n/a" for e in entries]]
            for label, key in (
                ("ROC AUC, all pairs", "roc_auc"),
                ("ROC AUC, same-stratum pairs only", "within"),
                ("the stratum alone predicts the label: ROC AUC", "alone"),
            )
        ]
    probes = [a["projection_probe"] for a in audits.values()]
    if any(probes):
        read = [
            f"{p['projection_accuracy']:.0%} ({p['projection_majority_baseline']:.0%})" if p else "n/a" for p in probes
        ]
        rows.append(["projection read from the model's features (always the commoner projection)", *read])
    return rows


def verdict_lines(audits: dict[str, dict]) -> list[str]:
    """The occlusion test's verdict per model and subset."""
    return [
        f"- **{name}**, on {SUBSET_NAMES[subset]}: {looks(a['occlusion'][subset])}."
        for name, a in audits.items()
        for subset in (ALL, MIXED)
    ]


def within_lines(audits: dict[str, dict]) -> list[str]:
    """What comparing films of one projection only does to each model's figure."""
    lines = []
    for name, a in audits.items():
        if (a["strata"] or {}).get("projection"):
            where = SUBSET_NAMES[a["strata"]["subset"]]
            sentence = within_sentence(a["strata"]["projection"], "projection")
            lines.append(f"- **{name}**, on {where}: {sentence[0].lower()}{sentence[1:]}")
    return lines


def scored_counts(audits: dict[str, dict]) -> str:
    """How many images each audit scored and refused, in one line."""
    return "; ".join(
        f"{n}: {a['data']['n_scored']} images scored, {len(a['refused'])} refused" for n, a in audits.items()
    )


def body(artefact: Artefact) -> str:
    audits = artefact["audits"]
    first = next(iter(audits.values()))
    data = first["data"]
    names = [f"{name} (`{a['model']['id']}`)" for name, a in audits.items()]
    return fill(
        "audit.md",
        {
            "title": " and ".join(audits) + ", side by side",
            "date": first["date"],
            "data": f"`{data['name']}`",
            "split": data["split"],
            "counts": scored_counts(audits),
            "lungs": first["lungs"],
            "rounds": first["settings"]["bootstrap_rounds"],
            "mixed": ", ".join(data["mixed_sources"]),
            "table": markdown_rows(["", *names], figure_rows(audits) + inside_rows(audits)),
            "verdicts": "\n".join(verdict_lines(audits) + within_lines(audits)),
        },
    )


BLOCK = Block("audit", DOCS / "audit.md", DOCS / "audit.json", "python -m pages.audit", body)
PLANTED_PLOT = "audit_planted.png"


def planted_body(artefact: Artefact) -> str:
    """study/planted.py's two audits: the fine-tune that learnt a planted square and its control."""
    audits, squares = artefact["audits"], artefact["squares"]
    first = next(iter(audits.values()))
    return fill(
        "planted.md",
        {
            "date": artefact["date"],
            "machine": artefact["machine"],
            "side": f"{artefact['square']:.0%}",
            "margin": f"{artefact['margin']:.0%}",
            "split": first["data"]["split"],
            "counts": scored_counts(audits),
            "outside": squares["outside"],
            "with_lungs": squares["with_lungs"],
            "films": squares["films"],
            "rounds": first["settings"]["bootstrap_rounds"],
            "table": markdown_rows(["", *audits], figure_rows(audits)),
            "plot": PLANTED_PLOT,
            "verdicts": "\n".join(verdict_lines(audits)),
        },
    )


def plot_audits(audits: dict[str, dict], file_name: str) -> None:
    """docs/`file_name`: the audits' occlusion figures side by side."""
    plot_occlusion({name: a["occlusion"] for name, a in audits.items()}, DOCS / file_name)


PLANTED = Block("planted", DOCS / "audit.md", REPO_ROOT / "study" / "results" / "planted.json",
                "python -m study.planted", planted_body)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--audit",
        action="append",
        required=True,
        metavar="NAME=FOLDER",
        help="A model's name on the page and its audit folder (covid-cxr audit --output_dir).",
    )
    args = parser.parse_args()
    folders = dict(item.split("=", 1) for item in args.audit)
    audits = {name: json.loads((Path(folder) / "audit.json").read_text()) for name, folder in folders.items()}
    if any(a["occlusion"] is None for a in audits.values()):
        parser.error("every audit must have run the occlusion test (covid-cxr audit --lung_segmenter ...)")
    artefact = {"audits": audits}
    BLOCK.source.write_text(json.dumps(artefact, indent=2) + "\n")
    plot_audits(audits, OCCLUSION_PLOT)
    shutil.copyfile(Path(next(iter(folders.values()))) / VIEWS_PLOT, DOCS / VIEWS_PLOT)
    BLOCK.write(artefact)
    print(f"{BLOCK.source.name}, {OCCLUSION_PLOT}, {VIEWS_PLOT} and the audit block of {BLOCK.page.name} written")


if __name__ == "__main__":
    main()
