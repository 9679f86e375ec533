"""The model card: `model_card.md` filled from one typed context holding the run's measured figures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from covid_cxr.cards.facts import DataFacts
from covid_cxr.cards.markdown import TEMPLATES, markdown_rows, markdown_table
from covid_cxr.evaluation.grouped import MIXED, Evaluation
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.model_folder import LICENSE
from covid_cxr.modeling.calibration import Calibration
from covid_cxr.modeling.conformal import DEFAULT_COVERAGE, min_films
from covid_cxr.modeling.scope_guard import MIN_REFERENCES

_TABLE_KEYS = ("n", "roc_auc", "sensitivity", "specificity", "accuracy", "ppv", "npv", "ece")


@dataclass(frozen=True)
class Recipe:
    """How the model was trained, in the words the card prints."""

    image_size: int | None
    trainable_blocks: int  # -1: all
    epochs: float
    batch_size: int
    learning_rate: float
    scheduler: str
    weight_decay: float
    seed: int
    precision: str
    early_stopping_patience: int
    lung_focus: bool = False
    # lungs first inside the model's forward, at its input resolution (reports written before this field measured
    # lungs first on films blurred at full resolution before the model saw them)
    focus_in_model: bool = False
    layer_decay: float = 1.0
    mixed_label_weight: float = 1.0
    source_adversary: float = 0.0
    source_adversary_ramp: bool = False
    max_steps: int = -1  # -1: the epochs decide how long it trains
    framing: str = "centre crop"  # how the film meets the input square; reports written before this field cropped


@dataclass(frozen=True)
class TrainingRun:
    """What the Trainer did, beside what it was asked (the Recipe): the steps it ran of those planned (fewer when
    early stopping ended it) and the step whose checkpoint the model is (None: the last step's weights)."""

    steps: int
    planned_steps: int
    kept_step: int | None
    metric: str | None  # the validation figure that chose the kept checkpoint

    @classmethod
    def of(cls, state, load_best: bool, metric: str | None) -> TrainingRun:
        """From the Trainer's TrainerState once it has trained."""
        kept = state.best_global_step if load_best and state.best_global_step else None
        return cls(state.global_step, state.max_steps, kept, metric if kept else None)

    @property
    def stopped_early(self) -> bool:
        return self.steps < self.planned_steps


@dataclass(frozen=True)
class ModelCardContext:
    evaluation: Evaluation
    calibration: Calibration
    baseline: dict[str, float]  # frozen-feature probe figures; empty when the probes were not run
    lung_attention: dict[str, float]  # Grad-CAM heat inside the lungs on test; empty without a lung segmenter
    occlusion: dict[str, dict]  # the occlusion test on test (covid_cxr.audit.card), by subset; empty without lungs
    inside: str  # the projection, sex and age figures on test, in words (covid_cxr.audit.report.inside_lines)
    cross_validation: dict[str, float]  # the yardstick's figures for this recipe (cv_*); empty if it measured another
    backbone: dict[str, object]  # provenance of the starting weights
    base_model: str | None  # Hub repo the weights derive from
    dataset_hub_id: str | None  # the Hub dataset the card names (None: a local dataset, never named by its path)
    facts: DataFacts  # sources, licences and how the label follows the source, counted from the training data
    split_sizes: dict[str, int]
    recipe: Recipe
    hardware: str
    hub_repo_id: str | None = None  # where the model is pushed, for the card's usage example
    model_folder: str | None = None  # the folder as the run was given it: the usage example's model when not pushed
    run: TrainingRun | None = None  # what the Trainer did (None: not known, as for a card rendered on its own)
    test_without_patient: int = 0  # test images without a patient id: each counts as its own patient
    guard_references: int = 0  # films the scope guard was fitted on (validation, topped up from training)


def figure(value: float | None, digits: int = 3) -> str:
    """A measured figure as the card prints it; "n/a" for one that is undefined (NaN: a split of one class)."""
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def shown_subsets(grouped: dict[str, dict[str, float]], facts: DataFacts) -> dict[str, dict[str, float]]:
    """The rows a card shows: with one source, its row and the mixed-label row would only repeat "all"."""
    return {"all": grouped["all"]} if facts.one_source else grouped


def metric_table(grouped: dict[str, dict[str, float]]) -> str:
    frame = pd.DataFrame({group: {k: values[k] for k in _TABLE_KEYS} for group, values in grouped.items()}).T
    frame.index.name = "subset"
    formatted = frame.apply(
        lambda col: col.map(lambda v: f"{v:.0f}" if col.name == "n" else ("n/a" if pd.isna(v) else f"{v:.3f}"))
    )
    return markdown_table(formatted)


def eval_results(context: ModelCardContext) -> list[EvalResult]:
    """The model-index entries: test ROC AUC, sensitivity and specificity, on all sources and mixed-label ones."""
    dataset = context.dataset_hub_id
    if dataset is None:
        return []  # model-index must name a real dataset; a local folder is not one
    return [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test",
            metric_type=key,
            metric_name=f"{key} ({subset})",
            metric_value=round(values[key], 4),
        )
        for subset, values in context.evaluation.test.items()
        if subset in ("all", MIXED)
        for key in ("roc_auc", "sensitivity", "specificity")
        if not pd.isna(values[key])
    ]


def attention_groups(lung_attention: dict[str, float]) -> list[dict[str, object]]:
    """How often the attention warning fired per source and label, from the flat test figures
    (test_<source>_<label>_lung_attention_warned; covid_cxr.training.report.lung_attention_summary)."""
    prefix, suffix = "test_", "_lung_attention_warned"
    groups = []
    for key, warned in lung_attention.items():
        middle = key[len(prefix) : -len(suffix)] if key.startswith(prefix) and key.endswith(suffix) else ""
        label = next((name for name in sorted(CLASS_NAMES, key=len, reverse=True) if middle.endswith(f"_{name}")), None)
        if label is not None:
            groups.append({"source": middle[: -len(label) - 1], "label": label, "warned": warned})
    return groups


def prediction_sets(evaluation: Evaluation, calibration: Calibration, facts: DataFacts) -> str:
    """The card's words on the prediction sets: the bands at DEFAULT_COVERAGE, and coverage and the uncertain
    share on test per subset, with their intervals; why none when the model has no validation probabilities, and
    why every answer is uncertain when a class has too few validation films to promise the coverage."""
    conformal = calibration.conformal
    if conformal is None or not evaluation.conformal:
        return "Not available: this model holds no validation probabilities, so it claims no coverage."
    floor, ceiling = conformal.bounds(DEFAULT_COVERAGE)
    rows = [
        [name, entry["n"], interval(entry["coverage"]), interval(entry["uncertain"])]
        for name, entry in shown_subsets(evaluation.conformal, facts).items()
    ]
    table = markdown_rows(["subset", "n", "coverage", "uncertain"], rows)
    if math.isinf(floor) or math.isinf(ceiling):
        return (
            f"Not promised: the validation split holds {len(conformal.covid)} COVID-19 and {len(conformal.other)} "
            f"other films, too few of a class to promise {DEFAULT_COVERAGE:.0%} (a class needs at least "
            f"{min_films(DEFAULT_COVERAGE)}), so "
            + (
                "both classes stay in every film's set: every answer is uncertain"
                if math.isinf(floor) and math.isinf(ceiling)
                else "that class stays in every film's set"
            )
            + ". On the test split:\n\n"
            + table
        )
    band = conformal.band(DEFAULT_COVERAGE)
    words = (
        f"uncertain (both possible) from {band[0]:.3f} to {band[1]:.3f}"
        if band
        else f"neither class between {ceiling:.3f} and {floor:.3f}"
    )
    return (
        f"Each answer can also be a set of the classes the model cannot rule out at {DEFAULT_COVERAGE:.0%} "
        f"(split-conformal, class by class, fitted on the {len(conformal.covid)} COVID-19 and {len(conformal.other)} "
        f"other validation films): at P(covid) of {floor:.3f} or more it says COVID-19 pattern, at "
        f"{ceiling:.3f} or less no COVID-19 pattern; {words}. `covid-cxr predict` writes the set in its "
        "`prediction_set` column (`--coverage` chooses another). On the test split (95% patient-bootstrap "
        "intervals): *coverage* is the share of films whose true class is in their set, *uncertain* the share "
        "answered with both. The coverage is promised for films like the validation films, class by class, not "
        "for each source.\n\n" + table
    )


def interval(f: dict) -> str:
    return "n/a" if f["value"] is None else f"{f['value']:.1%} ({f['low']:.1%}-{f['high']:.1%})"


def render_model_card(context: ModelCardContext) -> ModelCard:
    """Fill ``model_card.md`` with this run's measured metrics (test split at the stored threshold)."""
    card_data = ModelCardData(
        model_name="covid-cxr",
        license="other",
        license_name="research-only",
        license_link=LICENSE,
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=context.base_model,
        datasets=[context.dataset_hub_id] if context.dataset_hub_id else None,
        metrics=["roc_auc", "accuracy", "sensitivity", "specificity", "f1"],
        tags=["medical", "chest-x-ray", "covid-19", "research-only", "not-for-clinical-use"],
        eval_results=eval_results(context) or None,
    )
    evaluation = context.evaluation
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        test=evaluation.test,
        test_table=metric_table(shown_subsets(evaluation.test, context.facts)),
        eval_table=metric_table(shown_subsets(evaluation.validation, context.facts)),
        scope_false_reject_rate=evaluation.scope_false_reject_rate,
        model_id=context.hub_repo_id or context.model_folder or ".",
        mixed_sources=evaluation.mixed_sources,
        temperature=context.calibration.temperature,
        temperature_at_bound=context.calibration.temperature_at_bound,
        validation_images=int(evaluation.validation["all"]["n"]),
        fmt=figure,
        facts=context.facts,
        threshold=context.calibration.threshold,
        baseline=context.baseline,
        lung_attention=context.lung_attention,
        attention_groups=attention_groups(context.lung_attention),
        occlusion=context.occlusion,
        inside=context.inside,
        prediction_sets=prediction_sets(evaluation, context.calibration, context.facts),
        cross_validation=context.cross_validation,
        backbone=context.backbone,
        dataset_hub_id=context.dataset_hub_id,
        counts=context.split_sizes,
        test_without_patient=context.test_without_patient,
        guard_references=context.guard_references,
        min_references=MIN_REFERENCES,
        recipe=context.recipe,
        run=context.run,
        hardware=context.hardware,
    )


def research_only_terms(facts: DataFacts, title: str = "covid-cxr model", trained: str = "fine-tuned") -> str:
    """The terms `license: other` links to: research use only, and the training data's own licences (`trained`:
    how the weights were made from the images)."""
    if facts.restrictive_licences:
        data = (
            f"The weights were {trained} on images whose licences include non-commercial, no-derivatives or "
            '"research purposes only" terms; those terms carry over, so no commercial use.'
        )
    elif facts.licences_stated and "" not in facts.licences:
        data = f"The images it was {trained} on are licensed {', '.join(facts.licences)}; their terms carry over."
    else:
        data = f"The images it was {trained} on state no licence: their owner's terms carry over."
    return (
        f"# {title}: terms of use\n\n"
        "Research and teaching only. This model is **not a medical device**: do not use it to diagnose, screen, "
        f"triage or treat anyone, or in any clinical workflow.\n\n{data} The code that trained it is MIT-licensed; "
        "the starting backbone's licence is named in the model card.\n"
    )
