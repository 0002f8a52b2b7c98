"""The ``synthesize`` pipeline stage: a fixed, inspectable set of artificial defects.

Training draws defects on the fly (``SyntheticDefectDataset``); this stage writes a seeded sample
of the same generator to disk so that a person can look at it (``preview.png``) before spending
hours of training, and so that pipelines can version and compare it. Every pair carries a
defect. Output (byte-for-byte the same for the same config)::

    out_dir/images/<i>.png         artificial defect image I_s   (<i> zero-padded: 0000, 0001, ...)
    out_dir/masks/<i>_mask.png     its defect mask, 0/255
    out_dir/sources/<i>.png        the defect-free image I_o it was made from
    out_dir/manifest.csv           index, files, source rel path, kind, lambda, mask kind, areas
    out_dir/preview.png            rows source | defect | mask | overlay, up to 16 columns
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy.ndimage import binary_erosion
from tqdm.auto import tqdm

from texinspect.config import Config
from texinspect.data.datasets import ImageDataset
from texinspect.data.layout import scan_dataset
from texinspect.synthesis.pool import TexturePool
from texinspect.synthesis.synthesizer import Defect, DefectSynthesizer

log = logging.getLogger(__name__)

SUBDIRS = ("images", "masks", "sources")
PREVIEW_COLUMNS = 8
PREVIEW_SAMPLES = 16
PREVIEW_TILE = 128


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float (C,H,W) or (H,W) in [0,1] -> uint8 (H,W[,C]) ready for PIL."""
    a = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return np.ascontiguousarray(a)


def _rgb_tile(image: np.ndarray, tile: int, nearest: bool = False) -> Image.Image:
    pil = Image.fromarray(to_uint8(image)).convert("RGB")
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return pil.resize((tile, tile), resample)


def _overlay(defect: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The defect image (RGB, float) with the mask's outline in red."""
    rgb = np.repeat(defect, 3, axis=0) if defect.shape[0] == 1 else defect.copy()
    m = mask > 0.5
    edge = m & ~binary_erosion(m, iterations=2)
    rgb[0][edge], rgb[1][edge], rgb[2][edge] = 1.0, 0.0, 0.0
    return rgb


def render_preview(
    sources: list[np.ndarray],
    defects: list[np.ndarray],
    masks: list[np.ndarray],
    tile: int = PREVIEW_TILE,
    columns: int = PREVIEW_COLUMNS,
) -> Image.Image:
    """Grid of blocks of ``columns`` samples, each block 4 rows: source | defect | mask | overlay
    (defect with the mask outline in red, to check that the label sits on the visible change)."""
    labels = ("source", "defect", "mask", "overlay")
    n = len(sources)
    blocks = max(1, -(-n // columns))
    gap, left = 4, 56
    width = left + columns * (tile + gap)
    height = blocks * (len(labels) * (tile + gap) + gap)
    canvas = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    for b in range(blocks):
        y0 = b * (len(labels) * (tile + gap) + gap)
        for r, label in enumerate(labels):
            draw.text((4, y0 + r * (tile + gap) + tile // 2 - 5), label, fill=(230, 230, 230))
        for c in range(columns):
            i = b * columns + c
            if i >= n:
                break
            x = left + c * (tile + gap)
            rows = (
                _rgb_tile(sources[i], tile),
                _rgb_tile(defects[i], tile),
                _rgb_tile(masks[i], tile, nearest=True),
                _rgb_tile(_overlay(defects[i], masks[i]), tile),
            )
            for r, img in enumerate(rows):
                canvas.paste(img, (x, y0 + r * (tile + gap)))
    return canvas


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(to_uint8(array)).save(path, format="PNG", optimize=False)


MANIFEST_COLUMNS = [
    "index", "image", "mask", "source", "source_rel", "kind", "lambda", "mask_kind", "mask_area", "drawn_area",
]


def synthesize(config: Config, out_dir: str | Path, progress: bool | None = None) -> Path:
    """Write ``config.synthesis.count`` defect/mask/source triples from the training images of
    ``config.data.root``, a manifest and a preview; returns ``out_dir``."""
    out = Path(out_dir)
    syn = config.synthesis
    size, channels = config.data.image_size, config.data.channels
    index = scan_dataset(config.data.root)
    normal = ImageDataset(index.train, size, channels, cache=True)
    pool = TexturePool(syn.texture_pool, size, channels, seed=config.seed)
    synthesizer = DefectSynthesizer(syn, size, channels, pool=pool, seed=config.seed)

    for sub in SUBDIRS:  # stale files from a run with a larger count would pollute the set
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("*.png"):
            old.unlink()

    rows, previews = [], []
    show = progress if progress is not None else config.train.progress
    for i in tqdm(range(syn.count), desc="synthesize", disable=not show):
        k, image, defect = _draw(synthesizer, normal, np.random.default_rng([config.seed, i]))
        rows.append(_write_triple(out, i, image, defect, index.train[k].rel))
        if len(previews) < PREVIEW_SAMPLES:
            previews.append((image, defect.image, defect.mask))

    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(out / "manifest.csv", index=False, float_format="%.6f")
    (out / "preview.png").unlink(missing_ok=True)
    if previews:
        grid = render_preview(*(list(x) for x in zip(*previews, strict=True)))
        grid.save(out / "preview.png", format="PNG", optimize=False)
    log.info(
        "wrote %d synthetic defects to %s (texture pool: %s)",
        syn.count,
        out,
        "procedural" if pool.procedural else pool.folder,
    )
    return out


def _draw(
    synthesizer: DefectSynthesizer, normal: ImageDataset, rng: np.random.Generator
) -> tuple[int, np.ndarray, Defect]:
    """(index of the normal image drawn on, that image, the defect): one draw of the stage."""
    n = len(normal)
    k = int(rng.integers(n))
    image = normal[k]["image"].numpy()

    def other(rng: np.random.Generator = rng, k: int = k) -> np.ndarray:
        j = int(rng.integers(n - 1))
        return normal[j + (j >= k)]["image"].numpy()

    return k, image, synthesizer.draw(image, rng, other if n > 1 else None)


def _write_triple(out: Path, i: int, image: np.ndarray, defect: Defect, source_rel: str) -> dict[str, object]:
    """Save defect image, mask and source as PNG files; returns the manifest row."""
    name = f"{i:04d}"
    _save_png(defect.image, out / "images" / f"{name}.png")
    _save_png(defect.mask, out / "masks" / f"{name}_mask.png")
    _save_png(image, out / "sources" / f"{name}.png")
    return {
        "index": i,
        "image": f"images/{name}.png",
        "mask": f"masks/{name}_mask.png",
        "source": f"sources/{name}.png",
        "source_rel": source_rel,
        "kind": defect.kind,
        "lambda": defect.lam,
        "mask_kind": defect.mask_kind,
        "mask_area": defect.area,
        "drawn_area": float(np.mean(defect.drawn_mask >= 0.5)),
    }
