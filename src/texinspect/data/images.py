"""Decoding image files into the arrays the models read: float32 (C, H, W) in [0, 1].

Files and uploaded bytes go through the same function (``load_image`` reads the file's bytes and
decodes them like ``decode_image_bytes``), so a served model sees exactly the pixels it was trained
and evaluated on. Grayscale, RGB, RGBA, palette and 16-bit files are converted to the channel count
the model expects; masks are binarised. Every failure is a ``DataError`` naming the file, and so
is a floating-point file holding NaN or infinite pixels: no score can be computed from them (a
map of NaN scores as "not defective"), so they are bad input, never a verdict.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from texinspect.errors import ConfigError, DataError

# Pillow modes holding more than 8 bits per sample (16-bit PNG/TIFF open as one of these).
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear widens its support when shrinking: antialiased


@dataclass(frozen=True)
class ImageInfo:
    """What a file holds before conversion: used by the dataset check."""

    width: int
    height: int
    mode: str


def check_size_channels(size: int | None, channels: int | None = None) -> None:
    """Fail early, naming the value, before any file is opened (sizes come from the config)."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise ConfigError(f"image size must be a positive integer, got {size!r}")
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels!r}")


def _open(data: bytes, name: str, max_pixels: int | None = None) -> Image.Image:
    """Decode ``data`` fully (first frame); ``name`` is what error messages call it.

    The pixel limit is checked from the header before any pixel is decoded, so a small compressed
    file that would expand to gigabytes is refused cheaply. Pillow's own global limit
    (``Image.MAX_IMAGE_PIXELS``) is left untouched; it still applies on top of ``max_pixels``.
    """
    if not data:
        raise DataError(f"{name}: empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a readable image (unknown format or corrupt header)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{name}: image too large to decode safely ({_text(exc)})") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{name}: cannot read image header ({_text(exc)})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(
            f"{name}: image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    if width <= 0 or height <= 0:
        raise DataError(f"{name}: image has no pixels ({width}x{height})")
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise DataError(f"{name}: truncated or corrupt image data ({_text(exc)})") from None
    return image


def _text(exc: BaseException) -> str:
    """An exception as one line: messages name one file per line in logs and HTTP replies."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _resize_float(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).resize((width, height), RESAMPLE), dtype=np.float32)


def _to_array(image: Image.Image, size: int | None, channels: int, name: str) -> np.ndarray:
    """Pillow image -> float32 (C, H, W) in [0, 1] at size x size (native size when None)."""
    try:
        return _convert(image, size, channels, name)
    except (ValueError, OSError) as exc:  # e.g. a colour space Pillow cannot convert to RGB
        raise DataError(f"{name}: cannot convert image of mode {image.mode} ({_text(exc)})") from None


def check_finite(plane: np.ndarray, name: str) -> None:
    """DataError naming the file when a float image holds NaN or infinite pixels (clipping keeps NaN)."""
    bad = int(plane.size - np.count_nonzero(np.isfinite(plane)))
    if bad:
        raise DataError(
            f"{name}: {bad} of {plane.size} pixels are NaN or infinite; expected finite values "
            "(a float image in [0, 1])"
        )


def _convert(image: Image.Image, size: int | None, channels: int, name: str) -> np.ndarray:
    width, height = (size, size) if size is not None else image.size
    if image.mode in _HIGH_DEPTH_MODES or image.mode == "F":
        # Pillow's convert("L") clips 16-bit values instead of scaling them: scale by hand.
        # One writable float copy, scaled and clipped in place: a 6000 px 16-bit file is 144 MB a copy.
        plane = np.array(image, dtype=np.float32)
        if image.mode == "F":
            check_finite(plane, name)
        else:
            np.divide(plane, np.float32(65535.0), out=plane)
        np.clip(plane, 0.0, 1.0, out=plane)
        if (width, height) != image.size:
            plane = np.clip(_resize_float(plane, width, height), 0.0, 1.0)
        return np.repeat(plane[None], channels, axis=0)
    if channels == 1:
        converted = image if image.mode == "L" else image.convert("RGB").convert("L")
    else:
        # RGBA/LA/PA: alpha is dropped (not composited) so pixels keep the values the camera wrote.
        converted = image if image.mode == "RGB" else image.convert("RGB")
    if (width, height) != converted.size:
        converted = converted.resize((width, height), RESAMPLE)
    array = np.asarray(converted, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=np.float32) / np.float32(255.0)


def decode_image_bytes(
    data: bytes,
    size: int | None,
    channels: int,
    max_pixels: int | None = None,
    name: str = "uploaded image",
) -> np.ndarray:
    """Bytes of an image file -> float32 (C, H, W) in [0, 1]; identical to ``load_image`` on the file.

    ``max_pixels`` refuses images whose header declares more pixels (decompression bombs) before
    decoding them. Non-image bytes and truncated data raise DataError.
    """
    check_size_channels(size, channels)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{name}: expected bytes, got {type(data).__name__}")
    return _to_array(_open(bytes(data), name, max_pixels), size, channels, name)


def declared_pixels(data: bytes) -> int:
    """Width x height from the header of an encoded image (nothing decoded); 0 if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, *_DECODE_ERRORS):
        return 0
    return int(width) * int(height)


def load_image(path: str | Path, size: int | None, channels: int) -> np.ndarray:
    """Image file -> float32 (C, H, W) in [0, 1], resized (bilinear, antialiased) to size x size.

    ``size=None`` keeps the file's own size. Grayscale files are repeated to 3 channels; colour
    files become 1 channel by ITU-R 601 luma; 16-bit files are scaled (not clipped) to [0, 1].
    """
    check_size_channels(size, channels)
    return _to_array(_open(_read(path), str(path)), size, channels, str(path))


def load_mask(path: str | Path, size: int | None) -> np.ndarray:
    """Mask file -> float32 (H, W) in {0, 1}: values > 127 (of 255) are defect; nearest resize."""
    check_size_channels(size)
    binary = mask_array(path) > 127
    if size is not None and binary.shape != (size, size):
        resized = Image.fromarray(binary.astype(np.uint8) * 255).resize(
            (size, size), Image.Resampling.NEAREST
        )
        binary = np.asarray(resized) > 127
    return binary.astype(np.float32)


def mask_array(path: str | Path) -> np.ndarray:
    """Mask file -> uint8 (H, W) at its own size, on the 0..255 scale (16-bit masks are scaled)."""
    image = _open(_read(path), str(path))
    if image.mode in _HIGH_DEPTH_MODES:
        return np.round(np.asarray(image, dtype=np.float64) / 65535.0 * 255.0).clip(0, 255).astype(np.uint8)
    if image.mode == "F":
        plane = np.asarray(image, dtype=np.float64)
        check_finite(plane, str(path))
        return np.round(np.clip(plane, 0, 1) * 255.0).astype(np.uint8)
    converted = image if image.mode == "L" else image.convert("RGB").convert("L")
    return np.asarray(converted, dtype=np.uint8)


def image_info(path: str | Path) -> ImageInfo:
    """Decode the whole file (so truncation is found) and report its size and mode."""
    image = _open(_read(path), str(path))
    return ImageInfo(width=image.size[0], height=image.size[1], mode=image.mode)
