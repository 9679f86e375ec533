"""The audit in words: `AUDIT.md` for a reviewer who has never seen this project, and the console summary, both
written from the figures of `audit.json` alone (so the words can never say more than the figures do)."""

from __future__ import annotations

from covid_cxr.audit.measures import NO_DISCRIMINATION, READS_LUNGS, READS_OUTSIDE, Figure
from covid_cxr.audit.occlusion import LUNGS_HIDDEN, LUNGS_ONLY, VIEW_NAMES, VIEWS, WHOLE
from covid_cxr.audit.plots import SUBSET_NAMES
from covid_cxr.cards.markdown import markdown_rows
from covid_cxr.evaluation.keys import ALL, MIXED
from covid_cxr.modeling.lungs_first import FOCUS_DEFAULTS

OCCLUSION_PLOT, VIEWS_PLOT = "audit_occlusion.png", "audit_views.png"
LOOKS = {
    READS_OUTSIDE: "it looks like it reads something outside the lungs",
    READS_LUNGS: "it looks like it reads the lungs",
    NO_DISCRIMINATION: "it does not tell the classes apart here, so the occlusion test cannot say what it reads",
}
EITHER = ": it keeps most of its discrimination with either part of the film hidden, so it can read the lungs too"
UNCLEAR_WORDS = (
    "the audit cannot tell whether it reads the lungs or something outside them (the interval of the share it keeps "
    "with the lungs hidden spans one half)"
)


def number(f: Figure, pattern: str = "{:.3f}") -> str:
    """A figure with its interval, e.g. 0.950 (95% CI 0.939-0.962); n/a when undefined."""
    if f["value"] is None:
        return "n/a"
    if f["low"] is None:
        return pattern.format(f["value"])
    return f"{pattern.format(f['value'])} (95% CI {pattern.format(f['low'])} to {pattern.format(f['high'])})"


def signed(f: Figure) -> str:
    return number(f, "{:+.3f}")


def looks(entry: dict) -> str:
    """The verdict of one occlusion subset in plain words, with the evidence."""
    whole, hidden, only = entry[WHOLE]["roc_auc"], entry[LUNGS_HIDDEN], entry[LUNGS_ONLY]
    words = LOOKS.get(entry["verdict"], UNCLEAR_WORDS)
    if entry["verdict"] == NO_DISCRIMINATION:
        return f"{words}: its whole-image ROC AUC is {number(whole)}, an interval that reaches chance"
    return (
        f"{words}. With the lungs hidden its ROC AUC is {number(hidden['roc_auc'])}, against {number(whole)} on "
        f"the whole image; the paired change is {signed(hidden['change'])}, so it keeps "
        f"{number(hidden['kept'], '{:.0%}')} of its discrimination above chance. With only the lungs left sharp its "
        f"ROC AUC is {number(only['roc_auc'])}, {number(only['kept'], '{:.0%}')} kept"
        + (EITHER if entry["verdict"] == READS_OUTSIDE and (only["kept"]["low"] or 0) >= 0.5 else "")
    )


def verdict_lines(occlusion: dict | None) -> list[str]:
    if occlusion is None:
        return ["Occlusion test not run: no lung fields were given (--lung_segmenter)."]
    return [
        f"On {SUBSET_NAMES[s]} (n={occlusion[s]['n']}), {looks(occlusion[s])}." for s in SUBSET_NAMES if s in occlusion
    ]


def summary(results: dict) -> str:
    """The few lines the console shows."""
    model, data, discrimination = results["model"], results["data"], results["discrimination"]
    lines = [
        f"Audit of {model['id']} ({model['architecture']}; labels {', '.join(model['labels'])}; positive "
        f"{model['positive_label']}; threshold {model['threshold']:.3f} from {model['threshold_from']})",
        f"on {data['name']} ({data['split']}): {data['n_scored']} images scored, {len(results['refused'])} refused.",
    ]
    for subset in (ALL, MIXED):
        if subset in discrimination:
            d = discrimination[subset]
            lines.append(f"  {SUBSET_NAMES[subset]} (n={d['n']}): ROC AUC {number(d['roc_auc'])}")
    if results["source_only"]:
        lines.append(f"  the source alone predicts the label with ROC AUC {number(results['source_only'])}")
    lines += [f"  {line}" for line in verdict_lines(results["occlusion"])]
    if probe := results["source_probe"]:
        lines.append(f"  {probe_sentence(probe)}")
    if projection := (results.get("strata") or {}).get("projection"):
        lines.append(f"  {within_sentence(projection, 'projection')}")
    return "\n".join(lines)


def probe_sentence(probe: dict) -> str:
    return (
        f"A linear probe on the model's penultimate features names the source ({probe['n_sources']} sources) of "
        f"{probe['source_accuracy']:.0%} of images ({probe['folds']}-fold, patient-grouped; balanced accuracy "
        f"{probe['source_balanced_accuracy']:.0%}); always guessing the commonest source: "
        f"{probe['source_majority_baseline']:.0%}."
    )


STRATIFIER_WORDS = {"projection": "projection (AP, PA)", "sex": "sex", "age": "age band"}


def within_sentence(entry: dict, stratifier: str) -> str:
    """The model's ROC AUC against the same films' within-stratum figure and the stratum's own, in words."""
    return (
        f"Comparing only films of the same {stratifier}, its ROC AUC is {number(entry['within'])}, against "
        f"{number(entry['roc_auc'])} over all pairs of the same {entry['n']} films; the {stratifier} alone gives "
        f"{number(entry['alone'])}."
    )


def strata_table(strata: dict) -> str:
    rows = []
    for name, entry in ((n, strata.get(n)) for n in STRATIFIER_WORDS):
        if entry:
            within = [f"{s}: {number(e['roc_auc'])}" if "roc_auc" in e else f"{s}: one class ({e['n']})"
                      for s, e in entry["strata"].items()]  # fmt: skip
            rows.append([STRATIFIER_WORDS[name], f"{entry['n']} ({entry['n_covid']}), {entry['n_unknown']}",
                         number(entry["roc_auc"]), number(entry["within"]), number(entry["alone"]),
                         "; ".join(within)])  # fmt: skip
    header = ["stratified by", "films (COVID-19), unknown", "ROC AUC", "within strata", "the stratum alone"]
    return markdown_rows([*header, "within each stratum"], rows)


def inside_lines(strata: dict | None, probe: dict | None) -> list[str]:
    """The stratified figures and the projection probe in words and a table: AUDIT.md's section 4 and the model
    card's, from audit.json's "strata" and "projection_probe"."""
    if not strata or not any(strata.get(name) for name in STRATIFIER_WORDS):
        return [
            "Not measured: the data record no projection, sex or age, or no stratum of them holds both classes.",
            "",
        ]
    where = "the mixed-label sources" if strata["subset"] == MIXED else "all images"
    lines = [
        f"On {where}, over the films whose stratum is recorded: the model's ROC AUC; *within strata*, counting only "
        "pairs of one COVID-19 and one non-COVID film of the same stratum, so that the stratum cannot order a pair; "
        "and *the stratum alone*, each film scored by its stratum's COVID-19 share among the other folds' films (out "
        "of fold, so on few films a stratum that carries nothing can score well below one half: the held-out films "
        "pull their own stratum's share the other way). A portable AP film says 'sicker patient' without any "
        "opacity being read: a model whose figure falls to chance within projections reads the projection.",
        "",
        strata_table(strata),
        "",
    ]
    if strata.get("projection"):
        lines += [within_sentence(strata["projection"], "projection"), ""]
    if probe:
        lines += [
            f"A linear probe on the model's penultimate features reads the projection of "
            f"{probe['projection_accuracy']:.0%} of films ({probe['folds']}-fold, patient-grouped; balanced accuracy "
            f"{probe['projection_balanced_accuracy']:.0%}); always guessing the commoner projection: "
            f"{probe['projection_majority_baseline']:.0%}.",
            "",
        ]
    return lines


def discrimination_table(discrimination: dict) -> str:
    names = {ALL: "**all sources**", MIXED: "**mixed-label sources**"}
    rows = [
        [names.get(subset, subset), f"{d['n']} ({d['n_covid']})"]
        + [number(d[key]) for key in ("roc_auc", "sensitivity", "specificity", "ece")]
        for subset, d in discrimination.items()
    ]
    return markdown_rows(["subset", "images (COVID-19)", "ROC AUC", "sensitivity", "specificity", "ECE"], rows)


def occlusion_table(occlusion: dict) -> str:
    rows = []
    for subset in (s for s in SUBSET_NAMES if s in occlusion):
        entry = occlusion[subset]
        for view in VIEWS:
            change = signed(entry[view]["change"]) if "change" in entry[view] else "(reference)"
            kept = number(entry[view]["kept"], "{:.0%}") if "kept" in entry[view] else ""
            rows.append([f"{SUBSET_NAMES[subset]} (n={entry['n']})", VIEW_NAMES[view], number(entry[view]["roc_auc"]),
                         change, kept])  # fmt: skip
    return markdown_rows(["images", "view", "ROC AUC", "change vs whole", "discrimination kept"], rows)


def refused_lines(refused: list[dict], shown: int = 50) -> list[str]:
    if not refused:
        return ["None: every image was scored."]
    lines = [f"- `{r['file_name']}`: {r['reason']}" for r in refused[:shown]]
    if len(refused) > shown:
        lines.append(f"- ... and {len(refused) - shown} more, all listed in `audit.json`")
    return lines


def sources_sentence(mixed_sources: list[str], shown: str) -> str:
    """What the source can give away on this data: nothing with one source (no mixed-label subset is formed)."""
    if not mixed_sources:
        return (
            "This data has no mixed-label subset (it is one source, or each source holds one class), so nothing "
            "here tells reading the disease apart from recognising the source."
        )
    return (
        f"The *mixed-label sources* ({shown}) hold both classes, so a model cannot score there by recognising the "
        "source; the all-source row mostly measures how well the model recognises the source."
    )


def markdown(results: dict) -> str:
    """AUDIT.md: the question, the verdict, then each measurement and the model it was made of."""
    model, data = results["model"], results["data"]
    lines = [
        f"# Audit of `{model['id']}` on `{data['name']}`",
        "",
        f"Written by `covid-cxr audit` {results['version']} on {results['date']}. It asks one question of a COVID-19 "
        "chest X-ray classifier: does it read the lungs, or something else about the film, such as the hospital it "
        "came from? Public COVID-19 collections tie the label to the hospital, and models that score about 0.99 on "
        "their own data and about 0.70 on another hospital's learned to recognise the hospital (DeGrave et al., "
        "Nature Machine Intelligence 2021). Every interval below is a 95% patient-bootstrap interval; a difference "
        "whose interval holds zero is no finding.",
        "",
        "## In short",
        "",
        *[f"- {line}" for line in verdict_lines(results["occlusion"])],
        "",
        *_discrimination_section(results),
        *_occlusion_section(results),
        "## 3. Can the model's own features tell the source?",
        "",
        probe_sentence(results["source_probe"])
        if results["source_probe"]
        else "Not measured: the images come from one source only.",
        "",
        "## 4. Inside: the projection, the sex, the age",
        "",
        *inside_lines(results.get("strata"), results.get("projection_probe")),
        *_model_section(results),
    ]
    return "\n".join(lines) + "\n"


def _discrimination_section(results: dict) -> list[str]:
    model, data = results["model"], results["data"]
    mixed = ", ".join(data["mixed_sources"]) or "none"
    lines = [
        "## 1. Discrimination where the source cannot give the label away",
        "",
        sources_sentence(data["mixed_sources"], mixed) + " Sensitivity and "
        f"specificity are at the model's threshold, {model['threshold']:.3f} ({model['threshold_from']}); ECE is the "
        "expected calibration error of its probability for the positive class (10 bins).",
        "",
        discrimination_table(results["discrimination"]),
        "",
    ]
    if results["source_only"]:
        lines += [
            "How much the data itself gives away: scoring each image by nothing but the share of COVID-19 images "
            f"in its source (out of fold) gives ROC AUC **{number(results['source_only'])}** on all images.",
            "",
        ]
    return lines


def _occlusion_section(results: dict) -> list[str]:
    lines = ["## 2. Occlusion test: what is left when the lungs are hidden", ""]
    if results["occlusion"] is None:
        return [*lines, *verdict_lines(None), ""]
    return [
        *lines,
        f"Each image was scored three ways: whole; *lungs only* (everything outside the lung fields, dilated by "
        f"{FOCUS_DEFAULTS['dilation']:.0%} of the image side, blurred with a Gaussian of "
        f"{FOCUS_DEFAULTS['blur']:.0%} of the side: what a lungs-first model does inside itself); *lungs hidden* "
        "(the same dilated lung fields filled with the median grey "
        f"around them, the rest untouched). Lung fields: {results['lungs']}. *Discrimination kept* is "
        "(AUC - 0.5) / (whole-image AUC - 0.5): a model that reads the lungs keeps little of it with the lungs "
        "hidden; a model that reads the hospital keeps most of it. The verdict is given only when the whole "
        "interval of that share lies on one side of one half.",
        "",
        occlusion_table(results["occlusion"]),
        "",
        f"![ROC AUC of the three views]({OCCLUSION_PLOT})",
        "",
        f"![One film in the three views]({VIEWS_PLOT})",
        "",
    ]


def _model_section(results: dict) -> list[str]:
    model, data = results["model"], results["data"]
    return [
        "## 5. The model",
        "",
        f"- id: `{model['id']}` ({model['architecture']}, processor {model['processor']})",
        f"- labels: {', '.join(model['labels'])}; positive class: `{model['positive_label']}`",
        f"- input: {model['input_size'][0]}x{model['input_size'][1]} px; crops the film: {model['crops_the_film']}",
        f"- threshold: {model['threshold']:.3f}, {model['threshold_from']}",
        f"- data: `{data['name']}`, {data['split']}: {data['n_scored']} images scored, {len(results['refused'])} "
        "refused:",
        "",
        *refused_lines(results["refused"]),
        "",
        "Not a medical device: this audit says what a model appears to rely on, on these images; it validates "
        "nothing for clinical use.",
    ]
