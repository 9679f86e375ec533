"""A small seeded mutator of real image files, for the loader's contract: every byte string loads or raises
ImageError. The mutations are those a cut download, a bad disk or a hostile upload produce: flipped bits, a
deleted or inserted run of bytes, a cut end, and boundary values written over the header region, where
formats keep the lengths and types that parsers trust."""

from __future__ import annotations

import random
from collections.abc import Iterator

HEADER_REGION = 1024  # bytes: PNG IHDR and the first chunks, JPEG markers, DICOM preamble, file meta, first tags
BOUNDARY_VALUES = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x80",
)


def _position(rng: random.Random, data: bytes) -> int:
    """Mostly inside the header region, where one byte changes what the rest means."""
    end = min(len(data), HEADER_REGION) if rng.random() < 0.8 else len(data)
    return rng.randrange(max(end, 1))


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One mutation of `data`, chosen and placed by `rng`."""
    kind = rng.randrange(5)
    at = _position(rng, data)
    if kind == 0:  # flip one to eight bits
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[_position(rng, data)] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 1:  # delete a run
        return data[:at] + data[at + rng.randint(1, 64) :]
    if kind == 2:  # insert a run
        return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == 3:  # cut the end
        return data[: rng.randrange(len(data))]
    value = rng.choice(BOUNDARY_VALUES)  # overwrite with a boundary value
    return data[:at] + value + data[at + len(value) :]


def mutations(samples: dict[str, bytes], count: int, seed: int) -> Iterator[tuple[str, int, bytes]]:
    """`count` mutated files, (sample name, case number, bytes), drawn evenly from `samples`; a case is
    reproducible from its seed and number alone."""
    names = sorted(samples)
    for case in range(count):
        rng = random.Random(f"{seed}:{case}")
        name = names[case % len(names)]
        data = samples[name]
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            data = mutate(data, rng) or data[:1]
        yield name, case, data


def fixture_samples(jpeg: bytes, side: int = 96) -> dict[str, bytes]:
    """Real seed files for the mutator, from one real X-ray (`jpeg`'s bytes) made small so that a case decodes
    in milliseconds: PNG 8 and 16 bit, JPEG, and DICOM uncompressed, without preamble, RLE, JPEG-LS and deflated."""
    import io

    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

    grey = Image.open(io.BytesIO(jpeg)).convert("L").resize((side, side + side // 4))

    def encoded(image: Image.Image, fmt: str) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt)
        return out.getvalue()

    def dicom(syntax: str, preamble: bool = True, plugin: str = "") -> bytes:
        pixels = np.asarray(grey, dtype=np.uint16) * 16
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["fuzz"])
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "CR", "MONOCHROME2", 1
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = pixels.tobytes()
        if syntax in (RLELossless, JPEGLSLossless):
            ds.compress(syntax, encoding_plugin=plugin)
        elif syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = syntax
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue() if preamble else out.getvalue()[128 + 4 :]

    return {
        "png8": encoded(grey, "PNG"),
        "png16": encoded(Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257), "PNG"),
        "jpeg": encoded(grey, "JPEG"),
        "dicom": dicom(ExplicitVRLittleEndian),
        "dicom-no-preamble": dicom(ExplicitVRLittleEndian, preamble=False),
        "dicom-rle": dicom(RLELossless, plugin="pydicom"),
        "dicom-jpegls": dicom(JPEGLSLossless, plugin="pyjpegls"),
        "dicom-deflated": dicom(DeflatedExplicitVRLittleEndian),
    }
