"""The levers the yardstick measures, one row each: frozen-feature probes (resolution, intensity normalisation,
source handling, lung focus, backbone, ensemble, test-time views), then train/finetune.py's default fine-tune
per seed and its levers; and the reference probe with one hospital left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

from covid_cxr.cards.cross_validation import headline_record
from covid_cxr.data.digest import dataset_digest
from covid_cxr.data.sampling import mixed_label_weights
from covid_cxr.data.splits import strata_of
from covid_cxr.evaluation.grouped import MIXED
from covid_cxr.lungs.segmenter import holds_segmenter
from covid_cxr.modeling.backbones import provenance
from covid_cxr.training.arguments import GROUPS, RunArguments
from covid_cxr.training.run import recipe_of
from study.finetune_rounds import SCORES, finetune_scorer
from study.folds import FoldScorer, OutOfFold, calibrate_round, summarise
from study.yardstick import CROPS, DINO, MOBILENET, Row, Settings, Yardstick


def source_label_weights(sources: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """One weight per image, equal total weight per source x label stratum, mean weight 1: the small mixed-label
    strata (ieee8023 and figure1 negatives) then count as much as the NIH negatives."""
    _, inverse, counts = np.unique(strata_of(sources, labels), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights * len(weights) / weights.sum()


def probe_rows(y: Yardstick, resolutions: Sequence[int]) -> list[Row]:
    """Every frozen-feature lever (each of `resolutions` besides the default's side); the first row is the reference
    the others are compared with."""
    size = y.args.image_size
    plain, plain_cost = y.features(DINO, size, "plain")
    rows = [y.row("reference", f"DINOv2-S head only (linear probe), {size} px, whole film", y.probe(plain), plain_cost)]
    for side in resolutions:
        if side != size:
            x, cost = y.features(DINO, side, "plain")
            rows.append(y.row("input resolution", f"{side} px", y.probe(x), cost))
    for method in ("histogram", "clahe"):
        x, cost = y.features(DINO, size, method)
        rows.append(y.row("intensity normalisation", method, y.probe(x), cost))
    mixed = y.subsets[MIXED]
    balanced = source_label_weights(y.sources, y.labels)
    upweighted = mixed_label_weights(mixed, 5.0)
    rows += [
        y.row("source handling", "source x label balanced weights", y.probe(plain, weights=balanced), plain_cost),
        y.row("source handling", "mixed-label sources weighted x5", y.probe(plain, weights=upweighted), plain_cost),
        y.row("source handling", "train on mixed-label sources only", y.probe(plain, train_only=mixed), plain_cost),
    ]
    if holds_segmenter(y.args.lungs):
        blurred, cost = y.features(DINO, size, "lung-blur")
        note = "trained on images blurred outside the lungs, scored on whole images"
        focus = y.probe(blurred, [plain])
        rows.append(y.row("lung focus", "blur outside the lungs (training only)", focus, cost, note))
    mobile, mobile_cost = y.features(MOBILENET, 224, "plain")
    rows.append(y.row("backbone", "MobileNetV2 (nsfwjs start), 224 px", y.probe(mobile), mobile_cost))
    dino_and_mobile = _average(y.probe(plain), y.probe(mobile))
    rows.append(y.row("ensemble", "DINOv2-S + MobileNetV2 probes averaged", dino_and_mobile, plain_cost + mobile_cost))
    crops = [y.features(DINO, size, view) for view in CROPS]
    views = [plain, *(x for x, _ in crops)]
    tta_cost = plain_cost + sum(cost for _, cost in crops)
    note = f"trained on whole images; whole image + {len(CROPS)} crops averaged"
    rows.append(y.row("test-time augmentation", f"{len(views)} views averaged", y.probe(plain, views), tta_cost, note))
    return rows


def _average(*scorers: FoldScorer) -> FoldScorer:
    def scorer(k: int, train: np.ndarray, validation: np.ndarray, test: np.ndarray):
        scored = [s(k, train, validation, test) for s in scorers]
        return np.mean([v for v, _ in scored], axis=0), np.mean([t for _, t in scored], axis=0)

    return scorer


FINETUNE_LEVERS = {  # name: (lever, setting, train/finetune.py options on top of its defaults)
    "blocks4": ("how much trains", "fine-tune the last 4 blocks", ("--trainable_blocks", "4")),
    "llrd": (
        "how much trains",
        "fine-tune all blocks, layer-wise lr decay 0.75",
        ("--trainable_blocks", "-1", "--layer_decay", "0.75"),
    ),
    "mixed5": ("source handling", "fine-tune, mixed-label sources drawn x5", ("--mixed_label_weight", "5")),
    "adversary": (
        "source handling",
        "fine-tune with a gradient-reversal source adversary (scale 0.5)",
        ("--source_adversary", "0.5"),
    ),
    "adversary_ramp": (
        "source handling",
        "fine-tune with a gradient-reversal source adversary (scale 0.5, DANN ramp)",
        ("--source_adversary", "0.5", "--source_adversary_ramp", "true"),
    ),
}


def finetune_rows(y: Yardstick, reference_probe: FoldScorer, seeds: Sequence[int], levers: Sequence[str]) -> list[Row]:
    """The default recipe of train/finetune.py, once per seed of `seeds`, and its average with the probe; then each
    fine-tune lever of `levers` (FINETUNE_LEVERS' names; first seed), compared with the default fine-tune of the
    same seed as well."""
    rows = []
    for seed in seeds:
        row, scorer = _finetune_row(y, "how much trains", f"fine-tune (default recipe), seed {seed}", seed)
        row.seed_of_default = seed
        rows.append(row)
        if seed == seeds[0]:
            note = "probabilities averaged before calibration"
            both = _average(scorer, reference_probe)
            rows.append(y.row("ensemble", f"fine-tune (seed {seed}) + DINOv2-S probe", both, row.cpu_seconds, note))
    if not rows:
        return rows
    seed = seeds[0]
    for name in levers:
        lever, setting, options = FINETUNE_LEVERS[name]
        row, _ = _finetune_row(y, lever, f"{setting}, seed {seed}", seed, name, options)
        row.compared_with = rows[0]
        rows.append(row)
    return rows


def _finetune_row(
    y: Yardstick, lever: str, setting: str, seed: int, name: str = "", options: Sequence[str] = ()
) -> tuple[Row, FoldScorer]:
    """One fine-tune cross-validated, its rounds cached under `finetune_folder`; its cost is what the rounds
    took when they ran."""
    folder = finetune_folder(y.root, seed, name)
    scorer = finetune_scorer(finetune_arguments(y.args, folder, seed, options), y.dataset, folder)
    row = y.row(lever, setting, scorer, 0.0)
    row.cpu_seconds = sum(float(np.load(p)["cpu_seconds"]) for p in folder.glob(f"round-*/{SCORES}"))
    return row, scorer


def finetune_folder(root: Path, seed: int, name: str = "", dealing: int | None = None) -> Path:
    """Where one fine-tune's rounds are cached: output_root/finetune-[name-]seed<seed>[-dealing<fold seed>]."""
    dealt = "" if dealing is None else f"-dealing{dealing}"
    return root / f"finetune-{name + '-' if name else ''}seed{seed}{dealt}"


def recipe_arguments(dataset: str, backbone: str, folder: Path, seed: int, options: Sequence[str] = ()) -> RunArguments:
    """train/finetune.py's defaults, as a user gets them, for one seed, with `options` on top (no linear probe:
    a study measures the fine-tune)."""
    command = ["--output_dir", str(folder), "--seed", str(seed), "--dataset", dataset]
    command += ["--model_name_or_path", backbone, "--linear_probe", "false", *options]
    return RunArguments(*HfArgumentParser(GROUPS).parse_args_into_dataclasses(args=command))


def finetune_arguments(args: Settings, folder: Path, seed: int, options: Sequence[str] = ()) -> RunArguments:
    """The yardstick's fine-tune of the default backbone (recipe_arguments), with the study's epochs if it sets
    fewer."""
    epochs = [] if args.finetune_epochs is None else ["--num_train_epochs", str(args.finetune_epochs)]
    return recipe_arguments(args.dataset, str(Path(args.backbones) / DINO), folder, seed, [*options, *epochs])


def headline_of(y: Yardstick, row: dict, folder: Path, seed: int, options: Sequence[str] = ()) -> dict[str, object]:
    """A fine-tune row as the report's headline, with what it measured, as `train/finetune.py
    --cross_validation_report` checks it before its card quotes the row: the recipe (seed included), the backbone
    and the dataset (covid_cxr.cards.cross_validation)."""
    recipe = recipe_of(finetune_arguments(y.args, folder, seed, options))
    backbone = str(provenance(str(Path(y.args.backbones) / DINO))["description"])
    return headline_record(row, y.args.folds, recipe, backbone, dataset_digest(y.dataset))


def leave_one_source_out(y: Yardstick, features: np.ndarray) -> list[dict[str, object]]:
    """Train the reference probe without one mixed-label source (validation: one fold of the rest), score it."""
    results = []
    for source in y.mixed_sources:
        held_out = np.flatnonzero(y.sources == source)
        rest = np.flatnonzero(y.sources != source)
        validation = rest[y.folds[rest] == 0]
        train = rest[y.folds[rest] != 0]
        val_probs, test_probs = y.probe(features)(0, train, validation, held_out)
        probabilities, threshold = calibrate_round(
            val_probs, y.labels[validation], test_probs, y.args.target_sensitivity
        )
        out_of_fold = OutOfFold(probabilities, np.full(len(held_out), threshold))
        whole = {"all": np.ones(len(held_out), dtype=bool)}
        metrics = summarise(out_of_fold, y.labels[held_out], y.groups[held_out], whole, y.args.rounds)["all"]
        results.append({"source": source, "trained_on": sorted(set(y.sources[rest].tolist()))} | metrics)
    return results
