"""study/WHOLE_FILM.md from the whole-film and lungs-first study's result (study/results/whole_film.json)."""

from __future__ import annotations

from covid_cxr.evaluation.grouped import MIXED
from study.quality_markdown import auc_with_ci

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
    return [c["change"] for summary in dealings.values() for c in summary["changes"] if c["row"] == row]


def render(result: dict[str, object]) -> str:
    crop = result["lungs_in_crop"]
    readout = result["source_readout"]
    lines = [
        "# The whole film, and lungs first",
        "",
        f"Written by `python -m study.whole_film` on {result['machine']['date']}, {result['machine']['machine']}; "
        f"{result['machine']['versions']}. The yardstick's {result['folds']}-fold patient-grouped cross-validation "
        f"(study/QUALITY.md), each row on several fold dealings (fold seeds); mixed-label sources "
        f"{', '.join(result['mixed_sources'])} ({result['mixed_images']} images). A change counts as a gain only "
        "when its whole paired patient-bootstrap 95% CI lies above zero.",
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
        lines += ["## Fine-tunes of the default recipe", "", *_dealing_table(result["finetunes"]), ""]
    else:
        lines += ["## Fine-tunes of the default recipe", "", "Not run yet (`--finetune_dealings`).", ""]
    return "\n".join(lines)
