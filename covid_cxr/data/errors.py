"""The one exception image readers raise, kept apart so that every reader (raster, DICOM) can share it, and the
net that turns a decoding library's failure on a broken file into it."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# The libraries that parse an untrusted file's bytes: an error they raise is the file's fault
DECODERS = ("pydicom", "PIL", "numpy", "pylibjpeg", "libjpeg", "openjpeg", "jpeg_ls")


class ImageError(ValueError):
    """A file that cannot be used as a chest radiograph; the message is the reason."""


def raised_by_decoder(err: BaseException) -> bool:
    """Whether `err` arose inside a decoding library: a decoder's frame lies below this project's innermost one
    (the standard library may lie below it too). A fault raised in this project's own code, or in the standard
    library called from it, must not pass for a broken file."""
    modules = [frame.f_globals.get("__name__", "") for frame, _ in traceback.walk_tb(err.__traceback__)]
    ours = [i for i, module in enumerate(modules) if module.split(".")[0] == "covid_cxr"]
    below = modules[ours[-1] + 1 :] if ours else modules
    return any(module.split(".")[0] in DECODERS for module in below)


@contextmanager
def decoding(reason: Callable[[Exception], str]) -> Iterator[None]:
    """Whatever a decoder raises inside the block becomes an ImageError whose message is `reason(err)`; an
    ImageError, and a fault raised in this project's own code, pass through unchanged."""
    try:
        yield
    except ImageError:
        raise
    except Exception as err:
        if not raised_by_decoder(err):
            raise
        raise ImageError(reason(err)) from err
