"""The pictures ``evaluate`` writes for people: ROC/PR curves, one panel per image in ``overlays/`` and
``overview.png`` (good and defect types side by side, the picture ``make demo`` ends with)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_curve

from texinspect import metrics
from texinspect.data.images import load_image
from texinspect.data.layout import GOOD
from texinspect.evaluation.measures import pixel_metrics_unavailable
from texinspect.evaluation.reading import TestImage

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- pictures and curves


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path)


def write_curves(items: list[TestImage], threshold: float, out_dir: Path) -> None:
    """Image-level ROC and PR curves as CSV (``dvc plots``) and PNG."""
    labels = np.array([it.label for it in items])
    scores = np.array([it.score for it in items])
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(np.unique(labels)) < 2:
        log.warning("ROC/PR curves not written: the test split needs good and defective images")
        return
    fpr, tpr, roc_t = roc_curve(labels, scores)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": roc_t}).to_csv(out_dir / "roc.csv", index=False)
    precision, recall, pr_t = precision_recall_curve(labels, scores)
    pd.DataFrame({"recall": recall, "precision": precision, "threshold": np.append(pr_t, np.nan)}).to_csv(
        out_dir / "pr.csv", index=False
    )
    auroc = metrics.image_auroc(labels, scores)
    op = metrics.image_prf(labels, scores, threshold) if np.isfinite(threshold) else None
    op_fpr = float((scores[labels == 0] >= threshold).mean()) if op else math.nan

    fig = Figure(figsize=(4.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="gray")
    if op:
        ax.plot([op_fpr], [op.recall], "o", c="red", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="image-level ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    _save(fig, out_dir / "roc.png")

    fig = Figure(figsize=(4.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(recall, precision, label="precision-recall")
    if op:
        ax.plot([op.recall], [op.precision], "o", c="red", label=f"threshold {threshold:.4g} (F1 {op.f1:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="image-level precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    _save(fig, out_dir / "pr.png")


def _display_range(items: list[TestImage]) -> tuple[float, float]:
    """One colour scale for every overlay (so maps compare), robust to a few hot pixels."""
    sample = np.concatenate([it.amap.ravel()[::7] for it in items])
    lo, hi = np.percentile(sample, [0.5, 99.9])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


TRUE_COLOUR = (255, 0, 0)  # outline of the ground-truth mask
FOUND_COLOUR = (0, 255, 0)  # outline of the map at or above the pixel threshold


def _rgb8(image: np.ndarray) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8."""
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _heat(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """The anomaly map coloured (inferno) on the shared scale ``vmin..vmax``: uint8 (H, W, 3)."""
    norm = np.clip((amap - vmin) / (vmax - vmin), 0.0, 1.0)
    return colormaps["inferno"](norm, bytes=True)[..., :3]


def _found_outline(amap: np.ndarray, pixel_threshold: float) -> np.ndarray | None:
    """Outline of the predicted region (map >= pixel threshold), None without a threshold."""
    return _outline(amap >= pixel_threshold) if np.isfinite(pixel_threshold) else None


def _blend(rgb: np.ndarray, heat: np.ndarray, truth_edge: np.ndarray, found_edge: np.ndarray | None) -> np.ndarray:
    """The map blended over the image, the true mask outlined red and the found region green."""
    over = (0.55 * rgb + 0.45 * heat).astype(np.uint8)
    over[truth_edge] = TRUE_COLOUR
    if found_edge is not None:
        over[found_edge] = FOUND_COLOUR
    return over


def overlay_panel(
    image: np.ndarray, amap: np.ndarray, mask: np.ndarray, vmin: float, vmax: float, pixel_threshold: float
) -> np.ndarray:
    """uint8 (H, 4W + gaps, 3): image | anomaly map | ground truth | overlay.

    The overlay blends the map over the image and outlines the ground truth in red and the
    binarised map (>= pixel threshold) in green, as FMR-Net's Fig. 15 does. Built with numpy,
    not matplotlib figures: about a hundred times faster, which matters for 8 images x 4 types.
    """
    rgb = _rgb8(image)
    heat = _heat(amap, vmin, vmax)
    truth = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    over = _blend(rgb, heat, _outline(mask), _found_outline(amap, pixel_threshold))
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([rgb, gap, heat, gap, truth, gap, over], axis=1)


def _overlay_png(it: TestImage, vmin: float, vmax: float, threshold: float, pixel_threshold: float) -> Image.Image:
    size = it.amap.shape[0]
    image = load_image(it.record.path, size, 3).transpose(1, 2, 0)
    panel = overlay_panel(image, it.amap, it.mask, vmin, vmax, pixel_threshold)
    zoom = max(1, -(-160 // size))  # small maps are enlarged (nearest) so that they can be seen
    panel = panel.repeat(zoom, axis=0).repeat(zoom, axis=1)
    width = panel.shape[1]
    header = 30
    canvas = Image.new("RGB", (width, panel.shape[0] + header), "white")
    canvas.paste(Image.fromarray(panel), (0, header))
    draw = ImageDraw.Draw(canvas)
    verdict = "defect" if np.isfinite(threshold) and it.score >= threshold else "good"
    draw.text((2, 2), f"{it.record.rel}  score {it.score:.4g} -> {verdict}", fill="black")
    step = (size + 4) * zoom
    for i, name in enumerate(("image", "anomaly map", "ground truth", "red: truth, green: found")):
        draw.text((i * step + 2, 16), name, fill="black")
    return canvas


def write_overlays(
    items: list[TestImage], out_dir: Path, per_type: int, threshold: float, pixel_threshold: float
) -> int:
    """image | map | mask | overlay PNGs, the first ``per_type`` images (by name) of each type."""
    if per_type <= 0 or not items:
        return 0
    vmin, vmax = _display_range(items)
    written = 0
    by_type: dict[str, list[TestImage]] = {}
    for it in items:
        by_type.setdefault(it.record.defect_type, []).append(it)
    for defect_type, group in by_type.items():
        folder = out_dir / defect_type
        folder.mkdir(parents=True, exist_ok=True)
        for it in sorted(group, key=lambda i: i.record.rel)[:per_type]:
            png = _overlay_png(it, vmin, vmax, threshold, pixel_threshold)
            png.save(folder / f"{Path(it.record.rel).stem}.png", compress_level=3)
            written += 1
    return written


# --------------------------------------------------------------------------- the overview picture


OVERVIEW_FILE = "overview.png"
OVERVIEW_ROWS = 2  # examples per test type
OVERVIEW_TILE = 128  # smaller images are enlarged (nearest, whole factor) to about this side
OVERVIEW_TILE_MAX = 160  # larger images are reduced to this side: keeps the file small
OVERVIEW_MIN_WIDTH = 480  # room for the legend when there are only one or two types
_MARGIN = 4
_PAD = 2  # between the image and its overlay
_BLOCK_GAP = 12  # between the blocks of two types
_ROW_GAP = 6
_CAPTION_H = 14
_LINE_H = 12


def overview_tile(size: int) -> int:
    """Side in px of one picture in the overview for ``size`` x ``size`` maps.

    Whole zoom factors only, so enlarged pixels stay square and outlines sharp; maps above
    OVERVIEW_TILE_MAX are reduced to it.
    """
    if size > OVERVIEW_TILE_MAX:
        return OVERVIEW_TILE_MAX
    zoom = max(1, min(-(-OVERVIEW_TILE // size), OVERVIEW_TILE_MAX // size))
    return size * zoom


@dataclass(frozen=True)
class OverviewLayout:
    """Where things go in ``overview.png``: under a legend, one block per type, side by side,
    of ``rows`` cells (caption above ``image | overlay``) each."""

    tile: int
    n_types: int
    rows: int
    legend_lines: int = 1

    @property
    def cell_width(self) -> int:
        return 2 * self.tile + _PAD

    @property
    def row_height(self) -> int:
        return _CAPTION_H + self.tile + _ROW_GAP

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture in px."""
        blocks = 2 * _MARGIN + self.n_types * self.cell_width + (self.n_types - 1) * _BLOCK_GAP
        height = 2 * _MARGIN + self.legend_lines * _LINE_H + self.rows * self.row_height
        return max(blocks, OVERVIEW_MIN_WIDTH), height

    def caption_xy(self, block: int, row: int) -> tuple[int, int]:
        """Top-left corner of a cell's caption."""
        x = _MARGIN + block * (self.cell_width + _BLOCK_GAP)
        return x, _MARGIN + self.legend_lines * _LINE_H + _ROW_GAP + row * self.row_height

    def image_xy(self, block: int, row: int) -> tuple[int, int]:
        """Top-left corner of a cell's image; its overlay is ``tile + _PAD`` px to the right."""
        x, y = self.caption_xy(block, row)
        return x, y + _CAPTION_H

    def overlay_xy(self, block: int, row: int) -> tuple[int, int]:
        x, y = self.image_xy(block, row)
        return x + self.tile + _PAD, y


def _fit(array: np.ndarray, tile: int) -> np.ndarray:
    """An (H, W[, 3]) image, float map or bool outline at ``tile`` px: whole-factor nearest
    enlargement, or area averaging when reduced (an outline keeps every touched pixel, so a thin
    defect does not vanish)."""
    size = array.shape[0]
    if tile >= size:
        zoom = tile // size
        return array.repeat(zoom, axis=0).repeat(zoom, axis=1)
    box = Image.Resampling.BOX
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((tile, tile), box)) > 0
    if array.ndim == 3:
        return np.asarray(Image.fromarray(array).resize((tile, tile), box))
    return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((tile, tile), box))


def _overview_cell(
    it: TestImage, tile: int, vmin: float, vmax: float, pixel_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(image, overlay) of one test image at ``tile`` px; outlines as in ``overlay_panel``."""
    size = it.amap.shape[0]
    rgb = _fit(_rgb8(load_image(it.record.path, size, 3).transpose(1, 2, 0)), tile)
    found = _found_outline(it.amap, pixel_threshold)
    over = _blend(
        rgb,
        _heat(_fit(it.amap, tile), vmin, vmax),
        _fit(_outline(it.mask), tile),
        None if found is None else _fit(found, tile),
    )
    return rgb, over


def _caption(it: TestImage, threshold: float, width: float, measure: Callable[[str], float]) -> str:
    """``type/stem  score  verdict`` in at most ``width`` px (a long name is shortened); the
    verdict (at the image threshold, none without one) says when it is wrong."""
    tail = f"  score {it.score:.4g}"
    if np.isfinite(threshold):
        flagged = it.score >= threshold
        verdict = "defect" if flagged else "good"
        if flagged != bool(it.label):
            verdict += " (false alarm)" if flagged else " (missed)"
        tail += f"  {verdict}"
    name = f"{it.record.defect_type}/{Path(it.record.rel).stem}"
    while len(name) > 4 and measure(name + tail) > width:
        name = name[:-3] + ".."
    return name + tail


def _legend(items: list[TestImage], threshold: float, pixel_threshold: float, vmin: float, vmax: float) -> list[str]:
    """What the colours and captions mean, phrase by phrase."""
    phrases = ["each cell: image | overlay"]
    if pixel_metrics_unavailable(items):
        phrases.append("red: n/a (masks not available)")
    else:
        phrases.append("red: true defect")
    if np.isfinite(pixel_threshold):
        phrases.append(f"green: found (map >= pixel threshold {pixel_threshold:.4g})")
    else:
        phrases.append("green: n/a (no pixel threshold)")
    phrases.append(f"colour: anomaly map, one scale {vmin:.3g} (dark) to {vmax:.3g} (bright)")
    if np.isfinite(threshold):
        phrases.append(f"verdict: defect when score >= {threshold:.4g}")
    else:
        phrases.append("no verdict (no image threshold)")
    return phrases


def _wrap(phrases: list[str], width: float, measure: Callable[[str], float]) -> list[str]:
    """Phrases joined with ``;`` into as few lines of at most ``width`` px as whole phrases allow."""
    lines: list[str] = []
    for phrase in phrases:
        joined = f"{lines[-1]}; {phrase}" if lines else phrase
        if lines and measure(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(phrase)
    return lines


def _overview_groups(items: list[TestImage], per_type: int) -> list[list[TestImage]]:
    """The shown images: ``good`` first, then the defect types sorted; the first ``per_type`` by name."""
    by_type: dict[str, list[TestImage]] = {}
    for it in sorted(items, key=lambda i: i.record.rel):
        by_type.setdefault(it.record.defect_type, []).append(it)
    order = sorted(by_type, key=lambda t: (t != GOOD, t))
    return [by_type[t][:per_type] for t in order]


def _save_small_png(canvas: Image.Image, path: Path) -> None:
    """A 256-colour PNG, under a third of the RGB file: the README embeds it (limit 300 KB).

    Textured surfaces are close to noise, which PNG cannot compress: for the 128 px sample
    (4 types x 2 rows) RGB takes about 490 KB, a median-cut palette 257 KB, the octree palette
    used here 142 KB (226 KB for 160 px cells) without a loss visible on the sample. The true and found outline
    colours get palette entries of their own, so they stay pure red and green.
    """
    pixels = np.asarray(canvas)
    quantised = canvas.quantize(colors=254, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    index = np.array(quantised)
    palette = (quantised.getpalette() or [])[: 254 * 3]
    palette += [0] * (254 * 3 - len(palette)) + [*TRUE_COLOUR, *FOUND_COLOUR]
    index[np.all(pixels == TRUE_COLOUR, axis=2)] = 254
    index[np.all(pixels == FOUND_COLOUR, axis=2)] = 255
    out = Image.fromarray(index, "P")
    out.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, optimize=True)


def write_overview(
    items: list[TestImage], path: Path, threshold: float, pixel_threshold: float, per_type: int = OVERVIEW_ROWS
) -> Path | None:
    """One picture that shows whether the detector works: ``good`` and each defect type side by side.

    Per type, the first ``per_type`` images by name (the same ones as ``overlays/``: not picked
    for looking good, and the same on every run), each as the image and next to it the map
    blended over it with the true mask outlined red and the map >= pixel threshold outlined
    green, captioned with type, score and verdict, all maps on one colour scale. Rows: as many as
    the largest type fills, at most ``per_type``. Returns the path, or None without images.
    """
    if not items or per_type <= 0:
        return None
    groups = _overview_groups(items, per_type)
    vmin, vmax = _display_range(items)
    font = ImageFont.load_default()
    layout = OverviewLayout(overview_tile(items[0].amap.shape[0]), len(groups), max(len(g) for g in groups))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def measure(text: str) -> float:
        return scratch.textlength(text, font=font)

    lines = _wrap(_legend(items, threshold, pixel_threshold, vmin, vmax), layout.size[0] - 2 * _MARGIN, measure)
    layout = OverviewLayout(layout.tile, layout.n_types, layout.rows, len(lines))
    canvas = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + i * _LINE_H), line, fill="black", font=font)
    for block, group in enumerate(groups):
        for row, it in enumerate(group):
            image, over = _overview_cell(it, layout.tile, vmin, vmax, pixel_threshold)
            canvas.paste(Image.fromarray(image), layout.image_xy(block, row))
            canvas.paste(Image.fromarray(over), layout.overlay_xy(block, row))
            caption = _caption(it, threshold, layout.cell_width, measure)
            draw.text(layout.caption_xy(block, row), caption, fill="black", font=font)
    _save_small_png(canvas, path)
    return path
