"""The one exception image readers raise, kept apart so that every reader (raster, DICOM) can share it."""


class ImageError(ValueError):
    """A file that cannot be used as a chest radiograph; the message is the reason."""
