"""The model side of serving: a loaded detector, its card, and the three inference modes.

``full`` runs the detector's anomaly map and scores it with ``prediction.score_images``, the very
function ``texinspect predict`` uses, so served scores equal batch-predicted ones. ``fast`` is
FMR-Net's patch-level early exit (distance of each patch's latent code to the nearest memory-bank
entry), and ``multilevel`` is the paper's deployment: patch level first, the pixel-level map only
for images whose patches cross the patch threshold.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from texinspect.models.artifact import ModelCard
from texinspect.models.base import MAP_SCORE_RULE, Detector
from texinspect.prediction import score_images
from texinspect.scoring import image_scores

log = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """What the server knows about one image after inference."""

    score: float
    level: str  # "pixel" (map computed) or "patch" (early exit: no window crossed the patch threshold)
    threshold: float | None
    amap: np.ndarray | None = None  # (H, W) pixel-level map
    patch_scores: np.ndarray | None = None  # (nH, nW)
    patch_score: float | None = None

    @property
    def is_defect(self) -> bool | None:
        return None if self.threshold is None else bool(self.score >= self.threshold)


def patch_threshold(detector: Detector, card: ModelCard) -> float | None:
    """The patch-level threshold: the detector's calibrated buffer (FMR-Net), else the card's ``extra``."""
    buffer = getattr(detector, "patch_threshold", None)
    if isinstance(buffer, torch.Tensor) and buffer.numel() == 1 and math.isfinite(float(buffer)):
        return float(buffer)
    value = card.extra.get("patch_threshold")
    return None if value is None else float(value)


class InferenceEngine:
    """Runs batches of preprocessed images (B, C, H, W) in [0, 1] on the model's device."""

    def __init__(self, detector: Detector, card: ModelCard, device: torch.device | str) -> None:
        self.detector = detector
        self.card = card
        self.device = torch.device(device)
        self.patch_threshold = patch_threshold(detector, card)
        has_patches = callable(getattr(detector, "patch_scores", None))
        self.modes: tuple[str, ...] = ("full", "fast", "multilevel") if has_patches else ("full",)
        self.has_multilevel = callable(getattr(detector, "multilevel_map", None))
        if has_patches and self.patch_threshold is None:
            log.warning("model has patch scores but no patch threshold: is_defect is unknown at patch level")

    @torch.inference_mode()
    def run(self, images: torch.Tensor, mode: str = "full") -> list[ImageResult]:
        if mode == "full":
            return self._full(images)
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not available (available: {', '.join(self.modes)})")
        if mode == "multilevel" and self.has_multilevel and self.patch_threshold is not None:
            return self._multilevel(images)
        grids = self.patch_grid(images)
        results = [self._patch_result(grid) for grid in grids]
        if mode == "fast":
            return results
        # multilevel without the family's own path: whole images whose windows cross the threshold
        flagged = [i for i, r in enumerate(results) if r.is_defect is not False]
        if flagged:
            full = self._full(images[flagged])
            for i, res in zip(flagged, full, strict=True):
                res.patch_scores, res.patch_score = results[i].patch_scores, results[i].patch_score
                results[i] = res
        return results

    def _patch_result(self, grid: np.ndarray) -> ImageResult:
        top = float(grid.max())
        return ImageResult(
            score=top, level="patch", threshold=self.patch_threshold, patch_scores=grid, patch_score=top
        )

    def _multilevel(self, images: torch.Tensor) -> list[ImageResult]:
        """FMR-Net's own multilevel path: only the flagged windows are decoded (Sec. IV-F)."""
        out = self.detector.multilevel_map(images.to(self.device), self.patch_threshold)  # type: ignore[operator]
        maps = out.maps.float()
        if self.card.score_rule == MAP_SCORE_RULE:
            scores = image_scores(maps, self.card.score_smoothing).cpu().numpy()
        else:  # FMR-Net's patch rule: the window scores the multilevel path computed anyway
            scores = out.patch_scores.float().flatten(1).amax(dim=1).cpu().numpy()
        grids = out.patch_scores.float().cpu().numpy()
        flagged = out.flagged.reshape(len(grids), -1).any(dim=1).cpu().numpy()
        results = []
        for amap, score, grid, hit in zip(maps.cpu().numpy(), scores, grids, flagged, strict=True):
            res = self._patch_result(grid)
            if hit:
                res = ImageResult(
                    score=float(score),
                    level="pixel",
                    threshold=self.card.threshold,
                    amap=amap,
                    patch_scores=grid,
                    patch_score=res.patch_score,
                )
            results.append(res)
        return results

    def _full(self, images: torch.Tensor) -> list[ImageResult]:
        maps, scores = score_images(self.detector, self.card, images.to(self.device))
        return [
            ImageResult(score=float(s), level="pixel", threshold=self.card.threshold, amap=m)
            for m, s in zip(maps, scores, strict=True)
        ]

    def patch_grid(self, images: torch.Tensor) -> np.ndarray:
        grid = self.detector.patch_scores(images.to(self.device))  # type: ignore[operator]
        return grid.float().cpu().numpy()

    @torch.inference_mode()
    def run_maps(self, maps: torch.Tensor, scores: torch.Tensor | None = None) -> list[ImageResult]:
        """Pixel-level results from anomaly maps computed elsewhere (the cloud half of an edge split).

        ``scores``: image scores when the card's rule is not a function of the map (FMR-Net's patch rule).
        """
        if scores is None:
            if self.card.score_rule != MAP_SCORE_RULE:
                raise ValueError(f"image scores under rule {self.card.score_rule!r} need more than the map")
            scores = image_scores(maps.float(), self.card.score_smoothing)
        return [
            ImageResult(score=float(s), level="pixel", threshold=self.card.threshold, amap=m)
            for m, s in zip(maps.float().cpu().numpy(), scores.cpu().numpy(), strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.card.family,
            "image_size": self.card.image_size,
            "channels": self.card.channels,
            "threshold": self.card.threshold,
            "pixel_threshold": self.card.pixel_threshold,
            "patch_threshold": self.patch_threshold,
            "modes": list(self.modes),
        }
