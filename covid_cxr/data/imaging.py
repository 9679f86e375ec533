"""Image I/O shared by the dataset build and the Space: PNG, JPEG and DICOM in, 8-bit PIL images out.

Every failure raises :class:`ImageError` whose message says what is wrong with the file, so callers can
list skipped files (dataset build) or show a readable message (Space) instead of a stack trace.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from covid_cxr.data.dicom import looks_like_dicom, read_dicom, scale_to_uint8
from covid_cxr.data.errors import ImageError

SUPPORTED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
DEFAULT_MIN_SIZE = 64


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The PNG, JPEG and DICOM files of a folder (and its sub-folders when `recursive`), sorted: what a batch
    command reads from a folder it is given."""
    return list(walk_images(folder, recursive))


def walk_images(folder: Path, recursive: bool = False) -> Iterator[Path]:
    """`image_files` as a stream, one folder's names held at a time (a million-file archive starts at once):
    in the order of their sorted paths. Symbolic links to files count; to folders, not."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        if recursive and entry.is_dir(follow_symlinks=False):
            yield from walk_images(Path(entry.path), recursive)
        elif entry.is_file() and Path(entry.name).suffix.lower() in SUPPORTED_SUFFIXES:
            yield Path(entry.path)


DEFAULT_MAX_PIXELS = 50_000_000  # 7,000 x 7,000: above any real radiograph, below a decompression bomb

logger = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image plus what is needed to store it without loss."""

    image: Image.Image  # mode "L" or "RGB", 8 bits per channel
    format: str  # "PNG", "JPEG" or "DICOM"
    native: bool  # True when the file's own bytes already hold exactly `image` (8-bit L/RGB PNG or JPEG, upright)


def sniff_format(head: bytes) -> str | None:
    """Identify PNG, JPEG or DICOM from a file's first 132 bytes (content, not extension)."""
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if head.startswith(_JPEG_MAGIC):
        return "JPEG"
    if looks_like_dicom(head):
        return "DICOM"
    return None


def load_image(
    source: str | Path | bytes,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
) -> LoadedImage:
    """Read and validate one image (a path or the file's bytes) and return it as 8-bit L or RGB.

    Raises ImageError for empty, unrecognised, truncated, too small or too large files (over `max_bytes`,
    checked before reading, or `max_pixels`), and for DICOM files that are not single-frame radiographs.
    """
    size = Path(source).stat().st_size if isinstance(source, (str, Path)) else len(source)
    if max_bytes is not None and size > max_bytes:
        raise ImageError(f"the file is {size:,} bytes, over the limit of {max_bytes:,} bytes")
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    if not data:
        raise ImageError("empty file (0 bytes)")
    fmt = sniff_format(data[:132])
    if fmt is None:
        raise ImageError(  # no bytes of the file in the reason: it goes into reports that may be published
            "not a PNG, JPEG or DICOM file (its first bytes match none of these formats); convert it to one of them"
        )
    if fmt == "DICOM":
        image, upright = read_dicom(data, max_pixels), True
    else:
        image, upright = _read_raster(data, max_pixels)
    native = fmt != "DICOM" and image.mode in ("L", "RGB") and upright
    image = to_8bit(image)
    width, height = image.size
    if min(width, height) < min_size:
        raise ImageError(f"too small: {width}x{height} px (each side must be at least {min_size} px)")
    if width * height > max_pixels:
        raise ImageError(f"too large: {width}x{height} px (limit {max_pixels:,} pixels)")
    return LoadedImage(image=image, format=fmt, native=native)


def fault_reason(path: Path, err: Exception) -> str:
    """Why a file was skipped when it tripped a fault in this code or a library rather than an ImageError: a
    batch goes on past it, and the traceback is logged so the fault can still be reported."""
    logger.error("unexpected error while processing %s", path, exc_info=err)
    return f"unexpected error while processing the file ({type(err).__name__}: {err}); please report it"


def _read_raster(data: bytes, max_pixels: int) -> tuple[Image.Image, bool]:
    """The decoded image turned as its EXIF orientation says (as every viewer shows it), and whether the
    stored pixels were already upright."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise ImageError(f"too large: {image.width}x{image.height} px (limit {max_pixels:,} pixels)")
        image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"truncated or corrupt image data ({err})") from err
    except ValueError as err:  # how Pillow's decoders refuse bad chunk contents
        if "MAX_TEXT" in str(err):  # PngImagePlugin's limits on one text/ICC chunk and on all of them
            raise ImageError(
                "the PNG holds metadata (text or an ICC profile) that inflates past "
                f"{PngImagePlugin.MAX_TEXT_CHUNK:,} bytes in one chunk or {PngImagePlugin.MAX_TEXT_MEMORY:,} in all "
                "(a decompression bomb?); save the image again without its metadata"
            ) from err
        raise ImageError(f"truncated or corrupt image data ({err})") from err
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    return (ImageOps.exif_transpose(image), False) if orientation not in (0, 1) else (image, True)


def to_8bit(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit "L" or "RGB": 16-bit and float data min-max scaled, alpha put on black."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return Image.fromarray(scale_to_uint8(np.asarray(image, dtype=np.float64)), mode="L")
    if image.mode in ("1", "LA", "P", "PA") and _is_grey(image):
        return _flatten_alpha(image.convert("LA"))
    return _flatten_alpha(image.convert("RGBA"))


def _is_grey(image: Image.Image) -> bool:
    if image.mode != "P":
        return True
    palette = np.asarray(image.convert("RGB"))
    return bool((palette[..., 0] == palette[..., 1]).all() and (palette[..., 1] == palette[..., 2]).all())


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an "LA" or "RGBA" image onto black, returning "L" or "RGB"."""
    base_mode = image.mode[:-1]
    background = Image.new(base_mode, image.size, 0)
    background.paste(image.convert(base_mode), mask=image.getchannel("A"))
    return background


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
