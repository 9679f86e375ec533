"""The cross-validated headline of a study report: written by the study (`make quality`, `make whole-film`), read
by the fine-tune for its card. One schema, here: a headline is one fine-tune row of the yardstick (its metrics per
subset, with patient-bootstrap intervals) and what it measured (the recipe, the backbone, the dataset's digest,
the folds); a card quotes it only for the very recipe, backbone and dataset it trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from covid_cxr.cards.model import Recipe
from covid_cxr.evaluation.keys import ALL, CV, MIXED, metric_key

logger = logging.getLogger(__name__)
HEADLINE = "headline"  # the report's key for it


def headline_record(row: dict, folds: int, recipe: Recipe, backbone: str, dataset_digest: str) -> dict:
    """A yardstick row as a report's headline: its figures and what they measured."""
    return row | {"folds": folds, "recipe": asdict(recipe), "backbone": backbone, "dataset_digest": dataset_digest}


def cross_validated(report: str | None, recipe: Recipe, backbone: str, dataset_digest: str) -> dict[str, float]:
    """The cross-validated figures of a report (`make whole-film` and `make quality` write one) when it measured
    this very recipe (the seed aside), on this backbone and on this dataset (covid_cxr.data.digest); empty, with one
    line saying why, when there is none or it measured something else, so the card never quotes another run's
    figures."""
    if not report:
        return {}
    if not Path(report).is_file():
        logger.warning("No cross-validation report at %s: the card quotes none", report)
        return {}
    headline = json.loads(Path(report).read_text()).get(HEADLINE)
    if headline is None:
        logger.warning("%s holds no fine-tune of the default recipe yet: the card quotes none", report)
        return {}
    other = measured_other(headline, recipe, backbone, dataset_digest)
    if other:
        logger.warning("%s cross-validated %s: the card leaves its figures out", report, other)
        return {}
    figures = {metric_key(CV, ALL, "folds"): float(headline["folds"])}
    for subset in (MIXED, ALL):
        metrics = headline["metrics"][subset]
        figures |= {
            metric_key(CV, subset, key): float(metrics[key]) for key in ("n", "roc_auc", "roc_auc_low", "roc_auc_high")
        }
    return figures


def measured_other(headline: dict, recipe: Recipe, backbone: str, dataset_digest: str) -> str | None:
    """What the report's headline measured that this run is not, in words; None when it measured this run."""
    measured = None
    if "recipe" in headline:  # a report older than a recipe field measured that field at its default
        measured = {key: value for key, value in asdict(Recipe(**headline["recipe"])).items() if key != "seed"}
    if measured != {key: value for key, value in asdict(recipe).items() if key != "seed"}:
        return "another recipe"
    if headline.get("backbone") != backbone:
        return "another backbone"
    if "dataset_digest" not in headline:
        return "a dataset it does not name (written before reports recorded theirs)"
    if headline["dataset_digest"] != dataset_digest:
        return "another dataset"
    return None
