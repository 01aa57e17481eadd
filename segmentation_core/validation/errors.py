"""Exceptions of bad *data* (one record is broken), as opposed to bad *configuration*.

Only a :class:`BadRecordError` may be skipped by ``DATALOADER.BAD_RECORD_POLICY: "skip"``
(see :class:`~segmentation_core.validation.safe_mapper.SafeMapper`); every other exception (a wrong
config value, a bug) stays fatal.
"""
from typing import Optional

__all__ = [
    "REASONS",
    "BadRecordError",
    "ImageReadError",
    "MissingImageError",
    "ImageTooLargeError",
]

# Fixed list of reason codes: the skip counters are a shared-memory array indexed by them, so
# that data-loader workers can report to the main process.
REASONS = (
    "missing_file",           # the image / label file does not exist
    "unreadable_image",       # corrupt or truncated file
    "unsupported_image",      # not an image PIL knows, or a pixel type we cannot convert
    "image_too_large",        # above INPUT.MAX_IMAGE_PIXELS
    "size_mismatch",          # record height/width differ from the decoded image
    "missing_field",          # a key the mapper needs is absent
    "empty_annotations",      # no annotation and empty records are rejected
    "degenerate_polygon",     # polygon with < 3 points (policy "reject")
    "bad_box",                # non-finite box, or box entirely outside the image
    "bad_segmentation",       # RLE of the wrong size, unknown segmentation type
    "category_out_of_range",  # category id not in [0, num_classes)
    "label_out_of_range",     # semantic label value not a class nor the ignore label
    "panoptic_id_mismatch",   # panoptic PNG ids differ from segments_info
    "bad_sentence",           # referring expression empty / without any word
    "other",
)


class BadRecordError(ValueError):
    """One dataset record cannot be used. Carries the file and a reason code (``REASONS``).

    A ``ValueError`` so that code catching the errors detectron2 raises for bad records
    (``SizeMismatchError`` is a ``ValueError`` too) keeps working.
    """

    def __init__(self, file_name: Optional[str], reason: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown bad-record reason {reason!r}; use one of {REASONS}")
        self.file_name = file_name
        self.reason = reason
        self.detail = detail
        where = f"{file_name}: " if file_name else ""
        super().__init__(f"{where}{detail} [{reason}]")

    def __reduce__(self):
        # picklable across data-loader worker processes (ValueError would re-call __init__
        # with the message only)
        return (type(self), (self.file_name, self.reason, self.detail))


class ImageReadError(BadRecordError, OSError):
    """The image file exists but cannot be decoded (also an ``OSError``, like PIL's errors)."""


class MissingImageError(ImageReadError, FileNotFoundError):
    """The image file does not exist (also a ``FileNotFoundError``)."""

    def __init__(self, file_name: str, detail: Optional[str] = None):
        super().__init__(file_name, "missing_file", detail or "file does not exist")

    def __reduce__(self):
        return (type(self), (self.file_name, self.detail))


class ImageTooLargeError(ImageReadError):
    """The image has more pixels than the configured limit (checked before decoding)."""

    def __init__(self, file_name: str, detail: str):
        super().__init__(file_name, "image_too_large", detail)

    def __reduce__(self):
        return (type(self), (self.file_name, self.detail))
