"""`audit()`: score every image three ways, measure, and write `audit.json`, `AUDIT.md` and its plots.

Steps: check the output folder -> load the model and the lung finder -> read the data -> score each chunk of
images (whole, lungs only, lungs hidden; penultimate features of the whole image) -> measure -> write into a
fresh folder that replaces the output folder only when complete.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from accelerate.utils import gather_object
from PIL import Image
from tqdm.auto import tqdm

from covid_cxr import __version__
from covid_cxr.audit import measures
from covid_cxr.audit.classifier import AuditedClassifier, AuditError, load_classifier
from covid_cxr.audit.images import AuditData, Refusal, from_splits, open_data
from covid_cxr.audit.occlusion import VIEWS, WHOLE, LungFinder, SegmenterLungs, lung_finder, views
from covid_cxr.audit.plots import plot_occlusion, plot_views
from covid_cxr.audit.report import OCCLUSION_PLOT, VIEWS_PLOT, markdown, summary
from covid_cxr.data.errors import ImageError
from covid_cxr.data.imaging import fault_reason, load_image
from covid_cxr.data.processor_size import presized
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.inference import run_model, softmax
from covid_cxr.modeling.lungs_first import FOCUS_DEFAULTS
from covid_cxr.outputs import check_output_dir, replacing
from covid_cxr.scoring.engine import launch_state

REPORT_NAME, MARKDOWN_NAME = "audit.json", "AUDIT.md"


@dataclass
class AuditReport:
    """What `audit()` measured (the content of audit.json) and where it wrote it."""

    results: dict
    output_dir: Path

    def summary(self) -> str:
        return summary(self.results)


@dataclass
class Scored:
    """The images the model scored: P(positive) per view, penultimate features of the whole image, and what
    the bootstrap and the subsets need."""

    probabilities: dict[str, list[np.ndarray]] = field(default_factory=dict)
    features: list[np.ndarray] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # row indices into the data
    example: dict[str, Image.Image] | None = None  # the first scored film in every view


def audit(
    model: str,
    data: str,
    output_dir: str | Path,
    positive_label: str = "covid",
    lung_segmenter: str | Path | None = None,
    split: str = "test",
    batch_size: int = 16,
    bootstrap_rounds: int = 2000,
) -> AuditReport | None:
    """Audit the classifier `model` (a folder or a Hub id) on `data` (see covid_cxr.audit.images), with the lung
    fields of `lung_segmenter` (a segmenter or a mask folder; without it there is no occlusion test). Under
    `accelerate launch` the processes share the scoring and the main process measures, writes and returns the
    report (the others None)."""
    inputs = {"--model": model, "--data": data, "--lung_segmenter": lung_segmenter}
    check_output_dir(output_dir, {k: v for k, v in inputs.items() if v and Path(v).exists()}, replaces=REPORT_NAME)
    classifier = load_classifier(model, positive_label)
    classifier.model.to(launch_state().device)  # a launch's GPU, when there is one
    finder = lung_finder(lung_segmenter) if lung_segmenter else None
    with open_data(data, split) as images:
        scored = score(classifier, images, finder, batch_size)
        if not scored.kept:
            raise AuditError(f"--data {data}: no image could be scored ({len(images.refused)} refused)")
        if not launch_state().is_main_process:
            return None
        results = measure(classifier, images, scored, bootstrap_rounds)
    results["lungs"] = describe_lungs(lung_segmenter, finder)
    with replacing(output_dir) as staging:
        (staging / REPORT_NAME).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        if results["occlusion"] is not None:
            plot_occlusion({classifier.name: results["occlusion"]}, staging / OCCLUSION_PLOT)
            plot_views(scored.example, staging / VIEWS_PLOT)
        (staging / MARKDOWN_NAME).write_text(markdown(results), encoding="utf-8")
    return AuditReport(results, Path(output_dir))


def score(
    classifier: AuditedClassifier,
    data: AuditData,
    finder: LungFinder | None,
    batch_size: int,
    whole: np.ndarray | None = None,
) -> Scored:
    """Every readable image with usable lungs, in each view; the others join `data.refused` with the reason.
    Under `accelerate launch` each process scores its share of the batches, and every process gets them all back
    in order. `whole`: the whole films' probabilities when already known (a fine-tune's own test scoring), taken
    instead of scoring that view again (no features are kept then)."""
    state = launch_state()
    scored = Scored({view: [] for view in (VIEWS if finder else (WHOLE,))})
    before = len(data.refused)
    starts = list(range(0, data.images.num_rows, batch_size))
    with state.split_between_processes(starts) as mine:
        for start in tqdm(mine, desc="Auditing", unit="batch", disable=not state.is_main_process):
            score_chunk(classifier, data, finder, range(start, min(start + batch_size, data.images.num_rows)), whole,
                        scored)  # fmt: skip
    if state.num_processes == 1:
        return scored
    parts = gather_object([(scored, data.refused[before:])])  # in process order: the batches' order
    data.refused[before:] = [refusal for _, refused in parts for refusal in refused]
    return Scored(
        {view: [p for part, _ in parts for p in part.probabilities[view]] for view in scored.probabilities},
        [f for part, _ in parts for f in part.features],
        [i for part, _ in parts for i in part.kept],
        next((part.example for part, _ in parts if part.example), None),
    )


def score_chunk(
    classifier: AuditedClassifier,
    data: AuditData,
    finder: LungFinder | None,
    rows: range,
    whole: np.ndarray | None,
    scored: Scored,
) -> None:
    """Score `rows` of the data into `scored`. A film is brought to the model's input size first when its
    processor squashes (`presized`: the same pixels the processor would give), so the views are made at the size
    the model reads, not at the film's own."""
    chunk = data.images[rows.start : rows.stop]
    films, names, indices = [], [], []
    for index, entry, name in zip(rows, chunk["image"], chunk["audit_file"], strict=True):
        try:
            films.append(presized(load_image(entry["bytes"] or entry["path"]).image, classifier.processor))
        except ImageError as err:
            data.refused.append(Refusal(name, str(err)))
            continue
        except Exception as err:  # a fault in this code or a library, not in the file: refuse it, keep going
            data.refused.append(Refusal(name, fault_reason(Path(name), err)))
            continue
        names.append(name)
        indices.append(index)
    batch, taken = [], []
    found = finder.find(films, names) if finder else [None] * len(films)
    for film, name, index, lungs in zip(films, names, indices, found, strict=True):
        if isinstance(lungs, str):
            data.refused.append(Refusal(name, lungs))
            continue
        batch.append({WHOLE: film.convert("L")} if lungs is None else views(film, lungs))
        taken.append(index)
    if not batch:
        return
    scored.kept += taken
    for view in scored.probabilities:
        if view == WHOLE and whole is not None:
            scored.probabilities[view].append(whole[taken])
            continue
        outputs = run_model(classifier.model, classifier.processor, [b[view] for b in batch], len(batch))
        scored.probabilities[view].append(softmax(outputs.logits)[:, classifier.positive])
        if view == WHOLE:
            scored.features.append(outputs.features)
    scored.example = scored.example or batch[0]


def measure(classifier: AuditedClassifier, data: AuditData, scored: Scored, rounds: int) -> dict:
    """audit.json's figures (see covid_cxr.audit.measures), the model's facts and the refusals."""
    labels = np.asarray(data.labels)[scored.kept]
    sources = [data.sources[i] for i in scored.kept]
    groups = np.asarray(data.groups)[scored.kept]
    probabilities = {view: np.concatenate(parts) for view, parts in scored.probabilities.items()}
    features = np.concatenate(scored.features)
    several_patients = len(np.unique(groups)) >= 2
    several_sources = several_patients and len(set(sources)) >= 2  # one source gives nothing away
    folds = measures.folds_of(sources, groups) if several_patients else None
    kept_strata = {name: values[scored.kept] for name, values in data.strata.items()}
    return {
        "tool": "covid-cxr audit",
        "version": __version__,
        "date": datetime.date.today().isoformat(),
        "model": classifier.facts(),
        "data": {
            "name": data.name,
            "split": data.split,
            "n_scored": len(scored.kept),
            "mixed_sources": data.mixed_sources,
        },
        "discrimination": measures.discrimination(
            probabilities[WHOLE], labels, sources, groups, classifier.threshold, data.mixed_sources, rounds
        ),
        "source_only": measures.source_only(labels, sources, folds, groups, rounds) if several_sources else None,
        "occlusion": measured_occlusion(data, scored, rounds),
        "source_probe": measures.source_readability(features, sources, folds) if several_patients else None,
        **inside_figures(
            probabilities[WHOLE], features, labels, sources, groups, kept_strata, data.mixed_sources, folds, rounds
        ),
        "refused": [{"file_name": r.file_name, "reason": r.reason} for r in data.refused],
        "settings": {
            "bootstrap_rounds": rounds,
            "lung_dilation": FOCUS_DEFAULTS["dilation"],
            "outside_blur": FOCUS_DEFAULTS["blur"],
        },
    }


def measured_occlusion(data: AuditData, scored: Scored, rounds: int) -> dict | None:
    """The occlusion test's figures per subset; None when the images were scored whole only (no lungs given)."""
    if len(scored.probabilities) != len(VIEWS):
        return None
    probabilities = {view: np.concatenate(parts) for view, parts in scored.probabilities.items()}
    sources = [data.sources[i] for i in scored.kept]
    subsets = measures.occlusion_subsets(sources, data.mixed_sources)
    labels, groups = np.asarray(data.labels)[scored.kept], np.asarray(data.groups)[scored.kept]
    return measures.occlusion(probabilities, labels, subsets, groups, rounds)


def occlusion_test(
    model: str | Path,
    splits: datasets.DatasetDict,
    lungs: LungSegmenter,
    split: str = "test",
    rounds: int = 2000,
    whole: np.ndarray | None = None,
) -> dict | None:
    """The occlusion test alone, as audit.json's "occlusion" holds it: what a fine-tune measures on its own test
    split for its model card (the model folder as saved and loaded back, the segmenter the run already holds, and
    `whole`, the split's calibrated probabilities the run already scored, when given)."""
    classifier = load_classifier(str(model))
    data = from_splits("the training dataset", splits, split, [])
    scored = score(classifier, data, SegmenterLungs(lungs), batch_size=16, whole=whole)
    return measured_occlusion(data, scored, rounds) if scored.kept else None


def inside_test(
    splits: datasets.DatasetDict, whole: np.ndarray, features: np.ndarray, split: str = "test", rounds: int = 2000
) -> dict[str, object]:
    """The projection, sex and age figures alone, as audit.json's "strata" and "projection_probe" hold them: what
    a fine-tune measures on its own test split for its model card, from the split's calibrated probabilities
    (`whole`) and penultimate features it already scored."""
    data = from_splits("the training dataset", splits, split, [])
    labels, groups = np.asarray(data.labels), np.asarray(data.groups)
    folds = measures.folds_of(data.sources, groups) if len(np.unique(groups)) >= 2 else None
    return inside_figures(whole, features, labels, data.sources, groups, data.strata, data.mixed_sources, folds, rounds)


def inside_figures(
    whole: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    sources: list[str],
    groups: np.ndarray,
    strata: dict[str, np.ndarray],
    mixed_sources: list[str],
    folds: np.ndarray | None,
    rounds: int,
) -> dict[str, object]:
    """audit.json's "strata" and "projection_probe" (the probe over `folds`; None without them or a projection)."""
    probe = None
    if folds is not None and "projection" in strata:
        probe = measures.projection_readability(features, strata["projection"], folds)
    return {
        "strata": measures.inside(whole, labels, sources, groups, strata, mixed_sources, rounds),
        "projection_probe": probe,
    }


def describe_lungs(lungs: str | Path | None, finder: LungFinder | None) -> str | None:
    if finder is None:
        return None
    kind = "the lung segmenter in" if isinstance(finder, SegmenterLungs) else "the masks in"
    return f"{kind} `{lungs}`"
