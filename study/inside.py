"""The default recipe's cross-validated figures inside the mixed-label sources: the projection, the sex, the age.

The whole-film study's fine-tunes of the recipe `make train` runs (study/whole_film.py) left every round's scores
in its cache; this reads them back (each round's key checked against the rows it held out), calibrates each round
on its own validation part as the study does, and measures on the pooled out-of-fold probabilities what
`covid-cxr audit` measures on a test split (covid_cxr.audit.measures.inside): the model's ROC AUC within each
projection, within projections (same-projection pairs only) and of the projection alone, and the same for sex and
age band. No model is trained here. Writes study/results/inside.json and the README's block beside the headline
(`python -m study.inside`; `make whole-film` runs it after the study).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import numpy as np

from covid_cxr.audit.measures import inside
from covid_cxr.data.splits import SPLIT_NAMES
from covid_cxr.evaluation.grouped import mixed_label_sources
from covid_cxr.evaluation.strata import recorded_strata
from covid_cxr.labels import POSITIVE
from devtools.measuring import machine, report
from pages.blocks import README, Block
from study.finetune_rounds import SCORES
from study.folds import calibrate_round, dataset_folds, fold_roles, rows_key
from study.levers import finetune_folder
from study.whole_film import FINETUNES, default_finetune

STUDY_DIR = Path(__file__).resolve().parent
RESULTS = STUDY_DIR / "results" / "inside.json"


def out_of_fold(dataset: datasets.Dataset, folder: Path, dealing: int, target: float) -> np.ndarray:
    """Every film's calibrated P(covid) from the cached round that held it out."""
    labels = (np.asarray(dataset["label"]) == POSITIVE).astype(int)
    folds = dataset_folds(dataset, 5, dealing)
    probabilities = np.full(len(labels), np.nan)
    for k in range(int(folds.max()) + 1):
        _, validation, test = fold_roles(folds, k)
        saved = np.load(folder / f"round-{k}" / SCORES)
        if str(saved["test_key"]) != rows_key(dataset.select(test)):
            raise SystemExit(f"{folder}/round-{k} scored other rows: run python -m study.whole_film first")
        probabilities[test], _ = calibrate_round(saved["validation"], labels[validation], saved["test"], target)
    return probabilities


def body(result: dict) -> str:
    figures = [(dealing, entry["projection"]) for dealing, entry in result["dealings"].items()]
    pairs = "; ".join(
        f"{shown(p['within'])} against {shown(p['roc_auc'])} (dealing {dealing})" for dealing, p in figures
    )
    inside_both = all(within(p["within"], p["roc_auc"]) and within(p["roc_auc"], p["within"]) for _, p in figures)
    first = figures[0][1]
    reading = (
        "each inside the other's 95% CI on every dealing: the projection accounts for little of the model's figure"
        if inside_both
        else "on some dealing one lies outside the other's 95% CI: part of the figure is the projection"
    )
    return (
        f"**Inside the mixed-label sources, compared only with films of the same projection** (AP with AP, PA with "
        "PA: a portable AP film says 'sicker patient' by itself), the same cross-validated model "
        f"({result['recipe']}) scores a mixed-label ROC AUC of {pairs} over all pairs of the same {first['n']} films "
        f"whose projection is recorded; {reading} (the two are not paired, so no CI of their difference). The "
        f"projection alone would score {shown(first['alone'])}. Sex and age: "
        "[study/results/inside.json](study/results/inside.json); the same figures for any model on a test split: "
        "`covid-cxr audit`."
    )


def within(figure: dict, interval: dict) -> bool:
    return interval["low"] <= figure["value"] <= interval["high"]


def shown(figure: dict) -> str:
    return f"{figure['value']:.3f} ({figure['low']:.3f}-{figure['high']:.3f})"


BLOCK = Block("inside", README, RESULTS, "python -m study.inside", body)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="build/dataset", help="The built dataset (`make data`).")
    parser.add_argument("--output_root", default="build/quality", help="The whole-film study's cached rounds.")
    parser.add_argument("--dealings", type=int, nargs="+", default=[42, 7, 1], help="Fold seeds fine-tuned.")
    parser.add_argument("--seed", type=int, default=42, help="The fine-tunes' training seed.")
    parser.add_argument("--rounds", type=int, default=2000, help="Bootstrap resamples.")
    args = parser.parse_args()
    splits = datasets.load_from_disk(args.dataset)
    dataset = datasets.concatenate_datasets([splits[name] for name in SPLIT_NAMES])
    labels = (np.asarray(dataset["label"]) == POSITIVE).astype(int)
    sources, groups = list(dataset["source"]), np.asarray(dataset["patient_group"])
    strata = recorded_strata(dataset)
    mixed = mixed_label_sources(sources, list(labels))
    recipe = default_finetune(json.loads((STUDY_DIR / "results" / "whole_film.json").read_text()))
    dealings = {}
    for dealing in args.dealings:
        folder = finetune_folder(Path(args.output_root), args.seed, recipe, dealing)
        probabilities = out_of_fold(dataset, folder, dealing, 0.90)
        dealings[str(dealing)] = inside(probabilities, labels, sources, groups, strata, mixed, args.rounds)
    result = machine() | {"recipe": FINETUNES[recipe][0], "mixed_sources": mixed, "dealings": dealings}
    report(result, str(RESULTS))
    BLOCK.write(result)
    return result


if __name__ == "__main__":
    main()
