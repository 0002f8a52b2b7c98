"""Bytes on the wire: base64 image uploads in, anomaly maps and defect masks out as PNG.

An anomaly map is a float map with no fixed range, so it travels as a 16-bit grayscale PNG
scaled linearly from its own minimum to its maximum; the two values ride along in the PNG's text
chunks (``texinspect:min``, ``texinspect:max``) and in the response, so a client gets the map back
to 1/65535 of its range with :func:`png_to_map`. Masks are 8-bit PNGs, 255 = defect.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from texinspect.errors import TexinspectError

MAP_MIN_KEY = "texinspect:min"
MAP_MAX_KEY = "texinspect:max"
_DATA_URI_MARK = ";base64,"


class RequestError(TexinspectError):
    """A request the server cannot answer as sent; the message names the field and what was expected."""


def decode_b64(text: object, where: str, max_bytes: int) -> bytes:
    """Strict base64 (a ``data:image/...;base64,`` prefix is allowed) -> bytes, capped at ``max_bytes``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise RequestError(f"{where}: expected base64 text, got non-ASCII bytes") from None
    if not isinstance(text, str):
        raise RequestError(f"{where}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and _DATA_URI_MARK in text[:100]:
        text = text.split(_DATA_URI_MARK, 1)[1]
    text = "".join(text.split())  # line breaks of wrapped base64 are harmless
    if not text:
        raise RequestError(f"{where}: empty string, expected a base64-encoded image file")
    if len(text) * 3 // 4 > max_bytes + 3:
        raise RequestError(
            f"{where}: encoded image is about {len(text) * 3 // 4} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where}: not valid base64 ({exc})") from None


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def map_to_png(amap: np.ndarray) -> tuple[bytes, float, float]:
    """Float map (H, W) -> (16-bit PNG bytes, min, max); a constant map encodes as zeros."""
    values = np.asarray(amap, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D, got shape {values.shape}")
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    scaled = np.zeros(values.shape, dtype=np.uint16)
    if span > 0:
        scaled = np.round((values - lo) / span * 65535.0).clip(0, 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text(MAP_MIN_KEY, repr(lo))
    info.add_text(MAP_MAX_KEY, repr(hi))
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue(), lo, hi


def png_to_map(data: bytes) -> np.ndarray:
    """Inverse of :func:`map_to_png` (for clients and tests): float32 (H, W) in the map's units."""
    image = Image.open(io.BytesIO(data))
    image.load()
    try:
        lo = float(image.text[MAP_MIN_KEY])
        hi = float(image.text[MAP_MAX_KEY])
    except (AttributeError, KeyError) as exc:
        raise ValueError(f"PNG has no texinspect map range ({exc})") from None
    scaled = np.asarray(image, dtype=np.float64)
    return (lo + scaled / 65535.0 * (hi - lo)).astype(np.float32)


def mask_to_png(mask: np.ndarray) -> bytes:
    """Boolean mask (H, W) -> 8-bit grayscale PNG, 255 where defective."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def png_to_mask(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("L")) > 127
