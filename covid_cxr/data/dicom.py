"""DICOM radiographs to 8-bit PIL images, with every size checked before any pixel is decoded.

A DICOM header can declare a 65535 x 65535 image in a 4 MB file, and a deflated dataset can inflate a
hundredfold: both are refused from the header alone, so a hostile upload cannot exhaust memory. Odd but
readable files (no 128-byte preamble, a zero window width, 1-bit pixels) are read; unreadable ones get the
true reason (truncated, not a radiograph, ...). Patient tags are never read into any message.
"""

from __future__ import annotations

import contextlib
import io
import re
import zlib
from collections.abc import Callable

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pydicom.valuerep import VR

from covid_cxr.data.errors import ImageError, decoding

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG"})
HEADER_BYTES = 1 << 20  # what a deflated dataset may inflate to before its image size is known
_READ_ERRORS = (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError)
_VRS = frozenset(vr.value.encode() for vr in VR)
_TAG = re.compile(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)")


def looks_like_dicom(head: bytes) -> bool:
    """True for a DICOM file (``DICM`` at byte 128) and for one written without the 128-byte preamble: it
    then starts with a file-meta (group 0002) or identifying (group 0008) element, explicit or implicit VR."""
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in (0x0002, 0x0008):
        return False
    return head[4:6] in _VRS or int.from_bytes(head[4:8], "little") < 1024  # explicit VR, or a short implicit length


def read_dicom(data: bytes, max_pixels: int) -> Image.Image:
    """A single-frame radiograph as 8-bit "L" (or "RGB"), bright bone, its VOI window applied when valid."""
    with decoding(_corrupt("the DICOM file meta information")):
        data = _inflated(data, max_pixels)
    with decoding(_corrupt("the DICOM data set")):  # pydicom converts each element's value when it is first read
        try:  # force=True reads files without the preamble; looks_like_dicom has already vouched for the content
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except _READ_ERRORS as err:
            raise ImageError(f"unreadable DICOM ({err})") from err
        _check_complete(ds, len(data))  # parsing reads the pixel bytes but decodes nothing
        _check_header(ds, max_pixels)
        if "PixelData" not in ds:
            raise ImageError("DICOM file holds no image (no PixelData element)")
        samples = _int(ds, "SamplesPerPixel", 1)
        expected = (ds.Rows, ds.Columns) if samples == 1 else (ds.Rows, ds.Columns, samples)
    with decoding(lambda err: f"DICOM pixel data cannot be decoded ({err})"):
        pixels = ds.pixel_array
    if pixels.shape != expected:
        raise ImageError(f"DICOM pixel data decodes to shape {pixels.shape}, not the {expected} its header declares")
    with decoding(_corrupt("a DICOM display value (rescale or window)")):
        return _to_display(pixels, ds)


def _corrupt(part: str) -> Callable[[Exception], str]:
    """The reason for a pydicom error in `part` of a file: which kind of damage, and in which element (a tag
    number, never a value: values may name the patient)."""

    def reason(err: Exception) -> str:
        if isinstance(err, BytesLengthException):
            damage = "an element's length does not match its value type"
        elif isinstance(err, NotImplementedError) and "Value Representation" in str(err):
            damage = "an element has an unknown value representation"
        else:
            damage = f"a value cannot be read ({type(err).__name__})"
        tag = _TAG.search(str(err))
        return f"{part} is corrupt: {damage}{f' (element {tag.group()})' if tag else ''}; export the file again"

    return reason


def _check_complete(ds: Dataset, size: int) -> None:
    """pydicom keeps what it could read of a cut file; a last element that does not end where the file ends
    means the file was cut short (a copy or download that stopped), which deserves that reason."""
    last = next(reversed(list(ds.elements())), None)
    if last is None:  # pydicom drops every element when the file ends inside an undefined-length one
        raise ImageError(
            "truncated or empty DICOM: no data element can be read (the file ends inside one); copy or export it again"
        )
    if not isinstance(last, RawDataElement) or last.length == 0xFFFFFFFF:  # undefined length: no end to compare
        return
    end = last.value_tell + last.length
    if end != size:
        raise ImageError(
            f"truncated DICOM: the file ends at byte {size:,} but its element {last.tag} runs to byte {end:,}; "
            "copy or export the file again"
            if end > size
            else f"truncated or corrupt DICOM: {size - end:,} bytes after element {last.tag} cannot be read"
        )


def _inflated(data: bytes, max_pixels: int) -> bytes:
    """The file itself, or for a deflated dataset the same file stored uncompressed: its header is inflated
    first (at most HEADER_BYTES) and checked, and the rest only up to the size that header declares."""
    fp = DicomBytesIO(data)
    try:
        read_preamble(fp, True)
        meta = FileMetaDataset(read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2))
    except _READ_ERRORS as err:
        raise ImageError(f"unreadable DICOM file meta information ({err})") from err
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(fp.read(), HEADER_BYTES)
        header = read_dataset(io.BytesIO(body), False, True, stop_when=lambda tag, vr, length: tag == 0x7FE00010)
        limit = _check_header(header, max_pixels) + HEADER_BYTES
        body += inflater.decompress(inflater.unconsumed_tail, max(limit - len(body), 1))
    except zlib.error as err:
        raise ImageError(f"deflated DICOM data is corrupt ({err})") from err
    if inflater.unconsumed_tail:
        raise ImageError(f"deflated DICOM inflates past the {limit:,} bytes its header allows; refused")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    out.write(body)
    return out.getvalue()


def _check_header(ds: Dataset, max_pixels: int) -> int:
    """Refuse what the header alone rules out; return the bytes its pixel data decodes to."""
    modality = str(ds.get("Modality", "")).upper()
    if modality not in RADIOGRAPH_MODALITIES:
        raise ImageError(
            f"DICOM modality {modality or 'missing'!r} is not a radiograph "
            f"(expected one of {', '.join(sorted(RADIOGRAPH_MODALITIES))})"
        )
    frames = _int(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageError(f"multi-frame DICOM ({frames} frames); export the single radiograph you want")
    rows, columns = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    if rows * columns > max_pixels:
        raise ImageError(
            f"DICOM declares {columns}x{rows} px, over the limit of {max_pixels:,} pixels; refused before decoding"
        )
    samples, bits = _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated", 16)
    if samples not in (1, 3) or bits not in (1, 8, 16, 32):
        raise ImageError(f"DICOM declares {samples} sample(s) of {bits} bits per pixel; not a radiograph layout")
    return rows * columns * samples * max(bits // 8, 1)


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError) as err:
        raise ImageError(f"DICOM {keyword} value {ds.get(keyword)!r} is not a number") from err


def _to_display(pixels: np.ndarray, ds: Dataset) -> Image.Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "RGB":
        return Image.fromarray(scale_to_uint8(pixels), mode="RGB")
    if not photometric.startswith("MONOCHROME"):
        raise ImageError(f"DICOM photometric interpretation {photometric!r} is not supported")
    values = apply_modality_lut(pixels, ds)
    # an invalid window (width 0, a value that is no number, ...) is ignored: the full range is shown
    with contextlib.suppress(ValueError, TypeError):
        values = apply_voi_lut(values, ds)
    scaled = scale_to_uint8(values)
    if photometric == "MONOCHROME1":  # high values are dark: invert so bone is bright, as in MONOCHROME2
        scaled = 255 - scaled
    return Image.fromarray(scaled, mode="L")


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..255 (a constant image becomes black)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
