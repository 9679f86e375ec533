"""Build the Hugging Face dataset: read records, validate every file, find duplicates, split by patient, write.

Two passes keep memory flat at any size: the scan decodes each image once to validate and hash it (keeping
only hashes and running histograms), and the write streams the stored bytes through
``Dataset.from_generator`` into Arrow files on disk.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from covid_cxr.data.dedup import DEFAULT_NEAR_DUP_BITS, near_duplicate_pairs, perceptual_hash, pixel_sha1
from covid_cxr.data.imaging import DEFAULT_MIN_SIZE, ImageError, encode_png, fault_reason, load_image
from covid_cxr.data.records import (
    DEFAULT_VIEWS,
    ImageRecord,
    Problem,
    Skipped,
    read_records,
    unreferenced_images,
    with_patients,
)
from covid_cxr.data.splits import SPLIT_NAMES, assign_splits, group_ids, group_names, strata_of
from covid_cxr.data.stats import IntensityHistograms, intensity_density
from covid_cxr.labels import CLASS_NAMES
from covid_cxr.outputs import check_output_dir

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        "patient_id": datasets.Value("string"),
        "patient_group": datasets.Value("string"),
        "source": datasets.Value("string"),
        "view": datasets.Value("string"),
        "sex": datasets.Value("string"),
        "age": datasets.Value("string"),
        "finding": datasets.Value("string"),
        "license": datasets.Value("string"),
        "file_name": datasets.Value("string"),
    }
)
# never shown, logged or written out by a command; the group first (it joins near-duplicates): what a bootstrap
# resamples
PATIENT_COLUMNS = ("patient_group", "patient_id")
REPORT_NAME = "build_report.json"
DATASET_MARKER = "dataset_dict.json"  # what datasets' save_to_disk writes: the folder holds an earlier build
HISTOGRAM_NAME = "intensity_histogram.png"


@dataclass
class BuildConfig:
    input_dir: Path
    output_dir: Path
    layout: str = "auto"
    views: Sequence[str] = DEFAULT_VIEWS
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15)
    seed: int = 42
    min_size: int = DEFAULT_MIN_SIZE
    max_size: int | None = None
    near_dup_bits: int = DEFAULT_NEAR_DUP_BITS
    num_proc: int = 1
    patients: Path | str | None = None  # file_name -> patient_id CSV (covid_cxr.data.records.with_patients)


@dataclass
class BuildResult:
    records: list[ImageRecord]
    splits: list[str]
    skipped: list[Skipped]
    near_duplicates: list[dict[str, object]]
    histograms: IntensityHistograms
    dataset: datasets.DatasetDict
    unreferenced: list[str]  # image files under the input folder that no metadata row names

    @property
    def invalid_rows(self) -> list[Skipped]:
        return [s for s in self.skipped if s.invalid_row]


@dataclass(frozen=True)
class _Scan:
    sha1: str
    phash: np.ndarray
    density: np.ndarray


def _scan_one(args: tuple[Path, int]) -> _Scan | Problem:
    path, min_size = args
    try:
        loaded = load_image(path, min_size=min_size)
    except ImageError as err:
        return Problem("unusable image", str(err))
    except Exception as err:  # a fault in this code or a library, not in the file: skip it, keep the traceback
        return Problem("unexpected error", fault_reason(path, err))
    return _Scan(pixel_sha1(loaded.image), perceptual_hash(loaded.image), intensity_density(loaded.image))


def scan_images(records: Sequence[ImageRecord], min_size: int, num_proc: int) -> list[_Scan | Problem]:
    """Validate and hash every image, with a progress bar; a Problem says why one was rejected."""
    jobs = [(r.path, min_size) for r in records]
    progress = dict(total=len(jobs), desc="Scanning images", unit="img")
    if num_proc <= 1:
        return [_scan_one(job) for job in tqdm(jobs, **progress)]
    with ProcessPoolExecutor(max_workers=num_proc) as pool:
        return list(tqdm(pool.map(_scan_one, jobs, chunksize=16), **progress))


def remove_exact_duplicates(
    records: list[ImageRecord], scans: list[_Scan]
) -> tuple[list[ImageRecord], list[_Scan], list[Skipped]]:
    """Keep the first copy of identical pixels; when copies disagree on the label, drop every copy."""
    by_hash: dict[str, list[int]] = {}
    for index, scan in enumerate(scans):
        by_hash.setdefault(scan.sha1, []).append(index)
    drop: dict[int, Skipped] = {}
    for indices in by_hash.values():
        if len(indices) == 1:
            continue
        first = records[indices[0]]
        labels = {records[i].label for i in indices}
        if len(labels) > 1:
            names = ", ".join(records[i].file_name for i in indices)
            for i in indices:
                drop[i] = Skipped(
                    records[i].file_name,
                    f"identical pixels with conflicting labels ({names}); all copies dropped",
                    "identical pixels, conflicting labels",
                )
        else:
            for i in indices[1:]:
                drop[i] = Skipped(records[i].file_name, f"exact duplicate of {first.file_name}", "exact duplicate")
    kept = [i for i in range(len(records)) if i not in drop]
    skipped = [entry for _, entry in sorted(drop.items())]
    return [records[i] for i in kept], [scans[i] for i in kept], skipped


def _stored_bytes(record: ImageRecord, min_size: int, max_size: int | None) -> bytes:
    """The file's own bytes when they already are an 8-bit PNG/JPEG within max_size; else a lossless PNG."""
    loaded = load_image(record.path, min_size=min_size)
    image = loaded.image
    if max_size and max(image.size) > max_size:
        image = image.copy()
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    elif loaded.native:
        return record.path.read_bytes()
    return encode_png(image)


def _examples(
    records: list[ImageRecord], groups: list[str], min_size: int, max_size: int | None
) -> Iterator[dict[str, object]]:
    for record, group in zip(records, groups, strict=True):
        yield {
            "image": {"bytes": _stored_bytes(record, min_size, max_size), "path": Path(record.file_name).name},
            "label": record.label,
            "patient_id": record.patient_id,
            "patient_group": group,
            "source": record.source,
            "view": record.view,
            "sex": record.sex,
            "age": record.age,
            "finding": record.finding,
            "license": record.license,
            "file_name": record.file_name,
        }


def write_dataset(
    records: list[ImageRecord],
    splits: list[str],
    groups: list[str],
    output_dir: Path,
    min_size: int,
    max_size: int | None,
) -> datasets.DatasetDict:
    """Stream every split into Arrow files and save the DatasetDict under ``output_dir``, a new or empty folder
    (the command swaps it in for the old dataset only once everything is written: covid_cxr.outputs.replacing)."""
    parts = {}
    with tempfile.TemporaryDirectory(prefix="covid-cxr-build-") as cache_dir:
        for split in SPLIT_NAMES:
            chosen = [i for i, s in enumerate(splits) if s == split]
            parts[split] = datasets.Dataset.from_generator(
                _examples,
                features=FEATURES,
                cache_dir=cache_dir,
                gen_kwargs={
                    "records": [records[i] for i in chosen],
                    "groups": [groups[i] for i in chosen],
                    "min_size": min_size,
                    "max_size": max_size,
                },
                split=datasets.NamedSplit(split),
            )
        datasets.DatasetDict(parts).save_to_disk(str(output_dir))
    return datasets.load_from_disk(str(output_dir))


def build_dataset(config: BuildConfig, write_to: Path | None = None) -> BuildResult:
    """Run the whole build and write the dataset into `write_to` (default: ``config.output_dir``), which must be
    new or empty; refuses, before reading anything, an output folder that is, holds or lies in the input."""
    check_output_dir(config.output_dir, {"--input_dir": config.input_dir})
    records, skipped = read_records(config.input_dir, config.layout, config.views)
    if config.patients:
        records = with_patients(records, Path(config.patients))
    if not records:
        raise ValueError(f"no usable images found in {config.input_dir}")
    scans = scan_images(records, config.min_size, config.num_proc)
    valid = [(r, s) for r, s in zip(records, scans, strict=True) if isinstance(s, _Scan)]
    skipped += [
        Skipped(r.file_name, s.reason, s.kind) for r, s in zip(records, scans, strict=True) if isinstance(s, Problem)
    ]
    records, scans, duplicates = remove_exact_duplicates([r for r, _ in valid], [s for _, s in valid])
    skipped += duplicates

    hashes = np.stack([s.phash for s in scans])
    pairs = near_duplicate_pairs(hashes, config.near_dup_bits)
    groups = group_ids([(r.patient_id, r.near_dup_group) for r in records], [(i, j) for i, j, _ in pairs])
    splits = assign_splits(
        strata_of([r.source for r in records], [r.label for r in records]), groups, config.split_fractions, config.seed
    )

    histograms = IntensityHistograms()
    for record, scan in zip(records, scans, strict=True):
        histograms.add(record.source, record.label, scan.density)

    named_groups = group_names(groups, [r.file_name for r in records])
    dataset = write_dataset(
        records, splits, named_groups, write_to or config.output_dir, config.min_size, config.max_size
    )
    near_duplicates = [
        {"a": records[i].file_name, "b": records[j].file_name, "hamming_bits": d, "split": splits[i]}
        for i, j, d in pairs
    ]
    unreferenced = unreferenced_images(config.input_dir, [r.file_name for r in records] + [s.path for s in skipped])
    return BuildResult(records, splits, skipped, near_duplicates, histograms, dataset, unreferenced)


def write_report(result: BuildResult, config: BuildConfig, path: Path) -> None:
    """Every skipped file with its reason, every unreferenced image file, every near-duplicate pair, the split
    counts and the settings."""
    reasons = Counter(s.kind for s in result.skipped)
    # the report travels with the dataset, to the Hub too: the input folder by its name, no local path
    settings = asdict(config) | {"input_dir": config.input_dir.resolve().name}
    settings.pop("output_dir")
    report = {
        "config": settings,
        "kept": len(result.records),
        "skipped_count": len(result.skipped),
        "skipped_by_reason": dict(reasons.most_common()),
        "skipped": [asdict(s) for s in result.skipped],
        "invalid_row_count": len(result.invalid_rows),
        "unreferenced_count": len(result.unreferenced),
        "unreferenced": result.unreferenced,
        "near_duplicate_pairs": result.near_duplicates,
        "split_sizes": {split: result.dataset[split].num_rows for split in SPLIT_NAMES},
    }
    path.write_text(json.dumps(report, indent=2, default=list) + "\n", encoding="utf-8")


def summary(result: BuildResult, report: Path, shown: int = 20) -> str:
    """What the console shows after a build: invalid rows in full, other skips and unreferenced files up to
    `shown` each; the report holds every one."""
    lines = [f"\nKept {len(result.records)} images; skipped {len(result.skipped)} (all listed in {report})."]
    lines += [f"  invalid row, skipped {s.path}: {s.reason}" for s in result.invalid_rows]
    others = [s for s in result.skipped if not s.invalid_row]
    lines += [f"  skipped {s.path}: {s.reason}" for s in others[:shown]]
    if len(others) > shown:
        lines.append(f"  ... and {len(others) - shown} more skipped files in {report}")
    if result.unreferenced:
        lines.append(f"{len(result.unreferenced)} image file(s) are named by no metadata row and were not used:")
        lines += [f"  {name}" for name in result.unreferenced[:shown]]
        if len(result.unreferenced) > shown:
            lines.append(f"  ... and {len(result.unreferenced) - shown} more in {report}")
    return "\n".join(lines)
