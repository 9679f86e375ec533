"""Prediction sets that can say "uncertain" (covid_cxr.modeling.conformal): fitted on validation films alone, they
cover each class at the chosen rate on new films like them; a class with too few films is always kept; a model
without validation probabilities claims no coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covid_cxr.audit.measures import set_figures
from covid_cxr.modeling.conformal import BOTH, COVID, NEITHER, OTHER, Conformal


def films(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated P(covid) of a model that separates the classes imperfectly, and the labels (1: COVID-19)."""
    labels = (rng.random(n) < 0.6).astype(int)
    log_odds = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.3)
    return 1 / (1 + np.exp(-log_odds)), labels


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_each_class_is_covered_at_the_chosen_rate_on_new_films(coverage: float) -> None:
    rng = np.random.default_rng(0)
    conformal = Conformal.fit(*films(4000, rng))
    probabilities, labels = films(20_000, rng)
    sets = conformal.sets(probabilities, coverage)
    for label, name in ((1, COVID), (0, OTHER)):
        covered = np.mean([name in s.split("|") for s, y in zip(sets, labels, strict=True) if y == label])
        assert abs(covered - coverage) < 0.03, (name, covered)  # 3 standard deviations of the draw
    assert 0 < sets.count(BOTH) < len(sets)  # some films are uncertain, most are not


def test_the_sets_follow_the_bands_and_a_small_class_is_always_kept(tmp_path: Path) -> None:
    conformal = Conformal(np.array([0.6, 0.7, 0.8, 0.9]), np.linspace(0.0, 0.5, 101))
    floor, ceiling = conformal.bounds(0.9)
    assert floor == -np.inf and ceiling == pytest.approx(0.455)  # 4 COVID-19 films cannot promise 90%: always kept
    assert conformal.sets([0.2, 0.7], 0.9) == [BOTH, COVID]
    strict = Conformal(np.linspace(0.5, 1.0, 101), np.linspace(0.0, 0.5, 101))
    assert strict.sets([0.05, 0.5, 0.95], 0.99) == [OTHER, BOTH, COVID]
    assert strict.sets([0.05, 0.5, 0.95], 0.5) == [OTHER, NEITHER, COVID]  # at a low coverage: neither class
    conformal.save(tmp_path)
    loaded = Conformal.load(tmp_path)
    assert np.array_equal(loaded.covid, conformal.covid) and np.array_equal(loaded.other, conformal.other)
    assert Conformal.load(tmp_path / "elsewhere") is None  # no validation probabilities: no coverage claimed
    with pytest.raises(ValueError, match="between 0 and 1"):
        conformal.bounds(90)


def test_coverage_and_uncertain_shares_come_per_subset_with_intervals() -> None:
    sets = [COVID, BOTH, OTHER, OTHER, COVID, BOTH]
    covid = np.array([True, False, True, False, True, True])
    sources = ["a", "a", "b", "b", "c", "c"]
    figures = set_figures(sets, covid, sources, np.array(list("uvwxyz")), ["b"], rounds=200)
    assert figures["all"]["coverage"]["value"] == pytest.approx(5 / 6)  # film 3 is COVID-19, its set says not
    assert figures["all"]["uncertain"]["value"] == pytest.approx(2 / 6)
    assert figures["mixed_sources"]["coverage"]["value"] == 0.5 and figures["b"]["n"] == 2
    assert figures["all"]["coverage"]["low"] <= 5 / 6 <= figures["all"]["coverage"]["high"]


def test_a_card_says_plainly_when_too_few_validation_films_promise_no_coverage() -> None:
    from covid_cxr.cards.facts import data_facts
    from covid_cxr.cards.model import prediction_sets
    from covid_cxr.evaluation.grouped import Evaluation
    from covid_cxr.modeling.calibration import Calibration, Threshold
    from covid_cxr.modeling.conformal import min_films

    assert [min_films(c) for c in (0.8, 0.9, 0.95)] == [4, 9, 19]
    sets = set_figures([BOTH] * 4, np.array([True, False, True, False]), ["own"] * 4, np.arange(4).astype(str), [])
    evaluation = Evaluation(["own"], {}, {}, 0.0, sets)
    one_source = data_facts(["own", "own"], ["covid", "non_covid"], ["CC BY 4.0"] * 2)
    threshold = Threshold(0.5, 0.9, 1.0, 1.0)
    few = Calibration(1.0, threshold, Conformal(np.array([0.6, 0.7, 0.8]), np.array([0.1, 0.2, 0.3])))
    text = prediction_sets(evaluation, few, one_source)
    assert (
        text.startswith("Not promised: the validation split holds 3 COVID-19 and 3 other films")
        and "at least 9" in text
    )
    assert "both classes stay in every film's set: every answer is uncertain" in text
    one_short = Calibration(1.0, threshold, Conformal(np.array([0.6, 0.7, 0.8]), np.linspace(0.0, 0.5, 50)))
    assert "that class stays in every film's set." in prediction_sets(evaluation, one_short, one_source)
    assert "mixed_sources" not in text and "| all | 4 |" in text  # one source: the all row alone
    enough = Conformal(np.linspace(0.5, 1.0, 50), np.linspace(0.0, 0.5, 50))
    text = prediction_sets(evaluation, Calibration(1.0, threshold, enough), one_source)
    assert "at P(covid) of 0.5" in text and "Not promised" not in text
