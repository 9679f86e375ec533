"""The whole film, and lungs first (#23): how the film meets the model's input square, and whether blurring
everything outside the lungs, in training *and* scoring, moves the honest number.

Rows, on the yardstick's patient-grouped folds (study.yardstick), each on several fold dealings:
- probes on frozen DINOv2-S features: the backbones' centre crop, the whole film squashed, the whole film padded
  to a square, lungs first (blurred outside the dilated lungs in training and scoring), and lungs at training only;
- fine-tunes of train/finetune.py's recipe on the whole film (--no_lung_focus) and lungs first as one model (the
  focus inside its forward, #35), on the dealings of --finetune_dealings (each round cached and resumable, like
  the yardstick's); the rows of lungs first as it was trained before (films blurred at full resolution before the
  model saw them, `--lung_focus` then) stay on record.
Beside them: the share of the segmenter's lung pixels inside the model's view under each framing, and how well
frozen features read the source under each. Writes study/results/whole_film.json and study/WHOLE_FILM.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from covid_cxr.cards.cross_validation import HEADLINE
from covid_cxr.evaluation.grouped import MIXED
from covid_cxr.evaluation.probes import source_probe
from covid_cxr.lungs.dataset_masks import MASK_COLUMN
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.model_folder import OCCLUSION_RESULTS, read_config, read_results
from covid_cxr.modeling.lungs_first import MODEL_TYPE as LUNGS_FIRST_MODEL
from devtools.measuring import machine
from study.finetune_rounds import SCORES, finetune_scorer
from study.folds import dataset_folds
from study.levers import finetune_arguments, finetune_folder, headline_of
from study.whole_film_markdown import HEAT_IN_LUNGS, MEASURED, SOURCE_READ, TRAINED_ROWS, WARNED, changes_of, render
from study.yardstick import DINO, Row, Settings, Yardstick

STUDY_DIR = Path(__file__).resolve().parent
CROP_KEEPS = 7 / 8  # the centre crop keeps side / (side x 8/7) of the short side (study.yardstick.centre_crop)
PROBES = {  # setting: (features trained on, features scored on), as (view, centre-cropped)
    "centre crop": (("plain", True), ("plain", True)),
    "whole film, squashed": (("plain", False), ("plain", False)),
    "whole film, padded to a square": (("pad", False), ("pad", False)),
    "lungs first (blurred outside the lungs in training and scoring)": (("lung-blur", False), ("lung-blur", False)),
    "lungs at training only (scored on whole films)": (("lung-blur", False), ("plain", False)),
}
SQUASHED, PADDED = "whole film, squashed", "whole film, padded to a square"
LUNGS_FIRST = "lungs first (blurred outside the lungs in training and scoring)"
COMPARISONS = (  # (row, baseline): the changes the verdict rests on
    (SQUASHED, "centre crop"),
    (PADDED, SQUASHED),
    (LUNGS_FIRST, SQUASHED),
    ("lungs at training only (scored on whole films)", SQUASHED),
)
WHOLE_FILM_TUNE, LUNGS_FIRST_TUNE = "whole film", "lungs first (--lung_focus)"
# Lungs first as one model (#35): the focus inside the model's forward, at its input resolution. The row above
# measured the earlier recipe, which blurred each film at full resolution before the model saw it; it stays on
# record, and no longer runs.
IN_MODEL_TUNE = "lungs first, in the model"
FINETUNES = {  # name: (row, finetune options beside --lung_segmenter)
    "whole-film": (WHOLE_FILM_TUNE, ("--no_lung_focus",)),
    "lungs-in-model": (IN_MODEL_TUNE, ()),
}


def recipe_options(y: Yardstick, options: tuple[str, ...]) -> tuple[str, ...]:
    """A FINETUNES recipe's options as its rounds ran and as its headline records them: beside the segmenter."""
    return (*options, "--lung_segmenter", y.args.lungs)


def lungs_in_crop(y: Yardstick) -> dict[str, object]:
    """Per image, the share of its segmented lung pixels that the centre crop keeps (the whole film keeps all).

    The masks are the whole film squashed to a square (covid_cxr.lungs.dataset_masks), so the crop's box is the
    same fraction of the mask as of the film: the short side is kept whole, the long one to CROP_KEEPS of the
    short side, centred."""
    masked = y.with_masks()
    kept = np.zeros(masked.num_rows)
    for i in tqdm(range(masked.num_rows), desc="Lungs inside the crop", unit="img"):
        row = masked[i]
        width, height = row["image"].size
        lungs = np.asarray(row[MASK_COLUMN], dtype=bool)
        short = CROP_KEEPS * min(width, height)
        box_w, box_h = min(1.0, short / width), min(1.0, short / height)
        side = lungs.shape[0]
        left, top = round(side * (1 - box_w) / 2), round(side * (1 - box_h) / 2)
        inside = lungs[top : side - top, left : side - left].sum()
        kept[i] = inside / lungs.sum() if lungs.sum() else 1.0
    by_source = {
        source: {"images": int((y.sources == source).sum()), "mean": float(kept[y.sources == source].mean())}
        for source in sorted(set(y.sources))
    }
    return {
        "images": len(kept),
        "mean": float(kept.mean()),
        "min": float(kept.min()),
        "below_95": float((kept < 0.95).mean()),
        "by_source": by_source,
    }


def source_readout(y: Yardstick, features: np.ndarray, folds: np.ndarray) -> float:
    """Out-of-fold accuracy of a linear probe telling the source from frozen features (the shortcut's strength)."""
    correct = 0.0
    for k in range(int(folds.max()) + 1):
        train, test = folds != k, folds == k
        scored = source_probe(features[train], list(y.sources[train]), features[test], list(y.sources[test]))
        correct += scored["source_accuracy"] * test.sum()
    return correct / len(folds)


def probe_rows(y: Yardstick, folds: np.ndarray) -> dict[str, Row]:
    rows = {}
    for setting, (trained, scored) in PROBES.items():
        train_x, cost = y.features(DINO, y.args.image_size, *trained)
        eval_x, eval_cost = y.features(DINO, y.args.image_size, *scored)
        scorer = y.probe(train_x, [eval_x])
        rows[setting] = y.row("probe", setting, scorer, cost + (eval_cost if scored != trained else 0), folds=folds)
    return rows


def finetune_rows(y: Yardstick, folds: np.ndarray, dealing: int, recipes: list[str], seed: int) -> dict[str, Row]:
    """The `recipes` (FINETUNES' names), fine-tuned in each round of one dealing (cached per round)."""
    lungs = LungSegmenter.from_pretrained(y.args.lungs)
    rows = {}
    for name in recipes:
        setting, options = FINETUNES[name]
        folder = finetune_folder(y.root, seed, name, dealing)
        arguments = finetune_arguments(y.args, folder, seed, recipe_options(y, options))
        scorer = finetune_scorer(arguments, y.dataset, folder, lungs)
        row = y.row("fine-tune", setting, scorer, 0.0, folds=folds)
        row.cpu_seconds = sum(float(np.load(p)["cpu_seconds"]) for p in folder.glob(f"round-*/{SCORES}"))
        rows[setting] = row
    return rows


def dealing_summary(y: Yardstick, rows: dict[str, Row], comparisons: tuple[tuple[str, str], ...]) -> dict:
    """Each row's metrics, and each comparison's change in mixed-label ROC AUC with its paired 95% CI."""
    summaries = {setting: y.summary(row, None) for setting, row in rows.items()}
    changes = []
    for setting, baseline in comparisons:
        if setting in rows and baseline in rows:
            change = summaries[setting]["metrics"][MIXED]["roc_auc"] - summaries[baseline]["metrics"][MIXED]["roc_auc"]
            low, high = y.change_ci(rows[setting], rows[baseline])
            changes.append({"row": setting, "baseline": baseline, "change": change, "ci95": [low, high]})
    return {"rows": summaries, "changes": changes}


TRAINED_FIGURES = tuple(key for key, _ in TRAINED_ROWS)  # a trained model's shortcut figures (test split)
MIN_DEALINGS = 3  # the rule: a default changes only on fine-tune evidence from at least three fold dealings


def lungs_first_adopted(result: dict[str, object]) -> bool:
    """The issue's rule: a positive fine-tune change on every one of at least MIN_DEALINGS dealings, and the source
    read less well from lungs-first features than from the whole film's."""
    tuned_changes = changes_of(result.get("finetunes", {}), LUNGS_FIRST_TUNE)
    readout = result["source_readout"]
    return (
        len(tuned_changes) >= MIN_DEALINGS
        and all(c > 0 for c in tuned_changes)
        and readout[LUNGS_FIRST] < readout[SQUASHED]
    )


def default_finetune(result: dict[str, object]) -> str:
    """The FINETUNES recipe `make train` runs by the rule: lungs first (now the one model) once adopted, else the
    whole film."""
    return "lungs-in-model" if lungs_first_adopted(result) else "whole-film"


def verdict(result: dict[str, object]) -> list[str]:
    """The framing and the lungs-first decision, by the rules the study was set, in words."""
    probes, tuned = result["probes"], result.get("finetunes", {})
    padded, whole = changes_of(probes, PADDED), changes_of(probes, SQUASHED)
    readout = result["source_readout"]
    framing = (
        f"Framing: **{SQUASHED}**, the default recipe's. Against the centre crop it changed the mixed-label ROC AUC "
        f"by {', '.join(f'{c:+.3f}' for c in whole)} on the probes' dealings, and it lets the source be read "
        f"{'more' if readout[SQUASHED] > readout['centre crop'] else 'no more'} easily from frozen features "
        f"({readout['centre crop']:.1%} with the crop, {readout[SQUASHED]:.1%} whole). Padding to a square changed "
        "the mixed-label ROC AUC by "
        + ", ".join(f"{c:+.3f}" for c in padded)
        + " against squashing on the probes' dealings; "
    )
    pad_wins = all(c > 0 for c in padded) and any(
        c["ci95"][0] > 0 for summary in probes.values() for c in summary["changes"] if c["row"] == PADDED
    )
    framing += (
        "that is a gain on every dealing, so padding should replace squashing."
        if pad_wins
        else "not a gain on every dealing, so the framing `pipeline()` applies with a standard image processor "
        "(squash, no crop) stays."
    )
    probe_changes = changes_of(probes, LUNGS_FIRST)
    tuned_changes = changes_of(tuned, LUNGS_FIRST_TUNE)
    lungs = (
        "Lungs first: probes "
        + ", ".join(f"{c:+.3f}" for c in probe_changes)
        + f" against the whole film; source read from frozen features {readout[SQUASHED]:.1%} whole, "
        f"{readout[LUNGS_FIRST]:.1%} lungs first; fine-tunes "
        + (
            ", ".join(f"{c:+.3f}" for c in tuned_changes) + f" on {len(tuned_changes)} dealing(s). "
            if tuned_changes
            else "not run yet for lungs first. "
        )
    )
    if lungs_first_adopted(result):
        lungs += "Positive on every fine-tuned dealing with the shortcut weaker: **lungs first is the default**."
    elif len(tuned_changes) < MIN_DEALINGS:
        lungs += (
            f"The rule needs a positive fine-tune change on at least {MIN_DEALINGS} dealings, so **lungs first stays "
            "an option** (`--lung_focus`), not the default, until they are measured."
        )
    else:
        lungs += "Not positive on every fine-tuned dealing: **lungs first stays an option** (`--lung_focus`)."
    return [framing, lungs, *in_model_verdict(tuned), *trained_verdict(result.get("trained_models", {}))]


def in_model_verdict(tuned: dict[str, dict]) -> list[str]:
    """The one lungs-first model (#35) beside the rows it replaces, dealing by dealing. Unpaired: the other rows'
    round scores were not kept, so each figure is read against the others' 95% CIs, never as a change."""
    dealings = {d: s["rows"] for d, s in tuned.items() if IN_MODEL_TUNE in s.get("rows", {})}
    if not dealings:
        return []
    others = (LUNGS_FIRST_TUNE, WHOLE_FILM_TUNE)
    inside = sum(
        all(
            _inside(rows[IN_MODEL_TUNE], rows[o]) and _inside(rows[o], rows[IN_MODEL_TUNE]) for o in others if o in rows
        )
        for rows in dealings.values()
    )

    def listed(setting: str) -> str:
        return ", ".join(
            f"{rows[setting]['metrics'][MIXED]['roc_auc']:.3f}" for rows in dealings.values() if setting in rows
        )

    return [
        f"Lungs first as one model (the focus inside its forward pass, at its input resolution): mixed-label ROC AUC "
        f"{listed(IN_MODEL_TUNE)} on dealing(s) {', '.join(dealings)}, where lungs first blurred at full resolution "
        f"before the model gave {listed(LUNGS_FIRST_TUNE)} and the whole film {listed(WHOLE_FILM_TUNE)}. "
        f"On {inside} of {len(dealings)} dealing(s) the one model's figure lies inside both other rows' 95% CIs and "
        "theirs inside its, so the one model "
        + ("neither gains nor loses what this data can measure" if inside == len(dealings) else "differs on some")
        + "; the comparison is unpaired (the earlier rows' round scores were not kept), so it has no paired CI."
    ]


def _inside(row: dict, other: dict) -> bool:
    """Whether one row's mixed-label ROC AUC lies inside another's 95% CI."""
    mine, theirs = row["metrics"][MIXED], other["metrics"][MIXED]
    return theirs["roc_auc_low"] <= mine["roc_auc"] <= theirs["roc_auc_high"]


def trained_verdict(models: dict[str, dict]) -> list[str]:
    """The shortcut figures of the model `make train` wrote with each recipe, whole film against lungs first, in
    words: one test split each, so a direction, not a measured gain."""
    if not {"whole-film", "lungs-first"} <= set(models):
        return []
    whole, lungs = models["whole-film"]["figures"], models["lungs-first"]["figures"]
    pairs = (
        ("source read from the frozen features", SOURCE_READ, "{:.1%}", -1),
        ("heat inside the lungs", HEAT_IN_LUNGS, "{:.1%}", 1),
        ("attention warning", WARNED, "{:.1%}", -1),
        ("discrimination kept with the lungs hidden", "all_lungs_hidden_kept", "{:.0%}", -1),
    )
    said, better = [], 0
    for words, key, pattern, sign in pairs:
        if whole.get(key) is None or lungs.get(key) is None:
            continue
        said.append(f"{words} {pattern.format(whole[key])} → {pattern.format(lungs[key])}")
        better += (sign * (lungs[key] - whole[key])) > 0
    return [
        "The trained models (`make train` with each recipe, one test split each, no CI on these gaps): "
        + "; ".join(said)
        + f". Lungs first reads less of the shortcut on {better} of these {len(said)} figures."
    ]


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="build/dataset", help="The built dataset (`make data`).")
    parser.add_argument("--backbones", default="build/backbones", help="Converted backbones (`make backbone`).")
    parser.add_argument("--lungs", default="build/lungs", help="Lung segmenter (`make lungs`).")
    parser.add_argument("--output_root", default="build/quality", help="Cached features and fine-tune rounds.")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--dealings", type=int, nargs="+", default=[42, 7, 1, 2], help="Fold seeds for the probes.")
    parser.add_argument("--finetune_dealings", type=int, nargs="*", default=[42, 7, 1], help="Fold seeds to fine-tune.")
    parser.add_argument(
        "--finetune_recipes", nargs="+", choices=list(FINETUNES), default=list(FINETUNES), help="Recipes to fine-tune."
    )
    parser.add_argument("--seed", type=int, default=42, help="The fine-tunes' training seed.")
    parser.add_argument("--finetune_epochs", type=float, default=None, help="Fewer epochs than the default's.")
    parser.add_argument("--image_size", type=int, default=168, help="The default recipe's input side.")
    parser.add_argument("--rounds", type=int, default=2000, help="Bootstrap resamples.")
    parser.add_argument("--target_sensitivity", type=float, default=0.90)
    parser.add_argument("--output", default=str(STUDY_DIR / "results" / "whole_film.json"))
    parser.add_argument("--markdown", default=str(STUDY_DIR / "WHOLE_FILM.md"))
    parser.add_argument("--render", action="store_true", help="Only write --markdown again from --output.")
    parser.add_argument(
        "--reuse_probes", action="store_true", help="Keep the probes of --output; measure the fine-tunes only."
    )
    parser.add_argument(
        "--trained",
        nargs="+",
        metavar="NAME=FOLDER",
        help="Only record, beside --output's rows, the shortcut figures that `make train` measured on the test "
        "split of each trained model folder (e.g. whole-film=build/model-whole-film lungs-first=build/model).",
    )
    args = parser.parse_args()
    args.fold_seed = args.dealings[0]
    if args.render or args.trained:
        result = json.loads(Path(args.output).read_text())
        for name, folder in (item.split("=", 1) for item in args.trained or ()):
            result.setdefault("trained_models", {})[name] = trained_shortcuts(Path(folder))
        _save(result, args)
        return result

    y = Yardstick(Settings.of(args))
    result = json.loads(Path(args.output).read_text()) if args.reuse_probes else probe_result(y, args)
    _save(result, args)  # the probes are on record before the first fine-tune starts
    tuned = result.setdefault("finetunes", {})
    for dealing in args.finetune_dealings:
        folds = dataset_folds(y.dataset, args.folds, dealing)
        rows = finetune_rows(y, folds, dealing, args.finetune_recipes, args.seed)
        summary = dealing_summary(y, rows, ((IN_MODEL_TUNE, WHOLE_FILM_TUNE), (IN_MODEL_TUNE, LUNGS_FIRST_TUNE)))
        if len(rows) < len(FINETUNES):  # one recipe: beside the other's recorded row, without a paired change
            recorded = tuned.get(str(dealing), {"rows": {}, "changes": []})
            summary = {**recorded, "rows": recorded["rows"] | summary["rows"]}
        tuned[str(dealing)] = summary
        _save(result, args)  # a finished dealing is on record before the next starts
    default = headline(y, args, result)
    if default:
        result[HEADLINE] = default
        _save(result, args)
    return result


def headline(y: Yardstick, args: argparse.Namespace, result: dict[str, object]) -> dict[str, object] | None:
    """The fine-tune of the recipe `make train` runs (lungs first once the rule adopted it, else the whole film) on
    the yardstick's dealing, with what it measured, so that a card of that recipe may quote it; None before it ran."""
    name = default_finetune(result)
    setting, options = FINETUNES[name]
    rows = result.get("finetunes", {}).get(str(args.dealings[0]), {}).get("rows", {})
    if setting not in rows:
        return None
    folder = finetune_folder(y.root, args.seed, name, args.dealings[0])
    written = max(p.stat().st_mtime for p in folder.glob(f"round-*/{SCORES}"))  # when its rounds were trained
    measured = machine() | {"date": datetime.fromtimestamp(written, UTC).date().isoformat()}
    record = rows[setting] | {"seed_of_default": args.seed, MEASURED: measured}
    return headline_of(y, record, folder, args.seed, recipe_options(y, options))


def trained_shortcuts(folder: Path) -> dict[str, object]:
    """What one trained model folder measured of its shortcuts on its test split (all_results.json and the
    occlusion test beside it): the source read from the frozen backbone's features of the images it saw, where its
    Grad-CAM heat lies against the lungs, and what hiding the lungs leaves of its discrimination."""
    results = read_results(folder)
    occlusion = json.loads((folder / OCCLUSION_RESULTS).read_text())
    config = read_config(folder)
    figures = {key: results.get(key) for key in TRAINED_FIGURES}
    for subset, measured in occlusion.items():
        figures[f"{subset}_lungs_hidden_kept"] = measured["lungs_hidden_kept"]["value"]
        figures[f"{subset}_lungs_hidden_kept_shown"] = measured["shown"]["lungs_hidden_kept"]
    return {"lungs_first": config.get("model_type") == LUNGS_FIRST_MODEL, "figures": figures}


def probe_result(y: Yardstick, args: argparse.Namespace) -> dict[str, object]:
    """Lungs inside the crop, the source read out under each framing, and every probe row on every dealing."""
    result: dict[str, object] = {"machine": machine(), "folds": args.folds, "mixed_sources": y.mixed_sources}
    result["mixed_images"] = int(y.subsets[MIXED].sum())
    result["lungs_in_crop"] = lungs_in_crop(y)
    folds = {dealing: dataset_folds(y.dataset, args.folds, dealing) for dealing in args.dealings}
    result["source_readout"] = {
        setting: source_readout(y, y.features(DINO, args.image_size, *PROBES[setting][0])[0], folds[args.dealings[0]])
        for setting in ("centre crop", SQUASHED, LUNGS_FIRST)
    }
    result["probes"] = {str(d): dealing_summary(y, probe_rows(y, folds[d]), COMPARISONS) for d in args.dealings}
    return result


def _save(result: dict[str, object], args: argparse.Namespace) -> None:
    result["verdict"] = verdict(result)
    Path(args.output).write_text(json.dumps(result, indent=2, default=float) + "\n")
    Path(args.markdown).write_text(render(result))


if __name__ == "__main__":
    main()
