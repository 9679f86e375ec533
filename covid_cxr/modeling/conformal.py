"""An answer that can say "uncertain": split-conformal prediction sets, class by class, fitted on validation.

For a chosen coverage (say 90%), each class keeps the films whose calibrated probability of that class is no lower
than all but the allowed share of that class's validation films had: COVID-19 is in a film's set when its P(covid)
reaches `covid_floor`, no COVID-19 when it is at most `other_ceiling`. The set holds one class (a confident
answer), both (uncertain: both are possible at this coverage) or, rarely, neither. Class by class (Mondrian), so
that each class, not only the commoner one, is covered at the chosen rate on films like the validation films
(Vovk 2005; Angelopoulos & Bates 2021). The validation films' probabilities travel in the model folder
(CONFORMAL), so any coverage can be chosen when the model is used; a model without them claims none.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covid_cxr.model_folder import CONFORMAL

DEFAULT_COVERAGE = 0.90
COVID, OTHER, BOTH, NEITHER = "covid", "non_covid", "covid|non_covid", "none"  # the CSV's prediction_set values


@dataclass(frozen=True)
class Conformal:
    """The validation films' calibrated P(covid), by their true class."""

    covid: np.ndarray  # of the COVID-19 films
    other: np.ndarray  # of the others

    @classmethod
    def fit(cls, probabilities: np.ndarray, labels: np.ndarray) -> Conformal:
        """From a validation split's calibrated P(covid) and its labels (1: COVID-19)."""
        probabilities, labels = np.asarray(probabilities, dtype=float), np.asarray(labels)
        return cls(np.sort(probabilities[labels == 1]), np.sort(probabilities[labels == 0]))

    def bounds(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float]:
        """(covid_floor, other_ceiling): COVID-19 is in the set from P(covid) = covid_floor up, no COVID-19 up to
        other_ceiling. A class with too few validation films to reach the coverage is always in the set."""
        if not 0 < coverage < 1:
            raise ValueError(f"a coverage is a share between 0 and 1, not {coverage}")
        floor = _quantile(1 - self.covid, coverage)  # nonconformity of the COVID-19 class: 1 - P(covid)
        ceiling = _quantile(self.other, coverage)  # of the other class: P(covid)
        return 1 - floor, ceiling

    def band(self, coverage: float = DEFAULT_COVERAGE) -> tuple[float, float] | None:
        """The scores, within 0-1, at which both classes stay in the set (an uncertain answer); None when no score
        is uncertain (the bounds leave a gap that fits neither class)."""
        floor, ceiling = self.bounds(coverage)
        return (max(floor, 0.0), min(ceiling, 1.0)) if floor <= ceiling else None

    def sets(self, probabilities: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> list[str]:
        """Each film's prediction set (COVID, OTHER, BOTH or NEITHER) from its calibrated P(covid)."""
        floor, ceiling = self.bounds(coverage)
        names = {(True, False): COVID, (False, True): OTHER, (True, True): BOTH, (False, False): NEITHER}
        return [names[(bool(p >= floor), bool(p <= ceiling))] for p in np.asarray(probabilities, dtype=float)]

    def save(self, folder: str | Path) -> None:
        data = {"covid": self.covid.tolist(), "non_covid": self.other.tolist()}
        (Path(folder) / CONFORMAL).write_text(json.dumps(data) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> Conformal | None:
        """The model folder's validation probabilities; None for a model that has none (it claims no coverage)."""
        path = Path(folder) / CONFORMAL
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(np.asarray(data["covid"], dtype=float), np.asarray(data["non_covid"], dtype=float))


def min_films(coverage: float) -> int:
    """The fewest validation films of a class that can promise `coverage` (fewer: the class is always kept)."""
    return math.ceil(coverage / (1 - coverage) - 1e-9)


def _quantile(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) coverage)-th smallest score (the finite-sample split-conformal quantile); infinite when
    that rank exceeds n (too few films: the class is always kept)."""
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(np.sort(scores)[rank - 1]) if rank <= len(scores) else math.inf
