"""The yardstick's data: the whole curated set as one dataset, its folds, its frozen features (cached), and the
rows it measures (a scorer cross-validated, its cost, and its change against a baseline)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageOps
from transformers import AutoImageProcessor, BaseImageProcessor

from covid_cxr.audit.occlusion import blur_image_outside
from covid_cxr.data.processor_size import set_processor_size
from covid_cxr.data.splits import SPLIT_NAMES
from covid_cxr.evaluation.bootstrap import roc_auc, roc_auc_difference_ci
from covid_cxr.evaluation.grouped import MIXED, mixed_label_sources, reported_subsets
from covid_cxr.evaluation.probes import label_probe
from covid_cxr.lungs.dataset_masks import MASK_COLUMN, with_lung_masks
from covid_cxr.lungs.segmenter import LungSegmenter
from covid_cxr.modeling.inference import run_model
from covid_cxr.training.trainer import load_model
from study.folds import FoldScorer, OutOfFold, dataset_folds, rows_key, summarise
from study.intensity import normalise_intensity

DINO = "dinov2-small-imgfocus"
MOBILENET = "mobilenet-v2-nsfwjs"
CROPS = {  # test-time views: (left, top, right, bottom) as fractions of the image
    "crop-centre": (0.05, 0.05, 0.95, 0.95),
    "crop-upper": (0.05, 0.0, 0.95, 0.9),
    "crop-lower": (0.05, 0.1, 0.95, 1.0),
}


def _pad(image: Image.Image) -> Image.Image:
    """The film padded with black to a square (letterboxed), its aspect ratio kept."""
    side = max(image.size)
    return ImageOps.pad(image.convert("L"), (side, side), color=0)


def centre_crop(processor: BaseImageProcessor, side: int) -> None:
    """The framing the backbones' processors come with, and the default recipe's before the whole film: the short
    side resized to side x 8/7, then its centre cropped to side x side."""
    processor.do_center_crop = True
    processor.size = {"shortest_edge": round(side * 8 / 7)}
    processor.crop_size = {"height": side, "width": side}


def _crop(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    width, height = image.size
    return image.crop((round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)))


VIEWS: dict[str, Callable[[dict], Image.Image]] = {
    "plain": lambda row: row["image"],
    "histogram": lambda row: normalise_intensity(row["image"], "histogram"),
    "clahe": lambda row: normalise_intensity(row["image"], "clahe"),
    "pad": lambda row: _pad(row["image"]),
    "lung-blur": lambda row: blur_image_outside(row["image"], np.asarray(row[MASK_COLUMN], dtype=bool)),
    **{name: (lambda row, box=box: _crop(row["image"], box)) for name, box in CROPS.items()},
}


class ViewedImages(Sequence):
    """The dataset's images through a view, decoded one at a time (run_model asks for them batch by batch)."""

    def __init__(self, dataset: datasets.Dataset, view: Callable[[dict], Image.Image]) -> None:
        self.dataset, self.view = dataset, view

    def __len__(self) -> int:
        return self.dataset.num_rows

    def __getitem__(self, index: int) -> Image.Image:
        return self.view(self.dataset[index])


@dataclass
class Row:
    """One measured scorer: its out-of-fold scores and what it cost."""

    lever: str
    setting: str
    out_of_fold: OutOfFold
    cpu_seconds: float
    note: str = ""
    seed_of_default: int | None = None  # set on the rows that fine-tune train/finetune.py's default recipe
    compared_with: Row | None = None  # a second baseline (the default fine-tune), beside the reference


@dataclass(frozen=True)
class Settings:
    """What every study on the yardstick reads (study.quality and study.whole_film parse these flags, and more of
    their own): the data and models, the folds, and how their rows are measured."""

    dataset: str  # the built dataset (`make data`)
    backbones: str  # the converted backbones (`make backbone`)
    lungs: str  # the lung segmenter (`make lungs`), for the lungs-first rows
    output_root: str  # cached features and fine-tune rounds
    folds: int  # patient-grouped cross-validation folds
    fold_seed: int  # the folds' dealing
    rounds: int  # bootstrap resamples
    target_sensitivity: float  # the validation sensitivity each round's threshold targets
    image_size: int  # the default recipe's input side
    finetune_epochs: float | None  # fewer epochs than the default recipe's (None: its own)

    @classmethod
    def of(cls, args: argparse.Namespace) -> Settings:
        """The settings from a study's parsed flags (which name them as the fields are named)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


class Yardstick:
    """The whole curated set, its folds, and cached frozen features."""

    def __init__(self, args: Settings) -> None:
        self.args = args
        self.root = Path(args.output_root)
        splits = datasets.load_from_disk(args.dataset)
        self.dataset = datasets.concatenate_datasets([splits[name] for name in SPLIT_NAMES])
        self.labels = np.asarray(self.dataset["label"])
        self.sources = np.asarray(self.dataset["source"])
        self.groups = np.asarray(self.dataset["patient_group"])
        self.mixed_sources = mixed_label_sources(self.sources, self.labels)
        self.subsets = reported_subsets(self.sources, self.mixed_sources)
        self.folds = dataset_folds(self.dataset, args.folds, args.fold_seed)
        self.rows_key = rows_key(self.dataset)  # cached features belong to these rows, in order
        self._masked: datasets.Dataset | None = None

    def features(self, backbone: str, size: int, view: str, crop: bool = False) -> tuple[np.ndarray, float]:
        """Frozen penultimate features of every image (cached) and the seconds their extraction took: the whole
        film squashed to size x size, as the default recipe frames it, or with `crop` its centre cropped."""
        path = self.root / "features" / f"{backbone}-{size}-{view}{'-crop' if crop else ''}.npz"
        if path.is_file():
            saved = np.load(path)
            if str(saved["rows_key"]) == self.rows_key:
                return saved["features"], float(saved["cpu_seconds"])
        model_path = str(Path(self.args.backbones) / backbone)
        processor = AutoImageProcessor.from_pretrained(model_path)
        (centre_crop if crop else set_processor_size)(processor, size)
        model = load_model(model_path)
        images = ViewedImages(self.with_masks() if view == "lung-blur" else self.dataset, VIEWS[view])
        start = time.process_time()
        features = run_model(
            model, processor, images, 32, desc=f"{backbone} {size} px {view}{' crop' if crop else ''}"
        ).features
        cpu_seconds = time.process_time() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, features=features, cpu_seconds=cpu_seconds, rows_key=self.rows_key)
        return features, cpu_seconds

    def with_masks(self) -> datasets.Dataset:
        """The dataset with its cached lung masks (covid_cxr.lungs.dataset_masks)."""
        if self._masked is None:
            self._masked = with_lung_masks(self.dataset, LungSegmenter.from_pretrained(self.args.lungs))
        return self._masked

    def probe(
        self,
        train_x: np.ndarray,
        eval_views: Sequence[np.ndarray] | None = None,
        weights: np.ndarray | None = None,
        train_only: np.ndarray | None = None,
    ) -> FoldScorer:
        """A logistic-regression probe fitted on `train_x`; validation and test are scored on `eval_views`
        (probabilities averaged, for test-time augmentation), by default on `train_x` itself."""
        views = list(eval_views) if eval_views is not None else [train_x]

        def scorer(_k: int, train: np.ndarray, validation: np.ndarray, test: np.ndarray):
            if train_only is not None:
                train = train[train_only[train]]
            scored = label_probe(
                train_x[train],
                self.labels[train],
                *[v[part] for part in (validation, test) for v in views],
                sample_weight=None if weights is None else weights[train],
            )
            n = len(views)
            return np.mean(scored[:n], axis=0), np.mean(scored[n:], axis=0)

        return scorer

    def row(
        self, lever: str, setting: str, scorer: FoldScorer, cost: float, note: str = "", folds: np.ndarray | None = None
    ) -> Row:
        """The scorer cross-validated on the yardstick's folds (or on `folds`, another dealing)."""
        start = time.process_time()
        folds = self.folds if folds is None else folds
        out_of_fold = OutOfFold.collect(scorer, folds, self.labels, self.args.target_sensitivity)
        return Row(lever, setting, out_of_fold, cost + time.process_time() - start, note)

    def summary(self, row: Row, reference: Row | None) -> dict[str, object]:
        result = {"lever": row.lever, "setting": row.setting, "cpu_minutes": row.cpu_seconds / 60, "note": row.note}
        result["metrics"] = summarise(row.out_of_fold, self.labels, self.groups, self.subsets, self.args.rounds)
        if row.seed_of_default is not None:
            result["seed_of_default"] = row.seed_of_default
        if reference is not None and reference is not row:
            result["mixed_roc_auc_change_ci"] = self.change_ci(row, reference)
        if row.compared_with is not None:
            compared = row.compared_with
            mixed = self.subsets[MIXED]
            result["versus"] = {
                "setting": compared.setting,
                "change": result["metrics"][MIXED]["roc_auc"]
                - roc_auc(self.labels[mixed], compared.out_of_fold.probabilities[mixed]),
                "change_ci": self.change_ci(row, compared),
            }
        return result

    def change_ci(self, row: Row, baseline: Row) -> tuple[float, float]:
        """Paired patient-bootstrap 95% CI of the change in mixed-label ROC AUC from `baseline` to `row`."""
        mixed = self.subsets[MIXED]
        return roc_auc_difference_ci(
            self.labels[mixed],
            row.out_of_fold.probabilities[mixed],
            baseline.out_of_fold.probabilities[mixed],
            self.groups[mixed],
            self.args.rounds,
        )
