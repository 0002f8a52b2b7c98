"""Artificial defects for training: one defect-free image in, (defect image, defect mask) out.

Four kinds, drawn with the probabilities in ``SynthesisConfig``:

- ``destructive``: a texture-pool image pasted through a mask (RB-AE eq. 1, FMR-Net eq. 1 with
  lambda = 1): the surface is replaced.
- ``translucent``: FMR-Net's occlusion defect, the pool image laid over the mask with opacity
  lambda in [transparency_min, transparency_max) (oil, water stains).
- ``self_texture``: the anomaly source is the surface itself, from another normal image or a
  shifted / rotated / rescaled copy of the same one, pasted (lambda = 1) or translucent. The
  texture statistics are right but the structure is broken: the hardest, most realistic case.
- ``shift``: a smooth brightness or texture-contrast change over a large soft mask: the diffuse,
  low-contrast defects the design notes call the hard real case.

Pool sources are re-levelled with probability ``intensity_match`` (``_relevel``): moved to the
surface's mean under the mask, offset darker or brighter with equal odds, contrast scaled to the
surface's. Texture photographs average mid-grey, so without this a dark surface gets brighter
defects in most draws (71 % on magnetic tile, measured over 400 draws; 57 % with it, where shifts
and self-texture defects are symmetric by construction) and a model may learn "bright = defect".
Masks (``synthesis.mask``): ``local_probability`` of Perlin/shape masks are cut to one small blob,
so a quarter of the defects cover under 2 % of the image (10 % without), as pin holes do.

The returned mask is where the image *noticeably changed*, not the drawn mask, so the model is
never told to find an invisible change:

- binary masks (Perlin, shapes): a pixel inside the drawn mask whose channel-mean
  ``|I_s - I_o|``, or the 3x3 mean of it (fills single pixels where the source happens to match
  the surface), is at least ``label_threshold``; for opaque pastes this is the drawn mask;
- soft masks: inside the mask's support where the 7x7 mean change reaches ``label_threshold``
  (fading edges give coherent labels instead of speckle);
- shifts (a regional change; a contrast change moves each pixel by its own texture detail):
  where mask x strength reaches ``label_threshold`` and the measured 7x7 mean change reaches half.

Draws whose visible change covers less than ``mask.min_area`` are redrawn (up to 10 times).

Transparency (``synthesis.transparency_mode``): ``region`` (default) lays the translucent source
over the mask only; ``global`` is FMR-Net eq. (1) as printed, which tints the whole image with
``I_d`` when lambda < 1 (then the mask covers most of the image). See ``blend.blend``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import uniform_filter

from texinspect.config import SynthesisConfig
from texinspect.errors import ConfigError
from texinspect.synthesis.blend import blend
from texinspect.synthesis.masks import draw_mask, validate_mask_config
from texinspect.synthesis.pool import TexturePool, random_zoom

DefectKind = Literal["destructive", "translucent", "self_texture", "shift"]
OtherNormal = np.ndarray | Callable[[], np.ndarray] | None
_ATTEMPTS = 10


@dataclass
class Defect:
    """One synthesized defect and how it was made (the ``synthesize`` stage's manifest)."""

    image: np.ndarray  # float32 (C,H,W) in [0,1]: I_s
    mask: np.ndarray  # float32 (H,W) in {0,1}: where I_s visibly differs from I_o
    kind: DefectKind
    lam: float  # transparency; 1.0 = destructive; nan for shifts
    mask_kind: str  # "perlin" | "shape" | "soft"
    drawn_mask: np.ndarray  # float32 (H,W) in [0,1]: the I_m that was blended through

    @property
    def area(self) -> float:
        return float(self.mask.mean())


def validate_synthesis_config(cfg: SynthesisConfig) -> None:
    """Fail early, naming the key, on values that cannot describe a probability or a range."""
    p = "synthesis."
    for name in (
        "defect_probability",
        "destructive_probability",
        "self_texture_probability",
        "shift_probability",
    ):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{p}{name}: expected a probability in [0, 1], got {value}")
    if cfg.self_texture_probability + cfg.shift_probability > 1.0 + 1e-9:
        raise ConfigError(
            f"{p}self_texture_probability + shift_probability must be <= 1, got "
            f"{cfg.self_texture_probability} + {cfg.shift_probability}"
        )
    if not 0.0 < cfg.transparency_min <= cfg.transparency_max <= 1.0:
        raise ConfigError(
            f"{p}transparency_min/max: need 0 < min <= max <= 1, got {cfg.transparency_min}, {cfg.transparency_max}"
        )
    if not 0.0 < cfg.shift_min <= cfg.shift_max <= 1.0:
        raise ConfigError(f"{p}shift_min/max: need 0 < min <= max <= 1, got {cfg.shift_min}, {cfg.shift_max}")
    if not 0.0 <= cfg.intensity_match <= 1.0:
        raise ConfigError(f"{p}intensity_match: expected a probability in [0, 1], got {cfg.intensity_match}")
    if not 0.0 <= cfg.intensity_offset_min <= cfg.intensity_offset_max <= 1.0:
        raise ConfigError(
            f"{p}intensity_offset_min/max: need 0 <= min <= max <= 1, got "
            f"{cfg.intensity_offset_min}, {cfg.intensity_offset_max}"
        )
    if cfg.transparency_mode not in ("region", "global"):
        raise ConfigError(
            f"{p}transparency_mode: expected 'region' or 'global', got {cfg.transparency_mode!r}"
        )
    if not 0.0 <= cfg.label_threshold < 1.0:
        raise ConfigError(f"{p}label_threshold: expected a value in [0, 1), got {cfg.label_threshold}")
    if cfg.count < 0:
        raise ConfigError(f"{p}count: expected >= 0, got {cfg.count}")
    validate_mask_config(cfg.mask)


def visible_change(
    io: np.ndarray,
    defect: np.ndarray,
    support: np.ndarray | None,
    threshold: float,
    window: int = 3,
    per_pixel: bool = True,
) -> np.ndarray:
    """float32 (H,W) {0,1}: channel-mean |defect - io| (if ``per_pixel``) or its window x window
    mean >= threshold, inside support. Without ``per_pixel`` only the regional mean counts:
    coherent labels for soft, regional changes.

    Only the support's bounding box (plus a border for the window mean) is examined: most
    defects are small, and this runs on every training sample.
    """
    out = np.zeros(io.shape[1:], np.float32)
    if support is not None:
        rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
        if rows.size == 0:
            return out
        h, w = out.shape
        r = window // 2
        box = (
            slice(max(rows[0] - r, 0), min(rows[-1] + r + 1, h)),
            slice(max(cols[0] - r, 0), min(cols[-1] + r + 1, w)),
        )
    else:
        box = (slice(None), slice(None))
    a, b = io[(slice(None), *box)], defect[(slice(None), *box)]
    diff = np.abs(b - a).mean(axis=0, dtype=np.float32)
    local = uniform_filter(diff, size=window, mode="nearest")
    threshold = max(threshold, 1e-6)
    changed = local >= threshold
    if per_pixel:
        changed |= diff >= threshold
    if support is not None:
        changed &= support[box] > 0
    out[box] = changed
    return out


def _is_gray(image: np.ndarray) -> bool:
    return image.shape[0] > 1 and all(np.array_equal(image[0], image[c]) for c in range(1, image.shape[0]))


def _shuffle_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same surface, moved: random roll (>= 1/8 of the side), 90-degree turn, flip, zoom."""
    _, h, w = image.shape
    dy, dx = int(rng.integers(h // 8, h - h // 8 + 1)), int(rng.integers(w // 8, w - w // 8 + 1))
    out = np.roll(image, (dy, dx), axis=(1, 2))
    out = np.rot90(out, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, ::-1, :]
    if rng.random() < 0.3:
        out = random_zoom(np.ascontiguousarray(out), rng, min_scale=0.6)
    return np.ascontiguousarray(out, dtype=np.float32)


class DefectSynthesizer:
    """Draws artificial defects on (C, size, size) float32 images; see the module docstring."""

    def __init__(
        self, cfg: SynthesisConfig, size: int, channels: int, pool: TexturePool | None = None, seed: int = 0
    ) -> None:
        validate_synthesis_config(cfg)
        self.cfg = cfg
        self.size = size
        self.channels = channels
        self.pool = pool if pool is not None else TexturePool(cfg.texture_pool, size, channels, seed=seed)
        if (self.pool.size, self.pool.channels) != (size, channels):
            raise ConfigError(
                f"texture pool makes {self.pool.channels}x{self.pool.size}px sources, "
                f"synthesizer expects {channels}x{size}px"
            )

    @property
    def region_only(self) -> bool:
        return self.cfg.transparency_mode == "region"

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, other_normal: OtherNormal = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(defect image float32 (C,H,W), mask float32 (H,W) in {0,1})."""
        defect = self.draw(image, rng, other_normal)
        return defect.image, defect.mask

    def draw_kind(self, rng: np.random.Generator) -> DefectKind:
        u = rng.random()
        if u < self.cfg.shift_probability:
            return "shift"
        if u < self.cfg.shift_probability + self.cfg.self_texture_probability:
            return "self_texture"
        return "destructive" if rng.random() < self.cfg.destructive_probability else "translucent"

    def draw(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        other_normal: OtherNormal = None,
        kind: DefectKind | None = None,
    ) -> Defect:
        """One defect on ``image`` (float32 (C,H,W) in [0,1]); ``other_normal`` (an image or a
        function returning one, called only when needed) feeds the self-texture kind."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape != (self.channels, self.size, self.size):
            raise ValueError(
                f"DefectSynthesizer expects an image of shape ({self.channels}, {self.size}, {self.size}), "
                f"got {tuple(image.shape)}"
            )
        kind = kind or self.draw_kind(rng)
        # A grayscale surface stored as 3 equal channels (e.g. magnetic tile) gets grayscale
        # defects, never coloured ones (a free cue no real defect gives), and the work is done
        # on one channel and repeated: a third of the cost.
        gray = _is_gray(image)
        work = image[:1] if gray else image
        defect: Defect | None = None
        for _ in range(_ATTEMPTS):
            defect = self._attempt(work, rng, other_normal, kind, gray)
            if defect.area >= self.cfg.mask.min_area and defect.mask.any():
                break
        assert defect is not None
        if gray:
            defect.image = np.repeat(defect.image, image.shape[0], axis=0)
        return defect

    # ------------------------------------------------------------------ kinds

    def _lam(self, rng: np.random.Generator, kind: DefectKind) -> float:
        if kind == "destructive":
            return 1.0
        if kind == "self_texture" and rng.random() < self.cfg.destructive_probability:
            return 1.0
        lo, hi = self.cfg.transparency_min, self.cfg.transparency_max
        return float(rng.uniform(lo, hi)) if hi > lo else float(lo)

    def _source(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        other_normal: OtherNormal,
        kind: DefectKind,
        gray: bool,
    ) -> np.ndarray:
        """The anomaly source, with as many channels as ``image`` (1 when ``gray``)."""
        if kind == "self_texture":
            base = image
            if other_normal is not None and rng.random() < 0.5:
                other = other_normal() if callable(other_normal) else other_normal
                base = np.asarray(other, dtype=np.float32)
                if base.shape != (self.channels, *image.shape[1:]):
                    raise ValueError(
                        f"other_normal has shape {tuple(base.shape)}, expected {(self.channels, *image.shape[1:])}"
                    )
                if gray:
                    base = base[:1] if _is_gray(base) else base.mean(axis=0, keepdims=True)
            return _shuffle_copy(base, rng)
        source = self.pool.sample(rng)
        return source.mean(axis=0, keepdims=True) if gray else source

    def _attempt(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        other_normal: OtherNormal,
        kind: DefectKind,
        gray: bool,
    ) -> Defect:
        _, h, w = image.shape
        if kind == "shift":
            mask, mask_kind = draw_mask(h, w, rng, self.cfg.mask, kind="soft")
            out, strength = self._shift(image, mask, rng)
            # A regional change of brightness or texture contrast is seen over an area, not per
            # pixel (a contrast change moves each pixel by its own texture detail). Label: where
            # the designed change (mask x strength) reaches the threshold, confirmed by the
            # measured 7x7 change reaching half of it (drops regions clipped at 0 or 1).
            thr = self.cfg.label_threshold
            label = visible_change(image, out, mask, 0.5 * thr, window=7)
            label *= mask * np.float32(strength) >= thr
            return Defect(out, label, kind, math.nan, mask_kind, mask)
        mask, mask_kind = draw_mask(h, w, rng, self.cfg.mask)
        lam = self._lam(rng, kind)
        source = self._source(image, rng, other_normal, kind, gray)
        if kind != "self_texture" and rng.random() < self.cfg.intensity_match:
            source = self._relevel(source, image, mask, rng)
        out = np.clip(blend(image, source, mask, lam, region_only=self.region_only), 0.0, 1.0)
        support = mask if self.region_only else None
        if mask_kind == "soft":  # soft edges fade: judge the change regionally (no ragged speckle)
            label = visible_change(image, out, support, self.cfg.label_threshold, window=7, per_pixel=False)
        else:
            label = visible_change(image, out, support, self.cfg.label_threshold)
        return Defect(out.astype(np.float32, copy=False), label, kind, lam, mask_kind, mask)

    def _relevel(
        self, source: np.ndarray, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The pool texture moved to the surface's level under the mask, then offset darker or
        brighter (equally likely) by [intensity_offset_min, max], its contrast scaled to the
        surface's times 0.5-2.

        Texture photographs average mid-grey: pasted as they are onto a dark surface (magnetic
        tile) 87 % of them are brighter than it (measured), and a model learns "bright = defect"
        and misses dark holes and cracks; a bright surface gets the opposite bias. Re-levelling
        makes sign and size of the intensity change a free variable for any surface.
        """
        inside = mask >= 0.5
        if not inside.any():
            return source
        s_in, i_in = source[:, inside], image[:, inside]
        s_mean = s_in.mean(axis=1, keepdims=True)[..., None]
        i_mean = i_in.mean(axis=1, keepdims=True)[..., None]
        s_std = float(s_in.std()) + 1e-6
        gain = float(i_in.std()) / s_std * float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        offset = rng.uniform(self.cfg.intensity_offset_min, self.cfg.intensity_offset_max)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        out = (source - s_mean) * np.float32(gain) + i_mean + np.float32(sign * offset)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    def _shift(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, float]:
        """Brightness offset, or texture-contrast gain around the local mean (gain 0 = blur,
        > 1 = harsher texture), weighted by the soft mask; returns (image, strength).

        The strength drawn from [shift_min, shift_max] is the mean intensity change where the
        mask is fully on, for both variants: a contrast gain is scaled by the surface's own
        texture amplitude, so a smooth surface gets a large gain and a rough one a small gain,
        and the shift is equally visible on both. Flattening removes at most all the texture;
        where that is too little to see, the shift becomes a brightness change instead.
        """
        strength = float(rng.uniform(self.cfg.shift_min, self.cfg.shift_max))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        m = mask[None]
        if rng.random() < 0.5:
            k = int(rng.integers(3, 10))
            detail = image - uniform_filter(image, size=(1, k, k), mode="reflect")
            core = mask >= 0.5
            amplitude = float(np.abs(detail[:, core]).mean()) if core.any() else 0.0
            if sign < 0:
                strength = min(strength, amplitude)
            if strength >= 2.0 * self.cfg.label_threshold and amplitude > 1e-3:
                out = image + m * np.float32(sign * strength / amplitude) * detail
                return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False), strength
            strength = float(rng.uniform(self.cfg.shift_min, self.cfg.shift_max))
        out = image + np.float32(sign * strength) * m
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False), strength
