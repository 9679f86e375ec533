"""How many films the scope guard must be fitted on: its false refusals of real frontal chest X-rays, per source,
for guards fitted on 10, 30, 100 and all of the validation split's films, and under the rule the package follows.

A user who trains on a few dozen of their own films gets a validation split of ten or so; a guard fitted on so
few learns what "a chest X-ray" looks like from too few examples (each feature dimension is standardised by the
spread of those few films) and turns real films away. Each row draws its validation films at random (several
draws, the same seeds for every rule; under the rule, the training films that top them up are drawn too, from a
pool of TRAIN_POOL, or from SMALL_TRAIN of them for a small collection), fits the guard as a fine-tune does
(covid_cxr.modeling.scope_guard), and scores every test film of the trained model's dataset: all of them are real
frontal chest X-rays, so every refusal is a false one. The catch rate is the feature check's among the non-X-ray
images of study/scope_guard.py that the pixel checks let through (what the feature check is for). Writes
study/results/guard_size.json and the table of docs/scope_guard.md (`python -m study.guard_size`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import numpy as np

from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.modeling.inference import load_folder, run_model
from covid_cxr.modeling.scope_guard import MIN_REFERENCES, ScopeGuard, pixel_reason, references
from devtools.measuring import machine, report
from pages.blocks import DOCS, Block
from study.scope_guard import non_xray_images

RESULTS = Path(__file__).resolve().parent / "results" / "guard_size.json"
SIZES = (10, 30, 100)  # validation films drawn; the whole split is a row of its own
TRAIN_POOL = 300  # training films whose features the draws are made from
SMALL_TRAIN = 40  # training films a user with about sixty films in all would have beside ten validation films


def features(model: object, processor: object, images: list, desc: str) -> np.ndarray:
    return run_model(model, processor, images, 32, desc=desc, scope=True).scope


def drawn(train: np.ndarray, available: int, n: int, seed: int) -> np.ndarray:
    """At most n training films, drawn at random (with the draw's seed) from `available` of them: a user's training
    split of that size."""
    pool = np.random.default_rng(1000 + seed).permutation(len(train))[:available]
    return train[pool[:n]]


def refusals(guard: ScopeGuard, test: np.ndarray, sources: np.ndarray, others: np.ndarray) -> dict[str, float]:
    """Share of test films refused, overall and per source, and share of the non-X-rays caught."""
    refused = guard.scores(test) > guard.threshold
    shares = {"all": float(refused.mean())} | {str(s): float(refused[sources == s].mean()) for s in np.unique(sources)}
    return shares | {"caught": float((guard.scores(others) > guard.threshold).mean())}


def row(rule: str, validation: int, draws: list[dict[str, float]], references_used: int) -> dict[str, object]:
    """The mean over draws of each share, and the worst draw's overall refusals."""
    mean = {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}
    worst = float(max(d["all"] for d in draws))
    return {"rule": rule, "validation": validation, "references": references_used, "draws": len(draws)} | {
        "mean": mean,
        "worst_all": worst,
    }


def measure(split: dict[str, np.ndarray], sources: np.ndarray, others: np.ndarray, draws: int) -> list[dict]:
    """Every row: validation only at each size, the package's rule at each size, and the rule with few training
    films (a small own dataset)."""
    val, train, test = split["validation"], split["train"], split["test"]
    rows = []
    for size in (*SIZES, len(val)):
        seeds = range(draws if size < len(val) else 1)
        picks = [np.random.default_rng(seed).choice(len(val), size, replace=False) for seed in seeds]
        alone = [refusals(ScopeGuard.fit(val[p]), test, sources, others) for p in picks]
        rows.append(row("validation only", size, alone, size))
        if size < MIN_REFERENCES:
            for available, name in ((len(train), "the package's rule"), (SMALL_TRAIN, "the rule, 40 training films")):
                fitted = [
                    ScopeGuard.fit(references(val[p], lambda n, s=seed, a=available: drawn(train, a, n, s)))
                    for seed, p in zip(seeds, picks, strict=True)
                ]
                used = fitted[0].reference.shape[0]
                rows.append(row(name, size, [refusals(g, test, sources, others) for g in fitted], used))
    return rows


def body(result: dict) -> str:
    sources = [key for key in result["rows"][0]["mean"] if key not in ("all", "caught")]
    header = ["guard fitted on", "validation films", "reference films", "refused, all (mean / worst draw)"]
    header += [f"refused, {s}" for s in sources] + ["non-X-rays caught"]
    lines = [
        [
            r["rule"],
            r["validation"],
            r["references"],
            f"{r['mean']['all']:.1%} / {r['worst_all']:.1%}",
            *[f"{r['mean'][s]:.1%}" for s in sources],
            f"{r['mean']['caught']:.0%}",
        ]
        for r in result["rows"]
    ]
    return (
        f"Measured {result['date']} ({result['machine']}) with `{result['model']}` on its {result['test_films']} test "
        f"films (every one a real frontal chest X-ray) and the {result['non_xrays']} non-X-ray images the pixel "
        f"checks let through; {result['draws']} random draws of the validation films per row (means, and the worst "
        f"draw). The rule: a guard is fitted on at least {result['min_references']} films, the validation split "
        "topped up with training films when it holds fewer.\n\n" + markdown_rows(header, lines)
    )


BLOCK = Block("guard-size", DOCS / "scope_guard.md", RESULTS, "python -m study.guard_size", body)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="build/model", help="A trained model folder (`make train`).")
    parser.add_argument("--dataset", default="build/dataset", help="The dataset it was trained on (`make data`).")
    parser.add_argument("--draws", type=int, default=20, help="Random draws of the validation films per row.")
    args = parser.parse_args()
    model, processor = load_folder(args.model)
    splits = datasets.load_from_disk(args.dataset)
    order = np.random.default_rng(0).permutation(splits["train"].num_rows)
    split = {name: features(model, processor, splits[name]["image"], name) for name in ("validation", "test")}
    split["train"] = features(model, processor, splits["train"].select(order[:TRAIN_POOL])["image"], "train")
    others = [image for image in non_xray_images(splits["test"][0]["image"]).values() if pixel_reason(image) is None]
    other_features = features(model, processor, [image.convert("RGB") for image in others], "non-X-rays")
    sources = np.asarray(splits["test"]["source"])
    result = machine() | {
        "model": args.model,
        "test_films": len(sources),
        "non_xrays": len(others),
        "draws": args.draws,
        "min_references": MIN_REFERENCES,
        "rows": measure(split, sources, other_features, args.draws),
    }
    report(result, str(RESULTS))
    BLOCK.write(result)
    return result


if __name__ == "__main__":
    main()
