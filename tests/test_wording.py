"""The Space's words follow the model's recorded training data: no claim about hospitals or public collections for
a model trained on one source of a user's own images (fast tier)."""

from __future__ import annotations

from PIL import Image

from covid_cxr.evaluation.keys import CV_ROC_AUC, TEST_N, TEST_SENSITIVITY, TEST_SPECIFICITY
from covid_cxr.serving.predictor import Prediction
from covid_cxr.serving.ui import decision_label
from covid_cxr.serving.wording import disclaimer_markdown, model_markdown, quality_markdown

FIGURES = {"threshold": 0.5, TEST_SENSITIVITY: 0.8, TEST_SPECIFICITY: 0.7, TEST_N: 6.0, CV_ROC_AUC: None,
           "backbone": "DINOv2"}  # fmt: skip
CURATED = FIGURES | {"training_sources": ["figure1", "ieee8023", "nih_cxr14"], "public_collection": True,
                     "confounded": True}  # fmt: skip
OWN = FIGURES | {"training_sources": ["myxrays"], "public_collection": False, "confounded": False}


def test_one_source_of_own_images_makes_no_collection_claims() -> None:
    page = disclaimer_markdown(OWN) + quality_markdown(OWN, 0.1) + model_markdown(OWN)
    for claim in ("public", "tied to the hospital", "hospitals that sent both"):
        assert claim not in page, claim
    assert "one source" in disclaimer_markdown(OWN) and "`myxrays`" in quality_markdown(OWN, 0.1)


def test_the_curated_collection_is_called_what_it_is() -> None:
    assert "tied to the hospital" in disclaimer_markdown(CURATED)
    assert "hospitals that sent both" in quality_markdown(CURATED, 0.1)
    assert "public chest X-ray collections" in model_markdown(CURATED)


def test_the_api_label_is_headed_by_the_decision_not_the_larger_probability() -> None:
    """A film at 0.35 with a threshold of 0.34 is a COVID-19 pattern: the API's Label says so, above non_covid 0.65."""
    answer = Prediction({"non_covid": 0.65, "covid": 0.35}, 0.35, True, Image.new("RGB", (8, 8)), None)
    label = decision_label(answer, "covid")
    assert label["label"] == "covid" and [c["label"] for c in label["confidences"]] == ["non_covid", "covid"]
    below = Prediction({"non_covid": 0.7, "covid": 0.3}, 0.3, False, Image.new("RGB", (8, 8)), None)
    assert decision_label(below, "covid")["label"] == "non_covid"


def test_an_uncertain_answer_is_said_in_plain_words_and_shown_as_a_band_on_the_bar() -> None:
    from PIL import Image

    from covid_cxr.modeling.conformal import BOTH, COVID
    from covid_cxr.serving.predictor import Prediction
    from covid_cxr.serving.wording import probability_html, verdict_markdown

    film = Image.new("RGB", (8, 8))
    uncertain = Prediction({"covid": 0.4, "non_covid": 0.6}, 0.4, True, film, None, prediction_set=BOTH)
    assert "**Uncertain at 90%: both a COVID-19 pattern and none remain possible.**" in verdict_markdown(uncertain, 0.3)
    confident = Prediction({"covid": 0.9, "non_covid": 0.1}, 0.9, True, film, None, prediction_set=COVID)
    assert "**At 80%: COVID-19 pattern.**" in verdict_markdown(confident, 0.3, coverage=0.8)
    bar = probability_html(0.4, 0.3, (0.25, 0.55))
    assert 'title="uncertain at 90%"' in bar and "left:25.0%;width:30.0%" in bar and "0.25 to 0.55" in bar
    claimed_none = Prediction({"covid": 0.4, "non_covid": 0.6}, 0.4, True, film, None)  # a model without the sets
    assert "at 90%" not in verdict_markdown(claimed_none, 0.3) and "uncertain" not in probability_html(0.4, 0.3)
