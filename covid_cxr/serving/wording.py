"""What the Space says, in a clinician's words: the answer, the refusal, and how good the model is.

Every figure comes from the model folder (its config and all_results.json); nothing here claims more than those
measurements allow, and each says what it was measured on.
"""

from __future__ import annotations

from html import escape

from covid_cxr.evaluation.keys import (
    CV_FOLDS,
    CV_N,
    CV_ROC_AUC,
    CV_ROC_AUC_HIGH,
    CV_ROC_AUC_LOW,
    TEST_N,
    TEST_SENSITIVITY,
    TEST_SPECIFICITY,
)
from covid_cxr.lungs.measures import attention_warning
from covid_cxr.modeling.conformal import BOTH, COVID, DEFAULT_COVERAGE, NEITHER, OTHER
from covid_cxr.modeling.heatmap import colour_stops
from covid_cxr.serving.predictor import Prediction

FINDING = {"covid": "COVID-19 pattern", "non_covid": "no COVID-19 pattern"}  # what the model reports
RECORDED = {"covid": "COVID-19", "non_covid": "not COVID-19"}  # what an example's source recorded
NOT_A_DIAGNOSIS = "A research output, not a diagnosis."
SET_WORDS = {  # the prediction set (covid_cxr.modeling.conformal) in plain words, at its coverage
    **{
        one: "**At {coverage}: " + FINDING[label] + ".** Among validation films like this one, an answer given this "
        "way held the true class at least {coverage} of the time."
        for one, label in ((COVID, "covid"), (OTHER, "non_covid"))
    },
    BOTH: "**Uncertain at {coverage}: both a COVID-19 pattern and none remain possible.** The score lies in the "
    "hatched band of the bar.",
    NEITHER: "**At {coverage} the score fits neither class's validation films:** read it with caution.",
}
LUNGS_FIRST_WORDS = (  # a lungs-first model (covid_cxr.modeling.lungs_first): what it was shown, in plain words
    "The model was shown the lungs only: everything outside them was blurred first, as in its training (see the "
    "X-ray as the model saw it)."
)


def _share(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) else "not measured"


def _figure(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "not measured"


def verdict_markdown(
    result: Prediction,
    threshold: float,
    recorded: str | None = None,
    seconds: float = 0,
    coverage: float = DEFAULT_COVERAGE,
) -> str:
    """The finding at the stored threshold (not at 0.5), where the model looked, the label an example's source
    recorded beside it, and how long the answer took."""
    finding = FINDING["covid" if result.covid_detected else "non_covid"]
    side = "at or above" if result.covid_detected else "below"
    lines = [
        f"## {finding[0].upper() + finding[1:]}",
        f"COVID-19 score **{result.covid_probability:.2f}**, {side} the model's threshold of {threshold:.2f}. "
        + NOT_A_DIAGNOSIS,
    ]
    if recorded is not None:
        agrees = (recorded == "covid") == result.covid_detected
        lines.append(
            f"**Recorded label of this example: {RECORDED.get(recorded, recorded)}** "
            f"({'the model agrees' if agrees else 'the model disagrees'})."
        )
    if result.prediction_set is not None:
        lines.append(SET_WORDS[result.prediction_set].format(coverage=f"{coverage:.0%}"))
    if result.lungs_first:
        lines.append(LUNGS_FIRST_WORDS)
    if result.lung_attention is not None:
        lines.append(attention_words(result.lung_attention, result.lung_attention_ratio))
    lines.append(f"Answered in {seconds:.2f} s.")
    return "\n\n".join(lines)


def attention_words(share: float, ratio: float | None) -> str:
    """Where the model looked, for a clinician: its heat on the lungs against an even spread over the film."""
    text = f"{share:.0%} of the model's attention is on the lungs (outlined in green)"
    if ratio is None or attention_warning(ratio):
        return text + (
            ", **no more than on the rest of the image for its size: the score may reflect the hospital, the "
            "film or the patient's position rather than the lungs.**"
        )
    return text + f": {ratio:.1f} times as concentrated there as an even spread over the image would be."


def refusal_markdown(message: str, seconds: float | None = None) -> str:
    timing = "" if seconds is None else f"\n\nAnswered in {seconds:.2f} s."
    return f"## Not analysed\n\n{message}{timing}"


def probability_html(
    covid_probability: float | None,
    threshold: float,
    band: tuple[float, float] | None = None,
    coverage: float = DEFAULT_COVERAGE,
) -> str:
    """The COVID-19 score as a bar from 0 to 1 with the threshold marked on it, and the band where the answer is
    uncertain at `coverage` (Predictor.band) shaded; empty before an answer."""
    if covid_probability is None:
        return ""
    shaded, words = "", ""
    if band is not None:
        left, width = f"{100 * band[0]:.1f}%", f"{100 * (band[1] - band[0]):.1f}%"
        shaded = (
            f'<div title="uncertain at {coverage:.0%}" style="position:absolute;left:{left};width:{width};top:0;'
            'bottom:0;background:repeating-linear-gradient(45deg,#0003 0 4px,#0000 4px 8px)"></div>'
        )
        words = (
            f" The hatched band ({band[0]:.2f} to {band[1]:.2f}) is where both answers remain possible at "
            f"{coverage:.0%}: a score inside it is uncertain."
        )
    score, mark = f"{100 * covid_probability:.1f}%", f"{100 * threshold:.1f}%"
    colour = "#c0392b" if covid_probability >= threshold else "#2e86c1"
    return f"""<div id="score" style="font-size:15px">
<div style="display:flex;justify-content:space-between"><span>{FINDING["non_covid"]}</span>
<span>{FINDING["covid"]}</span></div>
<div style="position:relative;height:22px;background:#e5e7eb;border-radius:4px;margin:4px 0 2px">
<div style="width:{score};height:100%;background:{colour};border-radius:4px"></div>{shaded}
<div title="threshold" style="position:absolute;left:{mark};top:-4px;bottom:-4px;width:3px;background:#111"></div>
</div>
<div style="position:relative;height:18px;font-size:13px">
<span style="position:absolute;left:0">0</span>
<span style="position:absolute;left:{mark};transform:translateX(-50%)">threshold {threshold:.2f}</span>
<span style="position:absolute;right:0">1</span></div>
<p style="margin:4px 0 0">COVID-19 score {covid_probability:.2f}. The black mark is the threshold: at or above it
the model reports a {FINDING["covid"]}. The score is not the chance that this patient has COVID-19, which also
depends on how common it is among your patients (see <i>How good is this model?</i>).{words}</p></div>"""


def heat_legend_html() -> str:
    """The heat map's colour scale and the outline's meaning, under the heat map."""
    gradient = ", ".join(colour_stops())
    return f"""<div style="font-size:13px">
<div style="height:12px;border-radius:3px;background:linear-gradient(to right, {gradient})"></div>
<div style="display:flex;justify-content:space-between"><span>little weight on the answer</span>
<span>most weight on the answer</span></div>
<div><span style="color:#00a000;font-weight:bold">green line</span>: the lung fields the lung segmenter found
(when one is installed)</div></div>"""


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV) at a prevalence, by Bayes' rule from the sensitivity and specificity."""
    flagged = sensitivity * prevalence + (1 - specificity) * (1 - prevalence)
    cleared = specificity * (1 - prevalence) + (1 - sensitivity) * prevalence
    ppv = sensitivity * prevalence / flagged if flagged else float("nan")
    npv = specificity * (1 - prevalence) / cleared if cleared else float("nan")
    return ppv, npv


def quality_markdown(facts: dict[str, object], prevalence: float) -> str:
    """Sensitivity and specificity at the threshold on held-out images of the sources that hold both classes
    (those where the hospital does not give the label away), PPV and NPV at `prevalence`, and the
    cross-validated figure with its interval."""
    sensitivity, specificity, tested = facts[TEST_SENSITIVITY], facts[TEST_SPECIFICITY], facts[TEST_N]
    where = f"{tested:.0f} held-out test X-rays" if tested else "held-out test X-rays"
    sources = facts.get("training_sources") or []
    if len(sources) == 1:
        whence = f"all from the one source it was trained on (`{escape(sources[0])}`)"
    else:
        whence = "from the hospitals that sent both COVID-19 and other X-rays (elsewhere the hospital alone gives "
        whence += "the answer away)"
    lines = [f"At its threshold of {facts['threshold']:.2f}, measured on {where} {whence}:"]
    if isinstance(sensitivity, float) and isinstance(specificity, float):
        ppv, npv = predictive_values(sensitivity, specificity, prevalence)
        lines += [
            f"- **Sensitivity {_share(sensitivity)}**: of 100 X-rays with COVID-19, it flags about "
            f"{100 * sensitivity:.0f}.",
            f"- **Specificity {_share(specificity)}**: of 100 X-rays without COVID-19, it clears about "
            f"{100 * specificity:.0f}.",
            f"- If **{prevalence:.0%}** of the patients you would image have COVID-19: a flagged X-ray has COVID-19 "
            f"**{_share(ppv)}** of the time (PPV), a cleared one is free of it **{_share(npv)}** of the time (NPV).",
        ]
    else:
        lines.append("- Sensitivity and specificity: not measured for this model.")
    if facts[CV_ROC_AUC] is not None:
        lines.append(
            f"\nHow well it ranks X-rays with COVID-19 above those without, on new patients (ROC AUC; 0.5 is a coin "
            f"toss, 1 is perfect): **{_figure(facts[CV_ROC_AUC])}** (95% interval "
            f"{_figure(facts[CV_ROC_AUC_LOW])} to {_figure(facts[CV_ROC_AUC_HIGH])}), from "
            f"{facts[CV_FOLDS]:.0f}-fold cross-validation over {facts[CV_N]:.0f} X-rays of those hospitals."
        )
    data = "These are small public collections" if facts.get("public_collection") else "This is its own test data"
    lines.append(f"\n{data}, not a clinical trial: the figures may not hold for your patients, scanners or hospital.")
    return "\n".join(lines)


def disclaimer_markdown(facts: dict[str, object]) -> str:
    """What the page says first: not a device, and what the training data can and cannot show."""
    sources = facts.get("training_sources") or []
    text = "**Research demo, not a medical device.** Do not use it to diagnose, screen, triage or treat anyone."
    if facts.get("confounded"):
        text += " It was trained on a small collection in which the label is tied to the hospital an image came from."
    elif len(sources) == 1:
        text += " It was trained on X-rays of one source only, and has not been checked on any other hospital's."
    return text


def trained_on(facts: dict[str, object]) -> str:
    sources = facts.get("training_sources") or []
    if facts.get("public_collection") or not sources:
        return "public chest X-ray collections"
    return f"chest X-rays of {len(sources)} source{'s' if len(sources) > 1 else ''}"


def model_markdown(facts: dict[str, object]) -> str:
    backbone = escape(str(facts["backbone"]))
    return (
        f"**About the model**: an image classifier ({backbone}) trained on {trained_on(facts)} (details in its "
        "model card), for research only. It has not been tested on patients, scanners or hospitals beyond its "
        "training data."
    )
