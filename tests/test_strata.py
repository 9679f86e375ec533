"""The shortcuts inside the mixed-label sources (covid_cxr.evaluation.strata): a score that is the projection and
nothing else looks good over all pairs and falls to chance within projections; a score that reads the disease
keeps its figure within them."""

from __future__ import annotations

import numpy as np
import pytest

from covid_cxr.audit.measures import stratified
from covid_cxr.evaluation.bootstrap import roc_auc
from covid_cxr.evaluation.strata import age_band, out_of_fold_shares, projection, sex, within_strata_auc


def confounded(n: int = 4000, seed: int = 0):
    """AP films are mostly COVID-19 (90%), PA films less so (60%), as in the mixed-label sources."""
    rng = np.random.default_rng(seed)
    strata = np.where(rng.random(n) < 0.5, "AP", "PA")
    labels = (rng.random(n) < np.where(strata == "AP", 0.9, 0.6)).astype(int)
    return rng, strata, labels


def test_a_score_that_is_the_projection_falls_to_chance_within_projections() -> None:
    rng, strata, labels = confounded()
    reads_projection = (strata == "AP") + rng.normal(0, 0.01, len(labels))
    assert roc_auc(labels, reads_projection) > 0.6
    assert within_strata_auc(labels, reads_projection, strata) == pytest.approx(0.5, abs=0.05)
    reads_disease = labels + rng.normal(0, 0.8, len(labels))
    assert within_strata_auc(labels, reads_disease, strata) == pytest.approx(roc_auc(labels, reads_disease), abs=0.05)


def test_the_projection_alone_is_scored_out_of_fold_and_figures_come_with_intervals() -> None:
    rng, strata, labels = confounded()
    folds = np.arange(len(labels)) % 5
    alone = out_of_fold_shares(labels, strata, folds)
    assert np.abs(alone - np.where(strata == "AP", 0.9, 0.6)).max() < 0.05  # each film: its projection's share
    groups = np.arange(len(labels)).astype(str)
    with_unknown = np.where(rng.random(len(labels)) < 0.1, None, strata).astype(object)
    result = stratified(labels + rng.normal(0, 0.8, len(labels)), labels, with_unknown, groups, folds, rounds=200)
    assert result["n"] + result["n_unknown"] == len(labels) and set(result["strata"]) == {"AP", "PA"}
    assert (
        result["alone"]["value"] > 0.6
        and result["within"]["low"] < result["within"]["value"] < result["within"]["high"]
    )
    one_class = np.where(strata == "AP", 1, 0)  # no stratum holds both classes: nothing to compare within
    assert stratified(rng.random(len(labels)), one_class, strata.astype(object), groups, folds, 200) is None


@pytest.mark.parametrize(
    ("cell", "stratum"),
    [
        ("AP", "AP"),
        ("AP Supine", "AP"),
        ("AP erect", "AP"),
        ("PA", "PA"),
        ("frontal (AP/PA unknown)", None),
        ("", None),
    ],
)
def test_the_recorded_view_gives_the_projection(cell: str, stratum: str | None) -> None:
    assert projection(cell) == stratum


def test_sex_and_age_bands_read_the_records_and_leave_the_rest_unknown() -> None:
    assert [sex(v) for v in ("M", "F", "female", "", None)] == ["M", "F", "F", None, None]
    assert [age_band(v) for v in ("39", "40", "65.5", "80", "", "unknown")] == [
        "under 40", "40-59", "60-79", "80 and over", None, None
    ]  # fmt: skip
