"""The audit's figures, each with a patient-bootstrap 95% interval: discrimination per source and on the mixed-label
sources, how much the source alone gives away, the occlusion test, how readable the source is from the model's
own features, and inside the mixed-label sources the projection, sex and age (covid_cxr.evaluation.strata) and
how readable the projection is.

Every interval resamples whole patients (covid_cxr.evaluation.bootstrap); a figure is a dict
{"value", "low", "high"}, NaN-free where it is defined and None where it is not (an AUC on one class).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from covid_cxr.audit.occlusion import LUNGS_HIDDEN, VIEWS, WHOLE
from covid_cxr.data.splits import deal_folds
from covid_cxr.evaluation import load_cxr_metric
from covid_cxr.evaluation.bootstrap import patient_bootstrap, roc_auc, roc_auc_difference_ci
from covid_cxr.evaluation.cxr_binary.cxr_binary import expected_calibration_error
from covid_cxr.evaluation.grouped import grouped_metrics, reported_subsets
from covid_cxr.evaluation.keys import ALL, MIXED
from covid_cxr.evaluation.probes import source_probe
from covid_cxr.evaluation.strata import both_classes, out_of_fold_shares, within_strata_auc
from covid_cxr.modeling.conformal import BOTH
from covid_cxr.modeling.conformal import COVID as COVID_SET
from covid_cxr.modeling.conformal import OTHER as OTHER_SET

Figure = dict[str, float | None]
FOLDS = 5
# The verdict of the occlusion test: what share of its discrimination above chance a model keeps with the lungs
# hidden, and on which side of one half the whole interval of that share lies.
READS_OUTSIDE, READS_LUNGS, UNCLEAR, NO_DISCRIMINATION = "outside", "lungs", "unclear", "no_discrimination"


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def figure(
    statistic: Callable[[np.ndarray], float], groups: np.ndarray, rounds: int, value: float | None = None
) -> Figure:
    """A statistic of all images (indices in, number out; or its `value` when already known) with its
    patient-bootstrap 95% interval."""
    value = _clean(statistic(np.arange(len(groups))) if value is None else value)
    if value is None:
        return {"value": None, "low": None, "high": None}
    low, high = patient_bootstrap(statistic, groups, rounds)
    return {"value": value, "low": _clean(low), "high": _clean(high)}


def _rate(decisions: np.ndarray, wanted: np.ndarray) -> float:
    return float(decisions[wanted].mean()) if wanted.any() else float("nan")


def discrimination(
    probabilities: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    groups: np.ndarray,
    threshold: float,
    mixed_sources: Sequence[str],
    rounds: int,
) -> dict[str, dict[str, object]]:
    """Per subset (all, the mixed-label sources, each source): n, positives, and ROC AUC, sensitivity, specificity
    (at `threshold`) and ECE, each with its interval (point values from the project's metric module)."""
    points = grouped_metrics(load_cxr_metric(), probabilities, labels, list(sources), threshold, mixed_sources)
    results = {}
    for name, mask in reported_subsets(sources, mixed_sources).items():
        results[name] = {"n": int(mask.sum()), "n_covid": int(labels[mask].sum())}
        for key, statistic in _statistics(probabilities[mask], labels[mask], threshold).items():
            results[name][key] = figure(statistic, groups[mask], rounds, _clean(points[name][key]))
    return results


def _statistics(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Callable[[np.ndarray], float]]:
    """The discrimination figures as functions of a resample's indices, for the bootstrap."""
    decided = p >= threshold
    return {
        "roc_auc": lambda i: roc_auc(y[i], p[i]),
        "sensitivity": lambda i: _rate(decided[i], y[i] == 1),
        "specificity": lambda i: _rate(~decided[i], y[i] == 0),
        "ece": lambda i: expected_calibration_error(p[i], y[i]),
    }


def folds_of(sources: Sequence[str], groups: np.ndarray) -> np.ndarray:
    """Patient-grouped folds that each mirror the sources (the same dealing as the dataset's splits): as many as
    the patients and the largest source allow, up to FOLDS; one fold when they allow fewer than two."""
    largest = max(Counter(sources).values(), default=0)
    n_folds = min(FOLDS, len(np.unique(groups)), largest)
    return deal_folds(list(sources), groups, n_folds, seed=0) if n_folds >= 2 else np.zeros(len(groups), dtype=int)


def source_only(labels: np.ndarray, sources: Sequence[str], folds: np.ndarray, groups: np.ndarray, rounds: int):
    """How well the source alone predicts the label: each image scored by the COVID-19 share of its source among
    the other folds' images (out of fold, so an image never scores itself)."""
    scores = out_of_fold_shares(labels, np.asarray(sources), folds)
    return figure(lambda i: roc_auc(labels[i], scores[i]), groups, rounds)


def stratified(
    probabilities: np.ndarray,
    labels: np.ndarray,
    strata: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    rounds: int,
) -> dict[str, object] | None:
    """Over the films whose stratum is known (covid_cxr.evaluation.strata): the model's ROC AUC on them, within
    each stratum holding both classes, within strata (same-stratum pairs only) and of the stratum alone (out of
    fold), each with its interval; None when no stratum holds both classes."""
    known = np.asarray([stratum is not None for stratum in strata], dtype=bool)
    y, p, s, g = labels[known], probabilities[known], strata[known].astype(str), groups[known]
    if not both_classes(y, s):
        return None
    alone = out_of_fold_shares(y, s, folds[known]) if len(np.unique(folds[known])) >= 2 else None
    per_stratum = {}
    for name in sorted(set(s)):
        chosen = s == name
        per_stratum[name] = {"n": int(chosen.sum()), "n_covid": int(y[chosen].sum())}
        if name in both_classes(y, s):
            yc, pc = y[chosen], p[chosen]
            per_stratum[name]["roc_auc"] = figure(lambda i, yc=yc, pc=pc: roc_auc(yc[i], pc[i]), g[chosen], rounds)
    return {
        "n": int(known.sum()),
        "n_covid": int(y.sum()),
        "n_unknown": int((~known).sum()),
        "roc_auc": figure(lambda i: roc_auc(y[i], p[i]), g, rounds),
        "within": figure(lambda i: within_strata_auc(y[i], p[i], s[i]), g, rounds),
        "alone": figure(lambda i: roc_auc(y[i], alone[i]), g, rounds)
        if alone is not None
        else figure(lambda i: float("nan"), g, rounds),
        "strata": per_stratum,
    }


def inside(
    probabilities: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    groups: np.ndarray,
    strata: dict[str, np.ndarray],
    mixed_sources: Sequence[str],
    rounds: int,
) -> dict[str, object]:
    """`stratified` for each recorded stratifier, on the mixed-label images (all images when the data hold one
    source), over patient-grouped folds of those images."""
    subset = np.isin(sources, list(mixed_sources)) if mixed_sources else np.ones(len(labels), dtype=bool)
    results: dict[str, object] = {"subset": MIXED if mixed_sources else ALL}
    if len(np.unique(groups[subset])) < 2:
        return results | dict.fromkeys(strata)
    folds = folds_of(list(np.asarray(sources)[subset]), groups[subset])
    y, p, g = labels[subset], probabilities[subset], groups[subset]
    return results | {name: stratified(p, y, values[subset], g, folds, rounds) for name, values in strata.items()}


def projection_readability(features: np.ndarray, projections: np.ndarray, folds: np.ndarray) -> dict | None:
    """The source probe's measurement with the projection (AP or PA) as its target, over the films whose
    projection is recorded."""
    known = np.asarray([p is not None for p in projections], dtype=bool)
    probe = source_readability(features[known], list(projections[known]), folds[known])
    return None if probe is None else {key.replace("source", "projection"): value for key, value in probe.items()}


def set_figures(
    sets: Sequence[str],
    covid: np.ndarray,
    sources: Sequence[str],
    groups: np.ndarray,
    mixed_sources: Sequence[str],
    rounds: int = 2000,
) -> dict[str, dict[str, object]]:
    """Per subset (all, the mixed-label sources, each source): n, the share of films whose true class is in their
    prediction set (the coverage) and the share answered uncertain (both classes), each with its interval."""
    covered = np.asarray([(COVID_SET if c else OTHER_SET) in s.split("|") for s, c in zip(sets, covid, strict=True)])
    uncertain = np.asarray([s == BOTH for s in sets])
    results = {}
    for name, mask in reported_subsets(sources, mixed_sources).items():
        c, u, g = covered[mask], uncertain[mask], np.asarray(groups)[mask]
        results[name] = {
            "n": int(mask.sum()),
            "coverage": figure(lambda i, c=c: float(c[i].mean()), g, rounds),
            "uncertain": figure(lambda i, u=u: float(u[i].mean()), g, rounds),
        }
    return results


def retained(labels: np.ndarray, occluded: np.ndarray, whole: np.ndarray) -> float:
    """The share of the whole image's discrimination above chance that the occluded view keeps."""
    above_chance = roc_auc(labels, whole) - 0.5
    return (roc_auc(labels, occluded) - 0.5) / above_chance if above_chance > 0 else float("nan")


def verdict(whole_auc: Figure, kept: Figure) -> str:
    """READS_OUTSIDE when the whole interval of the share kept with the lungs hidden lies at or above one half,
    READS_LUNGS when it lies below, UNCLEAR otherwise; NO_DISCRIMINATION when the whole image's AUC interval
    reaches chance, so that there is nothing to lose."""
    if whole_auc["low"] is None or whole_auc["low"] <= 0.5 or kept["low"] is None:
        return NO_DISCRIMINATION
    if kept["low"] >= 0.5:
        return READS_OUTSIDE
    if kept["high"] < 0.5:
        return READS_LUNGS
    return UNCLEAR


def occlusion(
    scores: dict[str, np.ndarray], labels: np.ndarray, subsets: dict[str, np.ndarray], groups: np.ndarray, rounds: int
) -> dict[str, dict[str, object]]:
    """Per subset (all images, mixed-label images): each view's AUC, each occluded view's paired change against the
    whole image and the share of discrimination it keeps, and the verdict."""
    results = {}
    for name, mask in subsets.items():
        y, g, whole = labels[mask], groups[mask], scores[WHOLE][mask]
        entry: dict[str, object] = {"n": int(mask.sum()), "n_covid": int(y.sum())}
        entry |= {view: _view_figures(y, scores[view][mask], whole, g, rounds, view == WHOLE) for view in VIEWS}
        entry["verdict"] = verdict(entry[WHOLE]["roc_auc"], entry[LUNGS_HIDDEN].get("kept", {"low": None}))
        results[name] = entry
    return results


def _view_figures(
    y: np.ndarray, s: np.ndarray, whole: np.ndarray, g: np.ndarray, rounds: int, reference: bool
) -> dict[str, Figure]:
    """One view's AUC and, for an occluded view, its paired change against the whole image and the share of the
    whole image's discrimination it keeps."""
    auc = figure(lambda i: roc_auc(y[i], s[i]), g, rounds)
    if reference or auc["value"] is None:
        return {"roc_auc": auc}
    low, high = roc_auc_difference_ci(y, s, whole, g, rounds)
    change = {"value": auc["value"] - roc_auc(y, whole), "low": _clean(low), "high": _clean(high)}
    return {"roc_auc": auc, "change": change, "kept": figure(lambda i: retained(y[i], s[i], whole[i]), g, rounds)}


def occlusion_subsets(sources: Sequence[str], mixed_sources: Sequence[str]) -> dict[str, np.ndarray]:
    """All images and the mixed-label ones (where the source cannot give the label away)."""
    return {k: v for k, v in reported_subsets(sources, mixed_sources).items() if k in (ALL, MIXED)}


def source_readability(features: np.ndarray, sources: Sequence[str], folds: np.ndarray) -> dict[str, float] | None:
    """A linear probe from the model's penultimate features to the source, cross-validated over patient-grouped
    folds, against always guessing the commonest source of the training folds (None with one source only)."""
    sources = np.asarray(sources)
    if len(np.unique(sources)) < 2 or len(np.unique(folds)) < 2:
        return None
    per_fold = []
    for fold in np.unique(folds):
        held = folds == fold
        if len(np.unique(sources[~held])) < 2:
            continue  # a probe needs two sources to learn from
        with warnings.catch_warnings():  # a fold may lack a source the probe predicts: expected, not a fault
            warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
            probe = source_probe(features[~held], list(sources[~held]), features[held], list(sources[held]))
        per_fold.append((int(held.sum()), probe))
    total = sum(n for n, _ in per_fold)
    if not total:
        return None  # no fold's training side held two targets to learn from
    keys = ("source_accuracy", "source_balanced_accuracy", "source_majority_baseline")
    pooled = {key: sum(n * probe[key] for n, probe in per_fold) / total for key in keys}
    return pooled | {"n_sources": len(np.unique(sources)), "folds": len(per_fold), "n": total}
