"""Duplicate detection on real radiographs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from covid_cxr.data.dedup import DEFAULT_NEAR_DUP_BITS, near_duplicate_pairs, perceptual_hash, pixel_sha1


def _reencoded(image: Image.Image) -> Image.Image:
    """What a web copy does to a film: downscale and JPEG-recompress."""
    buffer = io.BytesIO()
    image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(buffer, format="JPEG", quality=70)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_copies_are_near_and_distinct_films_far(fixture_root: Path) -> None:
    paths = (
        sorted((fixture_root / "images").glob("covid_cxnet__*.jpg"))[:3]
        + sorted((fixture_root / "images").glob("ieee8023__*.jpg"))[:3]
    )
    images = [Image.open(p).convert("L") for p in paths]
    hashes = np.stack([perceptual_hash(im) for im in images] + [perceptual_hash(_reencoded(images[0]))])
    pairs = near_duplicate_pairs(hashes, DEFAULT_NEAR_DUP_BITS)
    assert [(i, j) for i, j, _ in pairs] == [(0, len(images))]
    assert pixel_sha1(images[0]) == pixel_sha1(images[0].copy()) != pixel_sha1(_reencoded(images[0]))


def test_chunked_search_matches_brute_force(cxr_root: Path) -> None:
    paths = sorted((cxr_root / "images").glob("ieee8023__*.jpg"))[:60]
    hashes = np.stack([perceptual_hash(Image.open(p)) for p in paths])
    bits = np.unpackbits(hashes, axis=1).astype(int)
    expected = {
        (i, j, int(np.abs(bits[i] - bits[j]).sum()))
        for i in range(len(paths))
        for j in range(i + 1, len(paths))
        if np.abs(bits[i] - bits[j]).sum() <= 110
    }
    assert set(near_duplicate_pairs(hashes, 110, chunk=7)) == expected
    assert expected  # the threshold is loose enough for the comparison to mean something
