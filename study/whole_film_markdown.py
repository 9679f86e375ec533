"""study/WHOLE_FILM.md from the whole-film and lungs-first study's result (study/results/whole_film.json)."""

from __future__ import annotations

from covid_cxr.evaluation.keys import ALL, MIXED, PROBE, TEST, metric_key
from study.quality_markdown import auc_with_ci

MEASURED = "machine"  # the headline's key for where and when its fine-tunes were written (the probes may be older)
SOURCE_SHOWN = "ieee8023"  # the mixed-label source with both labels in numbers (COVID-19 against other pneumonia)


def _change(item: dict[str, object]) -> str:
    low, high = item["ci95"]
    verdict = "gain" if low > 0 else ("loss" if high < 0 else "inside the CI")
    return f"{item['change']:+.3f} ({low:+.3f} to {high:+.3f}): {verdict}"


def _dealing_table(dealings: dict[str, dict]) -> list[str]:
    lines = [
        f"| fold dealing | setting | mixed-label ROC AUC (95% CI) | {SOURCE_SHOWN} ROC AUC | all-source ROC AUC | "
        "mixed sens / spec | CPU min |",
        "|---|---|---|---|---|---|---|",
    ]
    for dealing, summary in dealings.items():
        for setting, row in summary["rows"].items():
            m = row["metrics"][MIXED]
            shown = row["metrics"].get(SOURCE_SHOWN, {"roc_auc": float("nan")})
            lines.append(
                f"| {dealing} | {setting} | {auc_with_ci(m)} | {shown['roc_auc']:.3f} | "
                f"{auc_with_ci(row['metrics']['all'])} | {m['sensitivity']:.2f} / {m['specificity']:.2f} | "
                f"{row['cpu_minutes']:.1f} |"
            )
    lines += [
        "",
        "| fold dealing | row | against | change in mixed-label ROC AUC (paired 95% CI) |",
        "|---|---|---|---|",
    ]
    for dealing, summary in dealings.items():
        lines += [f"| {dealing} | {c['row']} | {c['baseline']} | {_change(c)} |" for c in summary["changes"]]
    return lines


def changes_of(dealings: dict[str, dict], row: str) -> list[float]:
    """The change of one row against its baseline on every dealing measured."""
    return [change for change, _ in changes_with_ci(dealings, row)]


def changes_with_ci(dealings: dict[str, dict], row: str) -> list[tuple[float, tuple[float, float]]]:
    """The change of one row against its baseline on every dealing measured, with its paired 95% CI."""
    return [
        (c["change"], tuple(c["ci95"])) for summary in dealings.values() for c in summary["changes"] if c["row"] == row
    ]


def render(result: dict[str, object]) -> str:
    crop = result["lungs_in_crop"]
    readout = result["source_readout"]
    measured = result.get("headline", {}).get(MEASURED)
    lines = [
        "# The whole film, and lungs first",
        "",
        f"Written by `python -m study.whole_film` on {result['machine']['date']}, {result['machine']['machine']}; "
        f"{result['machine']['versions']}. The yardstick's {result['folds']}-fold patient-grouped cross-validation "
        f"(study/QUALITY.md), each row on several fold dealings (fold seeds); mixed-label sources "
        f"{', '.join(result['mixed_sources'])} ({result['mixed_images']} images). A change counts as a gain only "
        "when its whole paired patient-bootstrap 95% CI lies above zero."
        + (
            f" The headline's fine-tunes ({result['headline']['setting']}) were written on {measured['date']}."
            if measured
            else ""
        ),
        "",
        "## What the centre crop cut",
        "",
        f"The backbones' processors resize the short side and crop its centre. Over the {crop['images']} curated "
        f"films, that crop kept on average {crop['mean']:.1%} of the segmenter's lung pixels (the worst film "
        f"{crop['min']:.1%}); {crop['below_95']:.1%} of the films lost more than 5% of their lungs. The whole film "
        "squashed to the square keeps all of them, by construction.",
        "",
        "| source | films | lung pixels inside the centre crop (mean) |",
        "|---|---|---|",
        *[f"| {source} | {v['images']} | {v['mean']:.1%} |" for source, v in crop["by_source"].items()],
        "",
        "## Probes on frozen DINOv2-S features",
        "",
        *_dealing_table(result["probes"]),
        "",
        "How well a linear probe on the same frozen features tells the image's source (out-of-fold accuracy, first "
        "dealing): " + "; ".join(f"{setting} {accuracy:.1%}" for setting, accuracy in readout.items()) + ".",
        "",
    ]
    lines += ["## Verdict", "", *[f"- {line}" for line in result["verdict"]], ""]
    if result.get("finetunes"):
        lines += ["## Fine-tunes", "", *_dealing_table(result["finetunes"]), ""]
    else:
        lines += ["## Fine-tunes", "", "Not run yet (`--finetune_dealings`).", ""]
    if result.get("trained_models"):
        lines += ["## The trained models' shortcut figures", "", *_trained_table(result["trained_models"]), ""]
    return "\n".join(lines)


SOURCE_READ = metric_key(PROBE, ALL, "source_accuracy")
HEAT_IN_LUNGS, WARNED = metric_key(TEST, ALL, "lung_attention_mean"), metric_key(TEST, ALL, "lung_attention_warned")
TRAINED_ROWS = (  # (all_results.json key, what it says; lower reads less of the shortcut where the row says so)
    (metric_key(TEST, ALL, "roc_auc"), "test ROC AUC, all sources"),
    (metric_key(TEST, MIXED, "roc_auc"), "test ROC AUC, mixed-label sources"),
    (SOURCE_READ, "source read from the frozen features of the images it saw (lower: weaker shortcut)"),
    (HEAT_IN_LUNGS, "share of the Grad-CAM heat inside the lungs (mean)"),
    (
        metric_key(TEST, ALL, "lung_attention_ratio_median"),
        "that share against the lungs' share of the image (median; 1: even)",
    ),
    (WARNED, "attention warning fires (share of test films)"),
    (metric_key(TEST, MIXED, "lung_attention_warned"), "attention warning fires, mixed-label sources"),
)


def _trained_table(models: dict[str, dict]) -> list[str]:
    """The models `make train` wrote with each recipe, side by side: one test split each, so no CI on the gaps."""
    names = list(models)
    lines = [
        "Each model as `make train` trained it, on the dataset's one test split (so a gap here has no paired CI; "
        "the rows above are the evidence); recorded by `python -m study.whole_film --trained NAME=FOLDER ...`.",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, words in TRAINED_ROWS:
        lines.append(f"| {words} | " + " | ".join(_shown(models[n]["figures"].get(key)) for n in names) + " |")
    for subset, words in (("all", "all sources"), (MIXED, "mixed-label sources")):
        key = f"{subset}_lungs_hidden_kept_shown"
        row = [models[n]["figures"].get(key, "n/a") for n in names]
        label = f"discrimination kept with the lungs hidden, {words} (lower: reads less outside them)"
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def _shown(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"
