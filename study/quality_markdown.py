"""study/QUALITY.md and the verdict, from the yardstick's result (study/results/quality.json); the formatters
are public for whatever else renders that result."""

from __future__ import annotations

import numpy as np

from covid_cxr.cards.cross_validation import HEADLINE
from covid_cxr.cards.model import Recipe
from covid_cxr.data.processor_size import WHOLE_FILM
from covid_cxr.evaluation.grouped import MIXED


def _number(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def auc_with_ci(metrics: dict[str, float], ci: str = "") -> str:
    """ROC AUC with its interval; `ci` names the interval in prose ("95% CI "), the tables say it in the header."""
    if np.isnan(metrics["roc_auc"]):
        return "n/a (one class)"
    return f"{metrics['roc_auc']:.3f} ({ci}{metrics['roc_auc_low']:.3f}-{metrics['roc_auc_high']:.3f})"


def change_vs_reference(result: dict[str, object], reference: dict[str, object]) -> str:
    if "mixed_roc_auc_change_ci" not in result:
        return "reference"
    change = result["metrics"][MIXED]["roc_auc"] - reference["metrics"][MIXED]["roc_auc"]
    return _interval(change, *result["mixed_roc_auc_change_ci"])


def change_vs_default(result: dict[str, object]) -> str:
    """The change against the row's second baseline (the default fine-tune), or '-'."""
    if "versus" not in result:
        return "-"
    versus = result["versus"]
    return _interval(versus["change"], *versus["change_ci"])


def _interval(change: float, low: float, high: float) -> str:
    verdict = "gain" if low > 0 else ("loss" if high < 0 else "inside the CI")
    return f"{change:+.3f} ({low:+.3f} to {high:+.3f}): {verdict}"


def _framing_note(headline: dict[str, object]) -> list[str]:
    """A line saying so when this page's recipe framed the film otherwise than today's default (the whole film):
    its rows then describe that older recipe, and study/WHOLE_FILM.md holds the default's figures."""
    framing = headline["recipe"].get("framing", Recipe.framing)
    if framing == WHOLE_FILM:
        return []
    return [
        f"Every row on this page was measured with the recipe's earlier framing, the film's **{framing}**. The "
        f"default recipe now feeds the {WHOLE_FILM}; its cross-validated figures, against this framing on the same "
        "folds, are in [WHOLE_FILM.md](WHOLE_FILM.md).",
        "",
    ]


def render(result: dict[str, object]) -> str:
    """study/QUALITY.md from the JSON result."""
    lines = [
        "# Quality yardstick",
        "",
        f"Written by `make quality` (`python -m study.quality`) on {result['machine']['date']}, "
        f"{result['machine']['machine']}; {result['machine']['versions']}.",
        "",
        f"{result['folds']}-fold cross-validation over the whole curated set ({result['images']} images), folds "
        "dealt by `patient_group` (patient, metadata near-duplicate group and near-identical pixels) and "
        "stratified by source x label. In each round one fold is scored, the next one is the validation fold "
        "(temperature, threshold, early stopping) and the rest trains. Every image is scored once, out of fold. "
        f"Mixed-label sources: {', '.join(result['mixed_sources'])} ({result['mixed_images']} images). "
        f"ROC AUC intervals are patient-bootstrap 95% CIs ({result['bootstrap_rounds']} resamples); sensitivity and "
        f"specificity are at the threshold each round chose on its validation fold for "
        f"{result['target_sensitivity']:.0%} sensitivity.",
        "",
        *_headline_section(result),
        "",
        "## Run-to-run spread",
        "",
        *[f"- {text}" for text in result["spread"]],
        "",
        *_held_out_section(result["leave_one_source_out"]),
        "",
        *_levers_section(result["rows"]),
        "",
        "## Not measured here",
        "",
        *[f"- {text}" for text in NOT_MEASURED],
        "",
        "## Verdict",
        "",
        result["verdict"],
        "",
    ]
    return "\n".join(lines)


def _subset_row(name: str, metrics: dict) -> str:
    return (
        f"| {name} | {metrics['n']} | {auc_with_ci(metrics)} | {_number(metrics['sensitivity'])} | "
        f"{_number(metrics['specificity'])} | {metrics['ece']:.3f} |"
    )


def _headline_section(result: dict[str, object]) -> list[str]:
    headline = result[HEADLINE]
    mixed, every = headline["metrics"][MIXED], headline["metrics"]["all"]
    return [
        "## Headline",
        "",
        *_framing_note(headline),
        f"**{headline['setting']}: mixed-label ROC AUC {auc_with_ci(mixed)}, {result['folds']}-fold cross-validation** "
        f"(all sources {auc_with_ci(every)}; mixed-label sensitivity {mixed['sensitivity']:.3f}, specificity "
        f"{mixed['specificity']:.3f}, ECE {mixed['ece']:.3f}).",
        "",
        "| subset | n | ROC AUC (95% CI) | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|",
        *[_subset_row(name, metrics) for name, metrics in headline["metrics"].items()],
    ]


def _held_out_section(loso: list[dict]) -> list[str]:
    return [
        "## Leave one source out",
        "",
        "The reference probe trained without one mixed-label source and scored on it alone: a hospital it never saw.",
        "",
        "| held-out source | n | ROC AUC (95% CI) | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|",
        *[_subset_row(item["source"], item) for item in loso],
    ]


def _levers_section(rows: list[dict]) -> list[str]:
    lines = [
        "## Levers",
        "",
        "Change in mixed-label ROC AUC against the reference row, with its paired patient-bootstrap 95% CI: a lever "
        "is a gain only if the whole interval lies above zero. Fine-tune levers are also compared with the default "
        "fine-tune of the same seed (the recipe they would replace). CPU min: processor time (summed over cores) of "
        "the feature extraction or fine-tuning plus fitting, all rounds, on this machine.",
        "",
        "| lever | setting | mixed-label ROC AUC (95% CI) | change vs reference | change vs default fine-tune | "
        "all-source ROC AUC | mixed sens / spec | mixed ECE | CPU min | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m, a = row["metrics"][MIXED], row["metrics"]["all"]
        lines.append(
            f"| {row['lever']} | {row['setting']} | {auc_with_ci(m)} | {change_vs_reference(row, rows[0])} | "
            f"{change_vs_default(row)} | {auc_with_ci(a)} | "
            f"{m['sensitivity']:.2f} / {m['specificity']:.2f} | {m['ece']:.3f} | {row['cpu_minutes']:.1f} | "
            f"{row['note']} |"
        )
    return lines


NOT_MEASURED = (
    "448 px inside the fine-tune: several hours on 2 CPU cores (the probe row above measures the resolution).",
    "All blocks at one flat rate (the layer-wise decay row trains every block, the last-4-blocks row a larger "
    "share at one rate).",
    "The source adversary at other scales than 0.5 (fixed and DANN-ramped rows above).",
    "LoRA: `peft` is not among this project's packages.",
    "The fine-tune levers with a second seed, fewer images (source x label balanced weights, mixed-label only) or "
    "the probe's other levers (336 px, histogram equalisation) inside the fine-tune: one fine-tune per round "
    "each; the fine-tune's own lung-focus run is in study/RESULTS.md (no gain).",
)


def verdict(rows: list[dict[str, object]]) -> str:
    """Which levers beat the reference probe, and which the default fine-tune, outside the CI."""

    def described(row: dict[str, object]) -> str:
        return f"{row['lever']}: {row['setting']} (all sources {auc_with_ci(row['metrics']['all'])})"

    over_reference = [described(r) for r in rows[1:] if r["mixed_roc_auc_change_ci"][0] > 0]
    over_default = [described(r) for r in rows if "versus" in r and r["versus"]["change_ci"][0] > 0]
    if not over_reference and not over_default:
        return (
            "No lever raised the mixed-label ROC AUC outside the paired 95% CI of its change, over the reference "
            "probe or over the default fine-tune; differences inside the intervals are noise at this sample size."
        )
    found = [f"over the reference probe: {'; '.join(over_reference) or 'none'}"]
    if any("versus" in r for r in rows):
        found.append(f"over the default fine-tune: {'; '.join(over_default) or 'none'}")
    return "Mixed-label gains outside the paired 95% CI " + "; ".join(found) + "."
