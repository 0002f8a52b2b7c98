"""The project's own small dataset: procedural textured surfaces with drawn defects, MVTec layout.

Unit tests and ``make demo`` need a dataset that exists on a fresh machine, is exactly
reproducible from a seed, and has defects a detector can learn to find without them being
trivial (a bright pixel is not a defect detector). Surfaces are band-pass filtered noise (one
family per dataset: granular, brushed or woven); defects are drawn with sub-pixel antialiasing and
change local statistics (intensity, texture contrast, line structure) while leaving the image's
global brightness almost unchanged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from texinspect.data.layout import GOOD, GROUND_TRUTH, MASK_SUFFIX, TEST, TRAIN, DatasetIndex, scan_dataset
from texinspect.errors import ConfigError, DataError

TEXTURES: tuple[str, ...] = ("granular", "brushed", "woven")
DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack")
MANIFEST = "sample.json"
_SUPERSAMPLE = 4  # defects are drawn 4x larger and box-filtered down: antialiased edges
_MIN_MASK_PIXELS = 6
_MIN_MASK_FRACTION = 0.0008  # 13 pixels at 128 px: a two-step crack is not a defect
# A faint colour cast per surface so RGB samples are not just grey repeated three times.
_TINTS = {"granular": (0.96, 1.0, 1.05), "brushed": (1.04, 1.0, 0.93), "woven": (1.06, 0.98, 0.9)}


# --------------------------------------------------------------------------- surfaces


def _frequencies(size: int) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    return fy, fx


def _filtered_noise(rng: np.random.Generator, size: int, response: np.ndarray) -> np.ndarray:
    """White noise shaped by a frequency response (rfft2 layout), normalised to mean 0, std 1."""
    spectrum = np.fft.rfft2(rng.standard_normal((size, size))) * response
    field = np.fft.irfft2(spectrum, s=(size, size))
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _bandpass(size: int, centre: float, width: float) -> np.ndarray:
    """Isotropic ring around ``centre`` cycles/pixel."""
    fy, fx = _frequencies(size)
    radius = np.hypot(fx, fy)
    return np.exp(-0.5 * ((radius - centre) / width) ** 2)


def _oriented(size: int, angle: float, along: float, across: float) -> np.ndarray:
    """Gaussian low-pass, narrow ``along`` the streak direction: long parallel streaks."""
    fy, fx = _frequencies(size)
    u = fx * np.cos(angle) + fy * np.sin(angle)
    v = -fx * np.sin(angle) + fy * np.cos(angle)
    return np.exp(-0.5 * ((u / along) ** 2 + (v / across) ** 2))


def _granular(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sand-blasted / cast metal: grains of a few pixels plus a finer grit."""
    grains = _filtered_noise(rng, size, _bandpass(size, 0.09, 0.035))
    grit = _filtered_noise(rng, size, _bandpass(size, 0.3, 0.08))
    return 0.5 + 0.1 * grains + 0.04 * grit


def _brushed(rng: np.random.Generator, size: int) -> np.ndarray:
    """Brushed metal: long streaks along one direction, a fine grain across."""
    angle = np.deg2rad(12.0)
    streaks = _filtered_noise(rng, size, _oriented(size, angle, along=0.25, across=0.006))
    grain = _filtered_noise(rng, size, _bandpass(size, 0.25, 0.1))
    return 0.5 + 0.11 * streaks + 0.035 * grain


def _woven(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain weave: alternating over/under threads with wandering thread positions and fibre noise."""
    period = max(size / 16.0, 4.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    wander = _filtered_noise(rng, size, _bandpass(size, 0.0, 0.02))
    offset_x, offset_y = rng.uniform(0, period, size=2)
    x = (xx + offset_x + 0.6 * wander) / period
    y = (yy + offset_y - 0.6 * wander) / period
    warp = np.sin(np.pi * (x % 1.0)) ** 2  # a thread running along y, bright at its centre
    weft = np.sin(np.pi * (y % 1.0)) ** 2
    over = ((np.floor(x) + np.floor(y)) % 2) == 0  # which thread is on top in this cell
    weave = np.where(over, warp, weft)
    fibres = _filtered_noise(rng, size, _bandpass(size, 0.35, 0.1))
    return 0.34 + 0.3 * weave + 0.035 * fibres


_SURFACES = {"granular": _granular, "brushed": _brushed, "woven": _woven}


def make_surface(texture: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One defect-free surface, float64 (size, size), mean about 0.5, with a random light falloff."""
    image = _SURFACES[texture](rng, size)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(0.0, 0.06)
    return image * rng.uniform(0.95, 1.05) + gradient


# --------------------------------------------------------------------------- defects


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    return canvas, ImageDraw.Draw(canvas)


def _coverage(canvas: Image.Image, size: int, blur: float = 0.0) -> np.ndarray:
    """Supersampled drawing -> per-pixel coverage in [0, 1]."""
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur * _SUPERSAMPLE))
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _points(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points * _SUPERSAMPLE]


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin, slightly curved line, brighter or darker than the surface, that wipes its texture."""
    size = image.shape[0]
    start = rng.uniform(0.1, 0.9, size=2) * size
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.3, 0.6) * size
    end = np.clip(start + length * np.array([np.cos(angle), np.sin(angle)]), 2, size - 3)
    normal = np.array([-np.sin(angle), np.cos(angle)])
    control = (start + end) / 2 + normal * rng.uniform(-0.15, 0.15) * length
    t = np.linspace(0.0, 1.0, 64)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    canvas, draw = _canvas(size)
    draw.line(
        _points(curve), fill=255, width=max(1, round(rng.uniform(0.9, 1.8) * _SUPERSAMPLE)), joint="curve"
    )
    alpha = _coverage(canvas, size)
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(0.16, 0.28)
    wiped = image * (1 - 0.5 * alpha) + 0.5 * alpha * image.mean()
    return wiped + delta * alpha, alpha > 0.3


def _spot(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An irregular blob (stain, pit, coating fault): shifted intensity and flattened texture."""
    size = image.shape[0]
    radius = rng.uniform(0.05, 0.11) * size
    centre = rng.uniform(radius + 2, size - radius - 2, size=2)
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = np.ones_like(theta)
    for harmonic in (2, 3, 5):
        wobble += rng.uniform(0.0, 0.18) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    outline = centre + (radius * wobble)[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    canvas, draw = _canvas(size)
    draw.polygon(_points(outline), fill=255)
    alpha = _coverage(canvas, size, blur=rng.uniform(0.8, 1.6))
    local_mean = float((image * alpha).sum() / max(alpha.sum(), 1e-6))
    flattened = local_mean + (image - local_mean) * rng.uniform(0.3, 0.6)
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(0.07, 0.15)
    return image * (1 - alpha) + (flattened + delta) * alpha, alpha > 0.5


def _crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, jagged, branching line: a random walk with a few side branches."""
    size = image.shape[0]
    canvas, draw = _canvas(size)
    width = max(1, round(rng.uniform(0.8, 1.4) * _SUPERSAMPLE))

    def walk(start: np.ndarray, angle: float, length: float) -> np.ndarray:
        step = max(size / 48.0, 1.5)
        points = [start]
        for _ in range(max(int(length / step), 2)):
            angle += rng.normal(0.0, 0.3)
            nxt = points[-1] + step * np.array([np.cos(angle), np.sin(angle)])
            if not ((1 <= nxt) & (nxt <= size - 2)).all():
                break  # a crack runs off the part; it does not crawl along the image border
            points.append(nxt)
        return np.array(points)

    main = walk(
        rng.uniform(0.2, 0.8, size=2) * size, rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.55) * size
    )
    draw.line(_points(main), fill=255, width=width, joint="curve")
    for _ in range(int(rng.integers(0, 3)) if len(main) > 2 else 0):
        root = main[int(rng.integers(1, len(main)))]
        branch = walk(root, rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.2) * size)
        if len(branch) >= 2:
            draw.line(_points(branch), fill=255, width=max(1, width - 1), joint="curve")
    alpha = _coverage(canvas, size)
    depth = rng.uniform(0.4, 0.65)
    return image * (1 - depth * alpha), alpha > 0.3


_DEFECTS = {"scratch": _scratch, "spot": _spot, "crack": _crack}


def add_defect(
    image: np.ndarray, defect_type: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of ``defect_type`` into ``image``; returns (image, boolean mask)."""
    min_pixels = max(_MIN_MASK_PIXELS, round(_MIN_MASK_FRACTION * image.size))
    for _ in range(50):
        out, mask = _DEFECTS[defect_type](image, rng)
        if mask.sum() >= min_pixels:
            return out, mask
    raise DataError(f"could not draw a '{defect_type}' defect covering {min_pixels}+ pixels at this size")


# --------------------------------------------------------------------------- writing


def _to_file_image(gray: np.ndarray, texture: str, channels: int) -> Image.Image:
    gray = np.clip(gray, 0.0, 1.0)
    if channels == 1:
        return Image.fromarray(np.round(gray * 255).astype(np.uint8))
    rgb = np.clip(gray[..., None] * np.asarray(_TINTS[texture]), 0.0, 1.0)
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8))


def _validate(
    texture: str, size: int, channels: int, counts: Sequence[int], defect_types: Sequence[str]
) -> None:
    if texture not in TEXTURES:
        raise ConfigError(f"unknown texture '{texture}' (choose one of: {', '.join(TEXTURES)})")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ConfigError(f"sample image size must be an integer >= 32, got {size!r}")
    if counts[0] < 1 or any(n < 0 for n in counts):
        raise ConfigError(f"sample counts must be >= 0 with at least 1 training image, got {list(counts)}")
    unknown = [t for t in defect_types if t not in DEFECT_TYPES]
    if unknown:
        raise ConfigError(f"unknown defect type '{unknown[0]}' (choose from: {', '.join(DEFECT_TYPES)})")


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise DataError(f"{root}: folder is not empty (pass overwrite=True / --overwrite to replace it)")
        # Only what this function writes is removed: never the folder itself or foreign files.
        for name in (TRAIN, TEST, GROUND_TRUTH):
            if (root / name).is_dir():
                shutil.rmtree(root / name)
        (root / MANIFEST).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def make_sample_dataset(
    root: str | Path,
    n_train: int = 40,
    n_test_good: int = 8,
    n_test_defect_per_type: int = 6,
    size: int = 128,
    seed: int = 0,
    channels: int = 3,
    texture: str = "granular",
    defect_types: Sequence[str] = DEFECT_TYPES,
    overwrite: bool = False,
) -> DatasetIndex:
    """Write a seeded procedural dataset in MVTec layout under ``root`` and return its index.

    Same arguments -> byte-identical files. Each image has its own random stream (derived from
    ``seed``, its split, type and number), so changing one count does not change other images.
    """
    _validate(texture, size, channels, (n_train, n_test_good, n_test_defect_per_type), defect_types)
    root = Path(root)
    _prepare_root(root, overwrite)
    texture_id = TEXTURES.index(texture)

    def rng_for(group: int, index: int) -> np.random.Generator:
        return np.random.default_rng([seed, texture_id, group, index])

    def save(image: Image.Image, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")

    for i in range(n_train):
        surface = make_surface(texture, rng_for(0, i), size)
        save(_to_file_image(surface, texture, channels), root / TRAIN / GOOD / f"{i:03d}.png")
    for i in range(n_test_good):
        surface = make_surface(texture, rng_for(1, i), size)
        save(_to_file_image(surface, texture, channels), root / TEST / GOOD / f"{i:03d}.png")
    for defect_type in defect_types:
        group = 2 + DEFECT_TYPES.index(defect_type)
        for i in range(n_test_defect_per_type):
            rng = rng_for(group, i)
            image, mask = add_defect(make_surface(texture, rng, size), defect_type, rng)
            save(_to_file_image(image, texture, channels), root / TEST / defect_type / f"{i:03d}.png")
            mask_image = Image.fromarray(mask.astype(np.uint8) * 255)
            save(mask_image, root / GROUND_TRUTH / defect_type / f"{i:03d}{MASK_SUFFIX}.png")
    manifest = {
        "generator": "texinspect.data.sample.make_sample_dataset",
        "texture": texture,
        "seed": seed,
        "size": size,
        "channels": channels,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect_per_type": n_test_defect_per_type,
        "defect_types": list(defect_types),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return scan_dataset(root)
