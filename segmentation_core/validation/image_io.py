"""``read_image_checked``: detectron2's ``read_image`` with clear errors and correct pixel
conversions, for every dataset mapper.

What it does, in order:

1. a missing file -> :class:`MissingImageError`; a file PIL cannot identify (empty, garbage,
   unsupported format) -> :class:`ImageReadError` (reason ``unsupported_image``);
2. the pixel count from the header is compared with ``max_pixels`` *before* decoding, so a
   huge image is refused (:class:`ImageTooLargeError`) instead of exhausting memory;
3. the pixels are decoded; a truncated or corrupt file -> :class:`ImageReadError`
   (``unreadable_image``), naming the file and PIL's reason. (PIL's global
   ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` would make PIL fill truncated files silently;
   we leave that global alone and honour it.)
4. EXIF orientation is applied (``apply_exif=True``, detectron2's convention): annotations are
   expected in the orientation a viewer shows, which is what annotation tools display. A
   dataset annotated on the stored pixels needs ``apply_exif=False``
   (``INPUT.APPLY_EXIF_ORIENTATION: False``); ``expected_size`` detects the mix-up.
5. conversion to ``format``:

   * ``format=None`` (label maps): the raw array, e.g. uint16 for 16-bit PNGs (ADE20K-full),
     palette indices for "P" images; no colour conversion;
   * 16/32-bit integer grayscale ("I;16*", "I") is *scaled* to 8 bits (``round(v / 257)``);
     detectron2's ``read_image`` saturates it at 255 instead (a nearly white image).
     "I" values outside 0..65535 are refused;
   * floating-point images ("F") are refused: their value range is unknown;
   * RGBA / LA / PA and palette images with transparency: the alpha channel is dropped
     (as detectron2 does; no compositing), the colours kept;
   * everything else (RGB, L, 1, P, CMYK, YCbCr, ...) through detectron2's
     ``convert_PIL_to_numpy``, so "RGB", "BGR", "L", "YUV-BT.601" give detectron2's arrays.

Multi-frame files (GIF, TIFF) give their first frame.
"""
import logging
import os
import warnings
from typing import Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager

from .errors import BadRecordError, ImageReadError, ImageTooLargeError, MissingImageError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "SUPPORTED_FORMATS", "read_image_checked", "exif_orientation"]

logger = logging.getLogger(__name__)

# 10^8 pixels (a 10000 x 10000 image, 300 MB as uint8 RGB): well above any segmentation
# dataset (ADE20K / COCO / Cityscapes / Mapillary <= 2.5e7), below what exhausts a worker.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000

# the formats ``detection_utils.read_image`` accepts besides PIL modes
SUPPORTED_FORMATS = ("RGB", "BGR", "L", "YUV-BT.601", "RGBA", "CMYK", "YCbCr", "LAB", "HSV")

_EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the PIL transpose that shows the image upright (EXIF 2.3 spec)
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright) of an opened image; 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks raise many types; they carry no orientation
        return 1
    return value if value in _EXIF_TRANSPOSE else 1


def _is_local(file_name: str) -> bool:
    return "://" not in file_name


def _to_8bit_gray(image: Image.Image, file_name: str) -> Image.Image:
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageReadError(
            file_name, "unsupported_image",
            f"32-bit integer image with values in [{values.min()}, {values.max()}], outside "
            "0..65535; convert it to an 8-bit PNG/JPEG",
        )
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), "L")


def _drop_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P":  # palette with a transparent entry
        image = image.convert("RGBA")
    return image.convert({"LA": "L", "La": "L"}.get(image.mode, "RGB"))


def read_image_checked(
    file_name: str,
    format: Optional[str] = None,
    *,
    max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
    apply_exif: bool = True,
    expected_size: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Read an image as an (H, W, C) array (``format=None``: as stored, maybe (H, W)).

    Args:
        file_name: local path or a ``PathManager`` URL.
        format: "RGB", "BGR", "L", "YUV-BT.601", another PIL mode, or None for label maps.
        max_pixels: refuse images with more pixels (None or 0: no limit of ours; PIL's own
            ``Image.MAX_IMAGE_PIXELS`` decompression-bomb limit still applies).
        apply_exif: rotate/flip by the EXIF orientation tag (detectron2's behaviour).
        expected_size: (height, width) of the record; a mismatch raises a
            :class:`BadRecordError` (``size_mismatch``) that says whether EXIF explains it.

    Raises:
        MissingImageError, ImageReadError, ImageTooLargeError (all ``BadRecordError``);
        ValueError for an unknown ``format`` (a configuration error, never skipped).
    """
    if format is not None and format not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported image format {format!r} (INPUT.FORMAT); use one of {SUPPORTED_FORMATS}")
    file_name = os.fspath(file_name)
    if _is_local(file_name) and not os.path.isfile(file_name):
        detail = "file does not exist"
        parent = os.path.dirname(file_name) or "."
        if not os.path.isdir(parent):
            detail += f" (nor its folder {parent}: check the dataset root, $DETECTRON2_DATASETS)"
        raise MissingImageError(file_name, detail)
    try:
        with PathManager.open(file_name, "rb") as f:
            return _read_open_file(f, file_name, format, max_pixels, apply_exif, expected_size)
    except BadRecordError:
        raise
    except FileNotFoundError as e:
        raise MissingImageError(file_name, str(e)) from e


def _read_open_file(f, file_name, format, max_pixels, apply_exif, expected_size) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # we enforce our own limit below; PIL's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(f)
    except UnidentifiedImageError as e:
        raise ImageReadError(
            file_name, "unsupported_image",
            "not an image PIL can identify (empty file, corrupt header, or an unsupported "
            "format; use JPEG/PNG/BMP/TIFF/WebP)",
        ) from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(
            file_name, f"{e}; PIL refuses it before our INPUT.MAX_IMAGE_PIXELS check. Raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well if such images are intended",
        ) from e
    except OSError as e:
        raise ImageReadError(file_name, "unreadable_image", f"cannot open: {type(e).__name__}: {e}") from e

    width, height = image.size
    if max_pixels and width * height > max_pixels:
        raise ImageTooLargeError(
            file_name,
            f"image of {width} x {height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} (INPUT.MAX_IMAGE_PIXELS); downscale the file or raise the limit "
            "(0 disables it)",
        )
    try:
        image.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise ImageReadError(
            file_name, "unreadable_image",
            f"corrupt or truncated image ({image.format}, {width} x {height}): {type(e).__name__}: {e}",
        ) from e

    orientation = exif_orientation(image) if apply_exif else 1
    if orientation != 1:
        image = image.transpose(_EXIF_TRANSPOSE[orientation])
    if expected_size is not None:
        _check_size(file_name, image, expected_size, orientation, apply_exif)

    if format is None:
        return np.asarray(image)
    if image.mode == "F":
        raise ImageReadError(
            file_name, "unsupported_image",
            "floating-point image (PIL mode F): its value range is unknown, so it cannot be "
            "converted to 8-bit colours; save it as an 8-bit PNG/JPEG",
        )
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _to_8bit_gray(image, file_name)
    elif format != "RGBA" and (
        image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
    ):
        image = _drop_alpha(image)
    return convert_PIL_to_numpy(image, format)


def _check_size(file_name, image, expected_size, orientation, apply_exif):
    h, w = int(expected_size[0]), int(expected_size[1])
    got = (image.size[1], image.size[0])
    if got == (h, w):
        return
    hint = ""
    if got == (w, h):
        if orientation in (5, 6, 7, 8):
            hint = (
                f"; the file's EXIF orientation {orientation} rotates it: the annotations seem "
                "to be made on the stored pixels, set INPUT.APPLY_EXIF_ORIENTATION False"
            )
        elif not apply_exif:
            hint = "; the file may carry an EXIF rotation: try INPUT.APPLY_EXIF_ORIENTATION True"
    raise BadRecordError(
        file_name, "size_mismatch",
        f"image is {got[0]} x {got[1]} (h x w) but the record says {h} x {w}{hint}",
    )
