"""The quality yardstick (`make quality`): which recipes tell COVID-19 from other chest X-rays, measured honestly.

Patient-grouped k-fold cross-validation over the whole curated set (folds dealt like the splits: whole
`patient_group`s, stratified by source x label). Every image is scored once by a model that never saw its patient,
so the headline, the pooled out-of-fold ROC AUC on the mixed-label sources (the only ones where recognising the
hospital does not give the label away), rests on every mixed-label image instead of the test split's share, with a
patient-level bootstrap 95% CI. Beside it: all-source AUC, per source, sensitivity/specificity at the threshold
each round chose on its own validation fold, ECE, leave-one-source-out, and how much the figures move between
seeds.

Levers are rows (study.levers). Fast ones run as linear probes on frozen features (cached under
--output_root/features); the fine-tune rows run the default recipe of `train/finetune.py` once per round
(resumable). Each lever's change in mixed-label AUC comes with a paired patient-bootstrap 95% CI: a lever helps
only if that interval lies above zero. Writes study/results/quality.json, whose headline records the recipe,
backbone and dataset digest it measured (what `train/finetune.py --cross_validation_report` checks before the
card quotes it), and study/QUALITY.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from covid_cxr.cards.cross_validation import HEADLINE
from covid_cxr.evaluation.grouped import MIXED
from devtools.measuring import machine
from study.folds import FoldScorer, dataset_folds
from study.levers import (
    FINETUNE_LEVERS,
    finetune_folder,
    finetune_rows,
    headline_of,
    leave_one_source_out,
    probe_rows,
)
from study.quality_markdown import auc_with_ci, render, verdict
from study.yardstick import DINO, Settings, Yardstick

STUDY_DIR = Path(__file__).resolve().parent
RESULTS_DIR = STUDY_DIR / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data and models")
    data.add_argument("--dataset", default="build/dataset", help="The built dataset (`make data`).")
    data.add_argument("--backbones", default="build/backbones", help="Converted backbones (`make backbone`).")
    data.add_argument("--lungs", default="build/lungs", help="Lung segmenter (`make lungs`) for the lung-focus row.")
    data.add_argument("--output_root", default="build/quality", help="Cached features and fine-tune rounds.")
    folds = parser.add_argument_group("cross-validation")
    folds.add_argument("--folds", type=int, default=5)
    folds.add_argument("--fold_seed", type=int, default=42)
    folds.add_argument("--spread_fold_seed", type=int, default=7, help="Second dealing of the folds (spread).")
    folds.add_argument("--rounds", type=int, default=2000, help="Bootstrap resamples.")
    folds.add_argument("--target_sensitivity", type=float, default=0.90)
    levers = parser.add_argument_group("levers")
    levers.add_argument("--image_size", type=int, default=168, help="The default recipe's input side.")
    levers.add_argument("--resolutions", type=int, nargs="+", default=[168, 224, 336, 448])
    levers.add_argument("--finetune_seeds", type=int, nargs="*", default=[42, 1], help="Empty: probes only.")
    levers.add_argument("--finetune_epochs", type=float, default=None, help="Fewer epochs than the default's.")
    levers.add_argument(
        "--finetune_levers",
        nargs="*",
        choices=sorted(FINETUNE_LEVERS),
        default=list(FINETUNE_LEVERS),
        help="Fine-tune levers to run with the first seed (each costs about a default fine-tune or more).",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output", default=str(RESULTS_DIR / "quality.json"))
    output.add_argument("--markdown", default=str(STUDY_DIR / "QUALITY.md"))
    return parser.parse_args()


def spread_lines(
    y: Yardstick, tuned: list[dict], reference: dict, reference_probe: FoldScorer, spread_fold_seed: int
) -> list[str]:
    """Each default fine-tune's figures, and the reference probe's on the folds dealt again."""
    folds, fold_seed = y.args.folds, y.args.fold_seed
    spread = [
        f"{s['setting']}: mixed-label ROC AUC {auc_with_ci(s['metrics'][MIXED])}, "
        f"all sources {auc_with_ci(s['metrics']['all'])}"
        for s in tuned
    ]
    dealt_again = dataset_folds(y.dataset, folds, spread_fold_seed)
    other = y.summary(y.row("reference", "", reference_probe, 0.0, folds=dealt_again), None)
    spread.append(
        f"The reference probe with the folds dealt again (fold seed {spread_fold_seed} instead of "
        f"{fold_seed}): mixed-label ROC AUC {auc_with_ci(other['metrics'][MIXED])} against "
        f"{auc_with_ci(reference['metrics'][MIXED])}."
    )
    return spread


def main() -> dict[str, object]:
    args = parse_args()
    y = Yardstick(Settings.of(args))
    rows = probe_rows(y, args.resolutions)
    plain, _ = y.features(DINO, args.image_size, "plain")
    reference_probe = y.probe(plain)
    rows += finetune_rows(y, reference_probe, args.finetune_seeds, args.finetune_levers)
    summaries = [y.summary(row, rows[0]) for row in rows]
    tuned = [s for s in summaries if "seed_of_default" in s]
    headline = dict(summaries[0], folds=args.folds)  # the reference probe, until a default fine-tune ran
    if tuned:
        seed = tuned[0]["seed_of_default"]
        headline = headline_of(y, tuned[0], finetune_folder(y.root, seed), seed)
    result = {
        "machine": machine(),
        "folds": args.folds,
        "fold_seed": args.fold_seed,
        "images": len(y.labels),
        "mixed_sources": y.mixed_sources,
        "mixed_images": int(y.subsets[MIXED].sum()),
        "bootstrap_rounds": args.rounds,
        "target_sensitivity": args.target_sensitivity,
        HEADLINE: headline,
        "spread": spread_lines(y, tuned, summaries[0], reference_probe, args.spread_fold_seed),
        "leave_one_source_out": leave_one_source_out(y, plain),
        "rows": summaries,
        "verdict": verdict(summaries),
    }
    Path(args.output).write_text(json.dumps(result, indent=2, default=float) + "\n")
    Path(args.markdown).write_text(render(result))
    np.savez(y.root / "out_of_fold.npz", **{f"{r.lever}: {r.setting}": r.out_of_fold.probabilities for r in rows})
    print(render(result))
    return result


if __name__ == "__main__":
    main()
