"""The scope guard's pixel checks on real X-rays and its feature threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covid_cxr.modeling.scope_guard import MIN_REFERENCES, ScopeGuard, pixel_reason, references


def test_real_xrays_pass_the_pixel_checks(fixture_root: Path) -> None:
    for path in sorted((fixture_root / "images").glob("*.jpg")):
        assert pixel_reason(Image.open(path)) is None, path.name


def test_every_source_passes_the_pixel_checks(cxr_root: Path, metadata) -> None:
    for row in metadata[::40]:  # every source, grey and RGB JPEGs alike
        assert pixel_reason(Image.open(cxr_root / row["file_name"])) is None, row["file_name"]


def test_feature_threshold_is_the_leave_one_out_quantile(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 16))
    guard = ScopeGuard.fit(reference, quantile=0.95, k=5)
    in_scope = rng.normal(size=(2000, 16))
    assert 0.02 < (guard.scores(in_scope) > guard.threshold).mean() < 0.10
    assert (guard.scores(rng.normal(loc=4.0, size=(50, 16))) > guard.threshold).all()
    guard.save(tmp_path)
    loaded = ScopeGuard.load(tmp_path)
    assert loaded.threshold == pytest.approx(guard.threshold) and loaded.k == 5
    np.testing.assert_allclose(loaded.scores(in_scope[:5]), guard.scores(in_scope[:5]), rtol=1e-5)
    assert ScopeGuard.load(tmp_path / "nowhere") is None


def test_a_small_validation_split_is_topped_up_with_training_films() -> None:
    """Fewer validation films than MIN_REFERENCES: as many training films as make up the difference are asked
    for, after the validation films; enough validation films: no training film is asked for."""
    asked: list[int] = []

    def training(n: int) -> np.ndarray:
        asked.append(n)
        return np.ones((min(n, 25), 4))  # a small training split gives what it has

    small = references(np.zeros((10, 4)), training)
    assert asked == [MIN_REFERENCES - 10] and small.shape == (35, 4) and not small[:10].any() and small[10:].all()
    assert references(np.zeros((MIN_REFERENCES, 4)), training).shape == (MIN_REFERENCES, 4) and len(asked) == 1


def test_lung_check_refuses_a_grey_photo_the_other_layers_let_through(trained, lungs_folder: Path, cxr_root) -> None:
    """The third layer on its own: with the feature check switched off, a grey photograph (scikit-image's
    camera man) still passes the pixel checks, and only the lung fields rule it out; real X-rays are scored."""
    import io

    from skimage import data

    from covid_cxr.lungs.segmenter import LungSegmenter
    from covid_cxr.serving.predictor import OutOfScope, Predictor

    predictor = Predictor(trained[0], LungSegmenter.from_pretrained(lungs_folder))
    predictor.guard = None
    photo = Image.fromarray(data.camera())
    assert pixel_reason(photo) is None
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    with pytest.raises(OutOfScope, match="no plausible lung fields"):
        predictor.analyse(buffer.getvalue(), heatmap=False)
    for name in ("ieee8023", "nih_cxr14"):
        path = next(p for p in sorted((cxr_root / "images").glob(f"{name}__*")))
        assert predictor.analyse(path).lung_attention is not None
