"""Exact and near-duplicate detection, so that copies of one film never straddle the splits.

Exact duplicates share the SHA-1 of their decoded pixels. Near-duplicates are pairs whose 256-bit
perceptual hashes (``imagehash.phash``, hash_size=16, as used to curate ``../shared/cxr``) differ in at most
``max_bits`` bits; ``SOURCES.md`` found 40 bits to separate re-encoded copies from distinct films.
"""

from __future__ import annotations

import hashlib

import imagehash
import numpy as np
from PIL import Image

HASH_SIZE = 16
DEFAULT_NEAR_DUP_BITS = 40


def pixel_sha1(image: Image.Image) -> str:
    digest = hashlib.sha1(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def perceptual_hash(image: Image.Image) -> np.ndarray:
    """The 256-bit pHash packed into 32 bytes."""
    bits = imagehash.phash(image.convert("L"), hash_size=HASH_SIZE).hash
    return np.packbits(bits.ravel())


def near_duplicate_pairs(hashes: np.ndarray, max_bits: int, chunk: int = 128) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= max_bits, for an (n, 32) uint8 hash array.

    Compared in row chunks of 64-bit words, so memory grows with the chunk, not with the square of the image count
    (bench/dataset_build.py measures the build on a 4x copy of the curated set).
    """
    words = np.ascontiguousarray(hashes).view(np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(words), chunk):
        block = words[start : start + chunk]
        distances = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(axis=2, dtype=np.int32)
        rows, cols = np.nonzero(distances <= max_bits)
        for i, j in zip(rows + start, cols, strict=True):
            if i < j:
                pairs.append((int(i), int(j), int(distances[i - start, j])))
    return pairs
