"""Image I/O on real radiographs: formats, bit depths, DICOM photometry, and every kind of bad file."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from covid_cxr.data.imaging import ImageError, load_image, sniff_format
from tests.conftest import write_dicom


@pytest.fixture(scope="module")
def real_jpeg(fixture_root: Path) -> Path:
    return sorted((fixture_root / "images").glob("ieee8023__*.jpg"))[0]


@pytest.fixture(scope="module")
def real_pixels(real_jpeg: Path) -> np.ndarray:
    return np.asarray(Image.open(real_jpeg).convert("L"))


def test_real_jpeg_loads_as_8bit_grey(real_jpeg: Path, real_pixels: np.ndarray) -> None:
    loaded = load_image(real_jpeg)
    assert loaded.format == "JPEG" and loaded.native
    assert loaded.image.mode == "L"
    np.testing.assert_array_equal(np.asarray(loaded.image), real_pixels)


def test_format_comes_from_content_not_extension(tmp_path: Path, real_jpeg: Path) -> None:
    disguised = tmp_path / "actually_jpeg.png"
    disguised.write_bytes(real_jpeg.read_bytes())
    assert load_image(disguised).format == "JPEG"
    assert sniff_format(b"hello") is None


def test_sixteen_bit_png_is_scaled_to_full_range(tmp_path: Path, real_pixels: np.ndarray) -> None:
    low, high = int(real_pixels.min()), int(real_pixels.max())
    full_range = np.round((real_pixels.astype(float) - low) * 255 / (high - low)).astype(np.uint8)
    path = tmp_path / "sixteen.png"
    Image.fromarray(full_range.astype(np.uint16) * 16).save(path)  # 0..4080: a 12-bit detector in a 16-bit PNG
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    assert loaded.image.mode == "L" and not loaded.native
    np.testing.assert_array_equal(np.asarray(loaded.image), full_range)  # 16 x v over 0..4080 is v again


def test_real_dicom_from_rsna(cxr_root: Path) -> None:
    loaded = load_image(next((cxr_root / "dicom").glob("*.dcm")))
    assert loaded.format == "DICOM"
    assert loaded.image.size == (1024, 1024) and loaded.image.mode == "L"
    assert np.asarray(loaded.image).std() > 20  # a real radiograph, not a flat field


@pytest.mark.parametrize(
    ("syntax", "encoder"), [(JPEG2000Lossless, "pylibjpeg"), (JPEGLSLossless, "pyjpegls"), (RLELossless, "pydicom")]
)
def test_compressed_dicom_decodes_to_the_same_pixels(tmp_path: Path, cxr_root: Path, syntax, encoder: str) -> None:
    original = next((cxr_root / "dicom").glob("*.dcm"))  # JPEG Baseline, as the RSNA challenge distributed it
    ds = pydicom.dcmread(original)
    ds.decompress()
    ds.compress(syntax, encoding_plugin=encoder)
    ds.save_as(tmp_path / "compressed.dcm")
    assert pydicom.dcmread(tmp_path / "compressed.dcm").file_meta.TransferSyntaxUID == syntax
    decoded = load_image(tmp_path / "compressed.dcm")
    assert decoded.format == "DICOM"
    np.testing.assert_array_equal(np.asarray(decoded.image), np.asarray(load_image(original).image))


def test_monochrome1_is_inverted_to_match_monochrome2(tmp_path: Path, real_pixels: np.ndarray) -> None:
    twelve_bit = real_pixels.astype(np.uint16) * 16
    mono2 = load_image(write_dicom(tmp_path / "m2.dcm", twelve_bit, "MONOCHROME2"))
    mono1 = load_image(write_dicom(tmp_path / "m1.dcm", 4095 - twelve_bit, "MONOCHROME1"))
    a, b = np.asarray(mono2.image).astype(int), np.asarray(mono1.image).astype(int)
    assert np.abs(a - b).max() <= 1
    assert np.corrcoef(a.ravel(), real_pixels.ravel())[0, 1] > 0.99


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"modality": "CT"}, "modality 'CT' is not a radiograph"),
        ({"frames": 3}, "multi-frame DICOM (3 frames)"),
        ({"with_pixels": False}, "no PixelData"),
    ],
)
def test_unusable_dicom_is_refused_with_reason(tmp_path: Path, real_pixels: np.ndarray, kwargs, reason) -> None:
    path = write_dicom(tmp_path / "bad.dcm", real_pixels[:128, :128].astype(np.uint16), **kwargs)
    with pytest.raises(ImageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_image(path)


def test_bad_files_raise_specific_reasons(tmp_path: Path, real_jpeg: Path) -> None:
    data = real_jpeg.read_bytes()
    cases = {
        "empty.jpg": (b"", "empty file"),
        "text.png": (b"this is not an image\n", "not a PNG, JPEG or DICOM"),
        "truncated.jpg": (data[: len(data) // 3], "truncated or corrupt"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ImageError, match=reason):
            load_image(path)


def test_too_small_and_too_large(real_pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(real_pixels).resize((40, 30)).save(buffer, format="PNG")
    with pytest.raises(ImageError, match="too small: 40x30 px"):
        load_image(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(real_pixels).save(buffer, format="PNG")
    with pytest.raises(ImageError, match="too large"):
        load_image(buffer.getvalue(), max_pixels=1000)
    with pytest.raises(ImageError, match="over the limit of 100 bytes"):
        load_image(buffer.getvalue(), max_bytes=100)


def test_rgba_png_is_flattened_on_black(real_pixels: np.ndarray) -> None:
    rgba = Image.fromarray(real_pixels).convert("RGBA")
    alpha = np.full(real_pixels.shape, 255, dtype=np.uint8)
    alpha[:, : real_pixels.shape[1] // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = np.asarray(load_image(buffer.getvalue()).image)
    assert image.shape[-1] == 3
    assert image[:, : real_pixels.shape[1] // 2].max() == 0
    np.testing.assert_array_equal(image[:, -1, 0], real_pixels[:, -1])


@pytest.mark.parametrize(("orientation", "stored"), [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(tmp_path: Path, real_jpeg: Path, orientation: int, stored) -> None:
    upright = Image.open(real_jpeg).convert("L")
    exif = Image.Exif()
    exif[0x0112] = orientation  # the pixels are stored turned; every viewer shows them upright
    path = tmp_path / "phone.jpg"
    upright.transpose(stored).save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.image.size == upright.size and not loaded.native  # the build stores the upright pixels
    difference = np.abs(np.asarray(loaded.image, dtype=int) - np.asarray(upright, dtype=int))
    assert difference.mean() < 2  # JPEG re-encoding only; a turned image differs by tens of grey levels


def _variant(path: Path, **changes) -> bytes:
    """The DICOM at `path` with some header values changed, as bytes."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_odd_but_readable_dicoms_are_read(tmp_path: Path, real_pixels: np.ndarray) -> None:
    path = write_dicom(tmp_path / "plain.dcm", real_pixels.astype(np.uint16) * 16)
    plain = np.asarray(load_image(path).image)
    zero_window = load_image(_variant(path, WindowCenter=2000, WindowWidth=0))  # viewers ignore such a window
    np.testing.assert_array_equal(np.asarray(zero_window.image), plain)
    no_preamble = load_image(path.read_bytes()[132:])  # some exporters omit the 128-byte preamble and "DICM"
    assert sniff_format(path.read_bytes()[132:]) == "DICOM"
    np.testing.assert_array_equal(np.asarray(no_preamble.image), plain)
    dark = real_pixels < np.median(real_pixels)
    one_bit = _variant(
        path,
        BitsAllocated=1,
        BitsStored=1,
        HighBit=0,
        PixelData=np.packbits(dark.ravel(), bitorder="little").tobytes(),
    )
    np.testing.assert_array_equal(np.asarray(load_image(one_bit).image), dark * np.uint8(255))


def test_broken_dicoms_get_their_true_reason(tmp_path: Path, real_pixels: np.ndarray) -> None:
    path = write_dicom(tmp_path / "plain.dcm", real_pixels.astype(np.uint16) * 16)
    data = path.read_bytes()
    cases = {
        "pixel data cut": (data[: len(data) // 2], r"truncated DICOM: the file ends at byte [\d,]+ but its element"),
        "header cut": (data[:400], "truncated DICOM"),
        "lying header": (_variant(path, Rows=100, Columns=100), r"decodes to shape \(.*\), not the \(100, 100\)"),
    }
    for name, (content, reason) in cases.items():
        with pytest.raises(ImageError, match=reason):
            load_image(content)
            pytest.fail(name)


def test_truncated_compressed_dicom_says_so(cxr_root: Path) -> None:
    data = next((cxr_root / "dicom").glob("*.dcm")).read_bytes()  # JPEG Baseline in undefined-length items
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def _size_bombs(tmp_path: Path, real_pixels: np.ndarray) -> dict[str, Path]:
    """A deflated DICOM that inflates to 144 MB of pixels (140 KB on disk), and an RLE one declaring 65535 x 65535
    (it would decode to 8.6 GB); each is far under the Space's 20 MB upload limit."""
    path = write_dicom(tmp_path / "plain.dcm", real_pixels.astype(np.uint16) * 16)
    deflated = pydicom.dcmread(path)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated.Rows = deflated.Columns = 12_000
    deflated.BitsAllocated, deflated.BitsStored, deflated.HighBit = 8, 8, 7
    deflated.PixelData = bytes(12_000 * 12_000)
    deflated.save_as(tmp_path / "deflated.dcm")
    rle = pydicom.dcmread(path)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    rle.Rows = rle.Columns = 65_535
    rle.save_as(tmp_path / "rle.dcm")
    return {"deflated": tmp_path / "deflated.dcm", "rle": tmp_path / "rle.dcm"}


MEMORY_PROBE = """
import resource, sys
from covid_cxr.data.imaging import ImageError, load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_image(sys.argv[1])
except ImageError as err:
    print(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_dicom_size_bombs_are_refused_before_decoding(tmp_path: Path, real_pixels: np.ndarray) -> None:
    for name, path in _size_bombs(tmp_path, real_pixels).items():
        assert path.stat().st_size < 1_000_000, name
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True)
        reason, grown_mb = probe.stdout.splitlines()
        assert "refused before decoding" in reason, (name, probe.stderr)
        assert int(grown_mb) < 32, name  # peak memory growth while refusing, in MB


def test_deflated_dicom_cannot_inflate_past_its_header(tmp_path: Path, real_pixels: np.ndarray) -> None:
    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", real_pixels.astype(np.uint16) * 16))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "honest.dcm")
    np.testing.assert_array_equal(
        np.asarray(load_image(tmp_path / "honest.dcm").image), np.asarray(load_image(tmp_path / "plain.dcm").image)
    )
    ds.PixelData = bytes(20_000_000)  # 100x lies about what the header declares (310 x 320 x 2 bytes)
    ds.save_as(tmp_path / "liar.dcm")
    with pytest.raises(ImageError, match=r"inflates past the [\d,]+ bytes its header allows"):
        load_image(tmp_path / "liar.dcm")


def png_with_chunk(pixels: np.ndarray, chunk_type: bytes, payload: bytes) -> bytes:
    """A real radiograph as PNG with one extra chunk put just after its header, as another tool might write it."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = buffer.getvalue()
    chunk = len(payload).to_bytes(4, "big") + chunk_type + payload + zlib.crc32(chunk_type + payload).to_bytes(4, "big")
    header_end = 8 + 25  # signature, then the IHDR chunk
    return png[:header_end] + chunk + png[header_end:]


def metadata_bomb(pixels: np.ndarray, chunk_type: bytes = b"zTXt") -> bytes:
    """A PNG of normal size whose text or ICC chunk inflates past Pillow's limit for such chunks."""
    inflated = zlib.compress(bytes(2 * PngImagePlugin.MAX_TEXT_CHUNK), 9)
    prefix = {b"zTXt": b"Comment\0\0", b"iTXt": b"Comment\0\1\0\0\0", b"iCCP": b"icc\0\0"}[chunk_type]
    return png_with_chunk(pixels, chunk_type, prefix + inflated)


@pytest.mark.parametrize("chunk_type", [b"zTXt", b"iTXt", b"iCCP"])
def test_png_metadata_bomb_is_refused_with_reason(real_pixels: np.ndarray, chunk_type: bytes) -> None:
    data = metadata_bomb(real_pixels, chunk_type)
    assert len(data) < 200_000
    with pytest.raises(
        ImageError, match=r"metadata .* inflates past [\d,]+ bytes in one chunk .*\(a decompression bomb\?\)"
    ):
        load_image(data)


def test_reason_holds_no_bytes_of_the_file() -> None:
    with pytest.raises(ImageError, match="not a PNG, JPEG or DICOM file") as raised:
        load_image(b"root:x:0:0:root:/root:/bin/bash\n")
    assert "root" not in str(raised.value)
