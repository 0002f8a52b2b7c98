"""Random defect masks: thresholded Perlin noise, random shapes and large soft regions.

DRAEM-style Perlin masks (RB-AE follows DRAEM) give blob-like defects of many sizes; shapes give
the sharp-edged cracks, scratches and holes real surfaces show; soft masks give the large, smooth,
low-contrast regions that the design notes single out as the hard real case. Everything is
vectorised numpy driven by an explicit ``np.random.Generator`` so a seed fixes every mask.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from texinspect.config import MaskConfig
from texinspect.errors import ConfigError

MaskKind = Literal["perlin", "shape", "soft"]

# Perlin gradient noise in 2-D stays within +-sqrt(2)/2; dividing by this maps it into [-1, 1].
_PERLIN_BOUND = math.sqrt(0.5)
_SOFT_GRID = 32  # soft masks are drawn on a grid this coarse, then upsampled


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic ease curve 6t^5 - 15t^4 + 10t^3 (C2-continuous across cell borders)."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(
    h: int,
    w: int,
    res: tuple[float, float],
    rng: np.random.Generator,
    angle: float = 0.0,
) -> np.ndarray:
    """2-D Perlin gradient noise, float32 (h, w) in [-1, 1].

    ``res`` is the number of noise cells along (y, x); ``angle`` (radians) rotates the lattice,
    which is how masks get random orientation without an image-rotation pass (cheaper, no
    interpolation blur, no empty corners).
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"perlin_noise: size must be positive, got {h}x{w}")
    if res[0] <= 0 or res[1] <= 0:
        raise ValueError(f"perlin_noise: res must be positive, got {res}")
    # Rotate normalised pixel coordinates first, then scale by the cell counts, so an
    # anisotropic pattern (e.g. 32 x 1 cells: streaks) turns as a whole instead of shearing.
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    if angle:
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        y = (c * ys[:, None] - s * xs[None, :]) * np.float32(res[0])
        x = (s * ys[:, None] + c * xs[None, :]) * np.float32(res[1])
    else:
        y = np.broadcast_to(ys[:, None] * np.float32(res[0]), (h, w))
        x = np.broadcast_to(xs[None, :] * np.float32(res[1]), (h, w))
    y = y - np.floor(y.min())
    x = x - np.floor(x.min())
    iy, ix = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    fy, fx = (y - iy).astype(np.float32), (x - ix).astype(np.float32)
    gh, gw = int(iy.max()) + 2, int(ix.max()) + 2
    theta = rng.uniform(0.0, 2.0 * math.pi, size=gh * gw)
    gy, gx = np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)
    flat = iy * gw + ix  # one flat gather index per pixel; corners are fixed offsets from it

    def corner(dy: int, dx: int) -> np.ndarray:
        k = flat + (dy * gw + dx)
        return gy.take(k) * (fy - dy) + gx.take(k) * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    n00, n01, n10, n11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = n00 + v * (n01 - n00)
    bottom = n10 + v * (n11 - n10)
    noise = (top + u * (bottom - top)) / np.float32(_PERLIN_BOUND)
    return np.clip(noise, -1.0, 1.0).astype(np.float32, copy=False)


def fractal_noise(
    h: int,
    w: int,
    res: tuple[float, float],
    rng: np.random.Generator,
    octaves: int = 4,
    persistence: float = 0.5,
    angle: float = 0.0,
) -> np.ndarray:
    """Sum of Perlin octaves (each twice the frequency, ``persistence`` times the amplitude),
    rescaled into [-1, 1]; used for procedural textures and soft masks."""
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for k in range(octaves):
        total += np.float32(amp) * perlin_noise(h, w, (res[0] * 2**k, res[1] * 2**k), rng, angle)
        norm += amp
        amp *= persistence
    return total / np.float32(norm)


def resize_bilinear(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """float32 (h, w) bilinear resize of a float32 2-D array (PIL's C code, mode "F")."""
    if a.shape == (h, w):
        return a
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def smooth_noise(
    h: int,
    w: int,
    res: tuple[float, float],
    rng: np.random.Generator,
    angle: float = 0.0,
    octaves: int = 1,
    persistence: float = 0.5,
    px_per_cell: int = 8,
) -> np.ndarray:
    """Perlin/fractal noise evaluated at the lowest resolution that still gives every finest
    noise cell ``px_per_cell`` samples, then bilinearly upsampled.

    Noise is band-limited, so this looks the same as full-resolution evaluation but costs
    ~1 ms instead of ~7 ms at 256 px: mask drawing must never slow training down.
    """
    finest = max(res) * 2 ** (octaves - 1)
    scale = min(1.0, px_per_cell * finest / min(h, w))
    lh, lw = max(2, math.ceil(h * scale)), max(2, math.ceil(w * scale))
    noise = fractal_noise(lh, lw, res, rng, octaves, persistence, angle)
    return resize_bilinear(noise, h, w)


def validate_mask_config(cfg: MaskConfig) -> None:
    """Fail early, naming the key, on values that would make mask drawing loop or misbehave."""
    p = "synthesis.mask."
    if cfg.perlin_scale_min < 0 or cfg.perlin_scale_max < cfg.perlin_scale_min:
        raise ConfigError(
            f"{p}perlin_scale_min/max: need 0 <= min <= max, got {cfg.perlin_scale_min}, {cfg.perlin_scale_max}"
        )
    if cfg.perlin_scale_max > 10:
        raise ConfigError(f"{p}perlin_scale_max: expected <= 10 (2**10 cells), got {cfg.perlin_scale_max}")
    if not -1.0 < cfg.perlin_threshold < 1.0:
        raise ConfigError(f"{p}perlin_threshold: expected a value in (-1, 1), got {cfg.perlin_threshold}")
    for name in ("shape_probability", "soft_probability"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{p}{name}: expected a probability in [0, 1], got {value}")
    if cfg.shape_probability + cfg.soft_probability > 1.0 + 1e-9:
        raise ConfigError(
            f"{p}shape_probability + soft_probability must be <= 1, got "
            f"{cfg.shape_probability} + {cfg.soft_probability}"
        )
    if cfg.max_shapes < 1:
        raise ConfigError(f"{p}max_shapes: expected >= 1, got {cfg.max_shapes}")
    if not 0.0 <= cfg.local_probability <= 1.0:
        raise ConfigError(f"{p}local_probability: expected a probability in [0, 1], got {cfg.local_probability}")
    if not 0.0 < cfg.local_radius_min <= cfg.local_radius_max <= 1.0:
        raise ConfigError(
            f"{p}local_radius_min/max: need 0 < min <= max <= 1, got {cfg.local_radius_min}, {cfg.local_radius_max}"
        )
    if not 0.0 <= cfg.min_area < 0.5:
        raise ConfigError(f"{p}min_area: expected a fraction in [0, 0.5), got {cfg.min_area}")


def _perlin_scale(rng: np.random.Generator, cfg: MaskConfig) -> int:
    # Exponent in [min, max) as DRAEM draws it (2**6 cells on 256 px would be 4-px speckle).
    if cfg.perlin_scale_max > cfg.perlin_scale_min:
        return 2 ** int(rng.integers(cfg.perlin_scale_min, cfg.perlin_scale_max))
    return 2**cfg.perlin_scale_min


def perlin_mask(h: int, w: int, rng: np.random.Generator, cfg: MaskConfig) -> np.ndarray:
    """Binary float32 mask: Perlin noise with a random 2**k resolution per axis, thresholded."""
    angle = rng.uniform(-math.pi / 2, math.pi / 2) if cfg.perlin_rotate else 0.0
    res = (_perlin_scale(rng, cfg), _perlin_scale(rng, cfg))
    noise = smooth_noise(h, w, res, rng, angle)
    return (noise > cfg.perlin_threshold).astype(np.float32)


def _polygon(cy: float, cx: float, ry: float, rx: float, rot: float, n: int, jitter: np.ndarray) -> list:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    r = 1.0 + jitter
    py, px = ry * r * np.sin(t), rx * r * np.cos(t)
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + c * x - s * y, cy + s * x + c * y) for y, x in zip(py, px, strict=True)]


def shape_mask(h: int, w: int, rng: np.random.Generator, cfg: MaskConfig) -> np.ndarray:
    """Binary float32 mask of 1..max_shapes random ellipses, polygons, lines and scratches.

    Scratches are thin random-walk polylines (cracks); lines are straight and a few px wide.
    Drawn with PIL (C rasteriser) because polygon filling is not worth re-implementing.
    """
    side = min(h, w)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, cfg.max_shapes + 1))):
        kind = rng.choice(["ellipse", "polygon", "line", "scratch"], p=[0.3, 0.3, 0.2, 0.2])
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if kind in ("ellipse", "polygon"):
            ry, rx = rng.uniform(0.03, 0.22, size=2) * side
            rot = rng.uniform(0, math.pi)
            if kind == "ellipse":
                pts = _polygon(cy, cx, ry, rx, rot, 48, np.zeros(48))
            else:
                n = int(rng.integers(3, 9))
                pts = _polygon(cy, cx, ry, rx, rot, n, rng.uniform(-0.4, 0.4, n))
            draw.polygon(pts, fill=255)
        elif kind == "line":
            length = rng.uniform(0.15, 0.6) * side
            a = rng.uniform(0, math.pi)
            dy, dx = 0.5 * length * math.sin(a), 0.5 * length * math.cos(a)
            width = max(1, round(rng.uniform(0.008, 0.03) * side))
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width)
        else:
            steps = int(rng.integers(6, 20))
            a = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0.0, 0.35, steps))
            step = rng.uniform(0.02, 0.05) * side
            ys = cy + np.concatenate([[0.0], np.cumsum(step * np.sin(a))])
            xs = cx + np.concatenate([[0.0], np.cumsum(step * np.cos(a))])
            width = max(1, round(rng.uniform(0.004, 0.015) * side))
            draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=width, joint="curve")
    return (np.asarray(canvas, dtype=np.uint8) > 127).astype(np.float32)


def soft_mask(h: int, w: int, rng: np.random.Generator, cfg: MaskConfig) -> np.ndarray:
    """Continuous float32 mask in [0, 1]: one or a few large smooth regions with soft edges.

    Low-frequency noise on a coarse (<= 32 px) grid is cut at a quantile so the region covers
    8-40 % of the image, blurred there (cheap) and upsampled: edges ramp over several percent of
    the image side at any resolution, as a diffuse stain or shading change does.
    """
    lh, lw = min(h, _SOFT_GRID), min(w, _SOFT_GRID)
    res = float(2 ** rng.integers(0, 2))
    angle = rng.uniform(-math.pi / 2, math.pi / 2)
    noise = fractal_noise(lh, lw, (res, res), rng, octaves=2, persistence=0.5, angle=angle)
    cover = rng.uniform(0.08, 0.4)
    region = (noise >= np.quantile(noise, 1.0 - cover)).astype(np.float32)
    sigma = rng.uniform(0.8, 2.0) * min(lh, lw) / _SOFT_GRID
    soft = gaussian_filter(region, sigma, mode="nearest")
    soft = resize_bilinear(soft / np.float32(max(float(soft.max()), 1e-6)), h, w)
    return np.clip(soft, 0.0, 1.0).astype(np.float32, copy=False)


def mask_area(mask: np.ndarray) -> float:
    """Fraction of the image a mask covers (soft masks count where they are at least half on)."""
    return float(np.count_nonzero(mask >= 0.5)) / mask.size


def localize(mask: np.ndarray, rng: np.random.Generator, cfg: MaskConfig) -> np.ndarray:
    """The part of ``mask`` inside one random ellipse centred on a mask pixel.

    Thresholded Perlin noise makes blobs covering ~5 % of the image or more; real defects are
    often far smaller (pin holes, short cracks). Cutting keeps the irregular outline, at any size
    down to a few pixels.
    """
    ys, xs = np.nonzero(mask >= 0.5)
    if ys.size == 0:
        return mask
    h, w = mask.shape
    i = int(rng.integers(ys.size))
    ry, rx = rng.uniform(cfg.local_radius_min, cfg.local_radius_max, size=2) * min(h, w)
    yy, xx = np.ogrid[0:h, 0:w]
    inside = ((yy - ys[i]) / max(ry, 1.0)) ** 2 + ((xx - xs[i]) / max(rx, 1.0)) ** 2 <= 1.0
    return (mask * inside).astype(np.float32)


def draw_mask(
    h: int, w: int, rng: np.random.Generator, cfg: MaskConfig, kind: MaskKind | None = None
) -> tuple[np.ndarray, MaskKind]:
    """A random mask and the kind it was drawn as; masks under ``cfg.min_area`` are redrawn.

    After 50 failed draws (e.g. an absurd threshold) a centred ellipse of twice ``min_area`` is
    returned, so callers always get a usable mask.
    """
    if kind is None:
        u = rng.random()
        kind = (
            "soft"
            if u < cfg.soft_probability
            else "shape"
            if u < cfg.soft_probability + cfg.shape_probability
            else "perlin"
        )
    maker = {"perlin": perlin_mask, "shape": shape_mask, "soft": soft_mask}[kind]
    local = kind != "soft" and rng.random() < cfg.local_probability
    for _ in range(50):
        mask = maker(h, w, rng, cfg)
        if local:
            mask = localize(mask, rng, cfg)
        if mask_area(mask) >= cfg.min_area and mask.any():
            return mask, kind
    r = math.sqrt(max(cfg.min_area, 1.0 / (h * w)) * 2.0 / math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ellipse = ((yy + 0.5 - h / 2) / (r * h)) ** 2 + ((xx + 0.5 - w / 2) / (r * w)) ** 2 <= 1.0
    return ellipse.astype(np.float32), kind


def random_mask(h: int, w: int, rng: np.random.Generator, cfg: MaskConfig) -> np.ndarray:
    """float32 (h, w) in [0, 1]: Perlin, shape or soft mask with the config's probabilities."""
    return draw_mask(h, w, rng, cfg)[0]
