"""The loader's contract under mutation: any byte string made from a real X-ray (PNG 8/16-bit, JPEG, DICOM
uncompressed, without preamble, RLE, JPEG-LS, deflated) loads or raises ImageError with a reason, quickly; one
level up, the dataset build and the lung CLI give each such file a reason and go on."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.data import dicom
from covid_cxr.data.build import BuildConfig, build_dataset
from covid_cxr.data.imaging import ImageError, load_image
from covid_cxr.lungs.masks import write_masks
from devtools.mutations import fixture_samples, mutations

PER_CASE_S = 5.0  # a bound that only a hang or a decompression bomb reaches (a case takes milliseconds)


@pytest.fixture(scope="module")
def samples(fixture_root: Path) -> dict[str, bytes]:
    jpeg = sorted((fixture_root / "images").glob("ieee8023__*.jpg"))[0]
    return fixture_samples(jpeg.read_bytes())


@pytest.fixture(autouse=True)
def quiet_decoders():
    """Broken files make pydicom warn on nearly every case: thousands of lines that say nothing here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def escapes(samples: dict[str, bytes], count: int, seed: int) -> list[str]:
    """The cases that broke the contract: another exception, or longer than PER_CASE_S."""
    broken = []
    for name, case, data in mutations(samples, count, seed):
        start = time.perf_counter()
        try:
            load_image(data, min_size=64)
        except ImageError:
            pass
        except Exception as err:  # the contract's breach, named for the report
            broken.append(f"{name} case {case}: {type(err).__name__}: {err}")
        if time.perf_counter() - start > PER_CASE_S:
            broken.append(f"{name} case {case}: took {time.perf_counter() - start:.1f} s")
    return broken


def test_every_seed_file_loads(samples: dict[str, bytes]) -> None:
    for name, data in samples.items():
        assert load_image(data, min_size=64).image.size == (96, 120), name


def test_every_mutation_loads_or_gets_a_reason(samples: dict[str, bytes]) -> None:
    assert escapes(samples, 4000, seed=0) == []


@pytest.mark.slow
def test_a_long_run_finds_no_escape(samples: dict[str, bytes]) -> None:
    """Tens of thousands of cases on other seeds (about a second per 4,000)."""
    assert escapes(samples, 60_000, seed=1) == []


def test_the_net_does_not_hide_a_fault_of_our_own(samples: dict[str, bytes], monkeypatch) -> None:
    def faulty(ds, max_pixels):
        raise TypeError("a bug in covid_cxr, not in the file")

    monkeypatch.setattr(dicom, "_check_header", faulty)
    with pytest.raises(TypeError, match="a bug in covid_cxr"):
        load_image(samples["dicom"], min_size=64)


def broken_cases(samples: dict[str, bytes], count: int) -> list[tuple[str, bytes]]:
    """The first `count` mutated DICOM files that pydicom cannot read, with an image file's suffix."""
    found = []
    for name, case, data in mutations({k: v for k, v in samples.items() if k.startswith("dicom")}, 4000, seed=2):
        try:
            load_image(data, min_size=64)
        except ImageError as err:
            if "is corrupt" in str(err):  # the reasons the net gives
                found.append((f"{name}-{case}.dcm", data))
        if len(found) == count:
            return found
    raise AssertionError(f"only {len(found)} such cases")


class Everywhere:
    """A stand-in segmenter: lungs everywhere."""

    def masks(self, images: list[Image.Image]) -> list[np.ndarray]:
        return [np.ones(image.size[::-1], dtype=bool) for image in images]


def test_batch_and_build_name_each_broken_file_and_go_on(
    samples: dict[str, bytes], fixture_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "xrays" / "covid"
    folder.mkdir(parents=True)
    for name, data in broken_cases(samples, 6):
        (folder / name).write_bytes(data)
    for image in sorted((fixture_root / "images").glob("*.jpg"))[:4]:
        (folder / image.name).write_bytes(image.read_bytes())

    written, skipped = write_masks(Everywhere(), folder, tmp_path / "masks")
    assert written == 4 and len(skipped) == 6
    assert all("is corrupt" in reason for reason in skipped.values()), skipped

    result = build_dataset(BuildConfig(input_dir=tmp_path / "xrays", output_dir=tmp_path / "dataset"))
    assert len(result.records) == 4
    reasons = {s.path: s.reason for s in result.skipped}
    assert len(reasons) == 6 and all("is corrupt" in reason for reason in reasons.values()), reasons
