"""Each quality lever's switch changes what it claims to: the pixels, or the weight each image has in the fit."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.evaluation.probes import label_probe
from covid_cxr.lungs.dataset_masks import MASK_COLUMN
from study.intensity import INTENSITY_METHODS, normalise_intensity
from study.levers import source_label_weights


@pytest.fixture
def radiograph(fixture_root: Path) -> Image.Image:
    return Image.open(sorted((fixture_root / "images").iterdir())[0])


def test_equalisation_changes_pixels_and_spreads_the_histogram(radiograph: Image.Image) -> None:
    plain = np.asarray(normalise_intensity(radiograph, "none"))
    assert np.array_equal(plain, np.asarray(radiograph.convert("L")))
    for method in ("histogram", "clahe"):
        equalised = np.asarray(normalise_intensity(radiograph, method))
        assert equalised.shape == plain.shape and equalised.dtype == np.uint8
        assert np.mean(equalised != plain) > 0.5, method
    flat = np.asarray(normalise_intensity(radiograph, "histogram"))
    deciles = np.percentile(flat, np.arange(10, 100, 10))
    assert np.allclose(deciles, np.arange(10, 100, 10) * 2.55, atol=20)  # about uniform after equalisation


def test_unknown_intensity_method_is_refused(radiograph: Image.Image) -> None:
    with pytest.raises(ValueError, match="unknown intensity normalisation 'gamma'"):
        normalise_intensity(radiograph, "gamma")
    assert INTENSITY_METHODS == ("none", "histogram", "clahe")


def test_source_label_weights_give_every_stratum_the_same_total() -> None:
    sources = ["nih"] * 80 + ["ieee"] * 15 + ["ieee"] * 5
    labels = [0] * 80 + [1] * 15 + [0] * 5
    weights = source_label_weights(sources, labels)
    totals: dict[tuple[str, int], float] = defaultdict(float)
    for source, label, weight in zip(sources, labels, weights, strict=True):
        totals[(source, label)] += weight
    assert np.allclose(list(totals.values()), len(weights) / 3)
    assert np.isclose(weights.mean(), 1.0)
    assert weights[-1] == 16 * weights[0]  # one of 5 weighs as much as 16 of 80


def test_sample_weights_change_the_probe() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
    plain = label_probe(x, y, x)[0]
    weights = np.where(x[:, 1] > 0, 10.0, 0.1)
    assert not np.allclose(plain, label_probe(x, y, x, sample_weight=weights)[0])
    assert np.allclose(plain, label_probe(x, y, x, sample_weight=np.ones(200))[0])


def test_quality_views_change_what_the_probe_sees(radiograph: Image.Image) -> None:
    from study.yardstick import CROPS, VIEWS

    plain = np.asarray(radiograph.convert("L"))
    row = {"image": radiograph, MASK_COLUMN: np.pad(np.ones((60, 60), np.uint8), 26)}  # a central "lung" square
    for name, view in VIEWS.items():
        seen = np.asarray(view(row).convert("L"))
        if name == "plain":
            assert np.array_equal(seen, plain)
        elif name in CROPS:
            assert seen.shape[0] < plain.shape[0] and seen.shape[1] < plain.shape[1], name
        elif name == "pad":  # letterboxed to a square: the film untouched, black bars on its short sides
            side = max(plain.shape)
            assert seen.shape == (side, side) and seen.min() == 0, name
            top, left = (side - plain.shape[0]) // 2, (side - plain.shape[1]) // 2
            np.testing.assert_array_equal(seen[top : top + plain.shape[0], left : left + plain.shape[1]], plain)
        else:
            assert seen.shape == plain.shape and np.mean(seen != plain) > 0.1, name
    blurred = np.asarray(VIEWS["lung-blur"](row))
    centre = (slice(plain.shape[0] // 3, 2 * plain.shape[0] // 3), slice(plain.shape[1] // 3, 2 * plain.shape[1] // 3))
    assert np.array_equal(blurred[centre], plain[centre])  # inside the lungs: untouched
