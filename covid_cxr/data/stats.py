"""Figures for the dataset card, computed from the built data: counts, patients, views, ages, intensities."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from covid_cxr.data.records import ImageRecord, view_family
from covid_cxr.data.splits import SPLIT_NAMES
from covid_cxr.labels import CLASS_NAMES


def intensity_density(image: Image.Image) -> np.ndarray:
    """The 256-bin grey-level histogram of one image, normalised to sum to 1 (so every image weighs the same)."""
    counts = np.bincount(np.asarray(image.convert("L")).ravel(), minlength=256).astype(np.float64)
    return counts / counts.sum()


class IntensityHistograms:
    """Running mean of per-image intensity densities by label and by (source, label), in constant memory."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], np.ndarray] = defaultdict(lambda: np.zeros(256))
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, source: str, label: str, density: np.ndarray) -> None:
        for key in (("all", label), (source, label)):
            self.sums[key] += density
            self.counts[key] += 1

    def mean(self, source: str, label: str) -> np.ndarray | None:
        key = (source, label)
        return self.sums[key] / self.counts[key] if self.counts.get(key) else None

    def sources(self) -> list[str]:
        return sorted({source for source, _ in self.counts if source != "all"})


def plot_intensity_histograms(histograms: IntensityHistograms, path: Path) -> None:
    """COVID vs non-COVID mean intensity histograms, overall and per source (where the confounding shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["all", *histograms.sources()]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), sharey=True, squeeze=False)
    colours = {"covid": "tab:red", "non_covid": "tab:blue"}
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, source in zip(axes.flat, panels, strict=False):
        for label in CLASS_NAMES:
            mean = histograms.mean(source, label)
            if mean is not None:
                n = histograms.counts[(source, label)]
                ax.plot(np.arange(256), mean, color=colours[label], label=f"{label} (n={n})")
        ax.set_title("all sources" if source == "all" else source)
        ax.set_xlabel("pixel intensity (0-255)")
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean fraction of pixels")
    fig.suptitle("Grey-level histograms, COVID vs non-COVID (mean over images)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def records_frame(records: Sequence[ImageRecord], splits: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame([r.__dict__ for r in records]).drop(columns=["path"])
    frame["split"] = pd.Categorical(splits, categories=SPLIT_NAMES)
    frame["label"] = pd.Categorical(frame["label"], categories=CLASS_NAMES)
    return frame


def counts_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per source x label, one column pair per split, plus totals."""
    table = pd.crosstab(
        [frame["source"]], [frame["split"], frame["label"]], margins=True, margins_name="total", dropna=False
    )
    table.columns = [f"{split} {label}" if label else split for split, label in table.columns]
    return table


def patients_per_split(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Patients per split: distinct ids, plus images without an id (each counted as its own patient)."""
    result = {}
    for split in SPLIT_NAMES:
        part = frame[frame["split"] == split]
        with_id = part["patient_id"][part["patient_id"] != ""]
        result[split] = {
            "images": len(part),
            "patients_with_id": int(with_id.nunique()),
            "images_without_id": int((part["patient_id"] == "").sum()),
        }
    return result


def view_counts(frame: pd.DataFrame) -> pd.DataFrame:
    families = frame["view"].map(view_family)
    return pd.crosstab(families, frame["label"], margins=True, margins_name="total", dropna=False)


def parse_age(age: str) -> float | None:
    """Ages as sources write them ("50", "50+", "early 40s", "0.03"): the first number, else None."""
    match = re.search(r"\d+(?:\.\d+)?", age)
    return float(match.group()) if match else None


def demographics(frame: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Sex counts and an age summary per label, over the images where the source states them."""
    ages = frame["age"].map(parse_age)
    result: dict[str, dict[str, object]] = {}
    for label in CLASS_NAMES:
        mask = frame["label"] == label
        known = ages[mask].dropna()
        sex = frame.loc[mask, "sex"].replace("", "unknown").value_counts().to_dict()
        result[label] = {
            "sex": {str(k): int(v) for k, v in sex.items()},
            "age_known": len(known),
            "age_median": float(known.median()) if len(known) else None,
            "age_min": float(known.min()) if len(known) else None,
            "age_max": float(known.max()) if len(known) else None,
            "under_18": int((known < 18).sum()),
        }
    return result


def confounding(frame: pd.DataFrame) -> dict[str, object]:
    """How tightly label follows source: single-class sources, mixed sources, the top source per label."""
    by_source = pd.crosstab(frame["source"], frame["label"], dropna=False).reindex(columns=CLASS_NAMES, fill_value=0)
    single = {source: label for source, row in by_source.iterrows() for label in CLASS_NAMES if row[label] == row.sum()}
    mixed = [source for source in by_source.index if source not in single]
    top = {}
    for label in CLASS_NAMES:
        column = by_source[label]
        if column.sum():
            top[label] = {"source": str(column.idxmax()), "share": float(column.max() / column.sum())}
    return {"single_class_sources": single, "mixed_sources": mixed, "top_source": top}
