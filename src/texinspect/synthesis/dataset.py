"""Training pairs (defect-free image, artificial defect, mask) drawn on the fly.

Each item's randomness comes from ``np.random.default_rng([seed, epoch, index])`` and nothing
else, so an item is the same whichever DataLoader worker makes it and in whichever order, a
resumed run sees the same defects, and each epoch still sees new ones (``set_epoch``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from texinspect.errors import ConfigError
from texinspect.synthesis.synthesizer import DefectSynthesizer

AUGMENTS = ("none", "flips", "dihedral")
MAX_GAIN_JITTER = 1.0  # log-gain bound: e**1 = 2.7x brighter or darker is already far past any exposure drift


def turn(image: np.ndarray, augment: str, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) mirrored at random (``flips``), and turned by a multiple of 90 degrees (``dihedral``).

    More views of a direction-free texture from a small folder of good images. Its own random
    stream (not the synthesis one), so ``none`` leaves every earlier run's batches unchanged.
    """
    if rng.random() < 0.5:
        image = image[:, :, ::-1]
    if rng.random() < 0.5:
        image = image[:, ::-1, :]
    if augment == "dihedral":
        image = np.rot90(image, int(rng.integers(4)), axes=(1, 2))
    return np.ascontiguousarray(image)


def relight(image: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` times one random gain ``exp(U(-jitter, jitter))``, clipped to [0, 1].

    A normal image taken with more or less light (exposure, lamp ageing, a cell's own
    efficiency) is still normal. A network that only ever saw the training folder's brightness
    learns brightness as part of "normal": the image scores of FMR-Net's ELPV models followed the
    mean brightness of held-out good cells (Spearman +0.74, +0.85 and -0.84 for three seeds,
    ``benchmarks/selection.py``'s ``exposure_rho``; issue 17 round 6), so bright (or dark) good cells
    were flagged. The gain is drawn before synthesis, so defects are drawn on the relit
    image. Its own random stream, so ``jitter = 0`` leaves every earlier run's batches unchanged.
    """
    gain = np.float32(np.exp(rng.uniform(-jitter, jitter)))
    return np.clip(image * gain, 0.0, 1.0).astype(np.float32, copy=False)


class SyntheticDefectDataset(Dataset):
    """Wraps a normal-image dataset (items ``{"image": (C,H,W) tensor, ...}``).

    Items: ``{"image": I_o, "defect": I_s, "mask": (1,H,W) float in {0,1}, "has_defect": float
    tensor}`` (+ ``"rel"`` when the normal dataset gives it). Normals are turned (``augment``) and
    relit (``gain_jitter``, :func:`relight`) before the defect is drawn. With probability
    ``defect_probability`` (default: the synthesizer's config) the item carries a defect;
    otherwise ``defect`` equals ``image`` and the mask is zeros. ``has_defect`` is 1 only when
    the mask is non-empty.

    ``set_epoch`` must be called before the DataLoader iterator is created (workers copy the
    dataset then); with ``persistent_workers=True`` the workers keep the epoch they started with.
    """

    def __init__(
        self,
        normal: Dataset,
        synthesizer: DefectSynthesizer,
        seed: int,
        defect_probability: float | None = None,
        augment: str = "none",
        gain_jitter: float = 0.0,
    ) -> None:
        p = synthesizer.cfg.defect_probability if defect_probability is None else defect_probability
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"defect_probability: expected a probability in [0, 1], got {p}")
        self.normal = normal
        self.synthesizer = synthesizer
        self.seed = int(seed)
        self.defect_probability = float(p)
        if augment not in AUGMENTS:
            raise ConfigError(f"data.augment: expected one of {', '.join(AUGMENTS)}, got {augment!r}")
        self.augment = augment
        if not 0.0 <= gain_jitter <= MAX_GAIN_JITTER:
            raise ConfigError(
                f"data.gain_jitter: expected a log-gain bound in [0, {MAX_GAIN_JITTER}], got {gain_jitter}"
            )
        self.gain_jitter = float(gain_jitter)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.normal)  # type: ignore[arg-type]

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _image(self, index: int) -> np.ndarray:
        image = self.normal[index]["image"]
        if isinstance(image, torch.Tensor):
            return image.detach().cpu().numpy().astype(np.float32, copy=False)
        return np.asarray(image, dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        item = self.normal[index]
        image = item["image"]
        image_np = (
            image.detach().cpu().numpy().astype(np.float32, copy=False)
            if isinstance(image, torch.Tensor)
            else np.asarray(image, dtype=np.float32)
        )
        if self.augment != "none":
            image_np = turn(image_np, self.augment, np.random.default_rng([self.seed, self.epoch, index, 1]))
        if self.gain_jitter > 0.0:
            image_np = relight(image_np, self.gain_jitter, np.random.default_rng([self.seed, self.epoch, index, 2]))
        rng = self.rng(index)
        if rng.random() < self.defect_probability:

            def other() -> np.ndarray:  # another normal image, loaded only if a defect needs it
                if n < 2:
                    return image_np
                j = int(rng.integers(n - 1))
                return self._image(j + (j >= index))

            defect, mask = self.synthesizer(image_np, rng, other if n > 1 else None)
        else:
            defect, mask = image_np.copy(), np.zeros(image_np.shape[1:], np.float32)
        out: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image_np)),
            "defect": torch.from_numpy(np.ascontiguousarray(defect)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask))[None],
            "has_defect": torch.tensor(float(mask.any()), dtype=torch.float32),
        }
        if "rel" in item:
            out["rel"] = item["rel"]
        return out
