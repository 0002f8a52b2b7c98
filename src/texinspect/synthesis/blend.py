"""The papers' compositing equations, written once for numpy arrays and torch tensors alike.

Only elementwise arithmetic and ``[..., None, :, :]`` indexing are used, so the same functions
work on numpy (C,H,W) arrays and on torch (C,H,W) or (B,C,H,W) tensors (e.g. on the GPU).
A mask of shape (H,W) / (B,H,W) is broadcast over the channel axis.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _channel_mask(mask: Array, image: Array) -> Array:
    """(H,W) or (B,H,W) mask -> broadcastable against (C,H,W) or (B,C,H,W) images."""
    if mask.ndim == image.ndim - 1:
        return mask[..., None, :, :]
    if mask.ndim == image.ndim:
        return mask
    raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit image of shape {tuple(image.shape)}")


def paste(io: Array, source: Array, mask: Array) -> Array:
    """RB-AE eq. (1): ``I_ad = I_o * (1 - I_m) + I_n * I_m`` (a destructive paste)."""
    m = _channel_mask(mask, io)
    return io * (1 - m) + source * m


def blend(io: Array, source: Array, mask: Array, lam: float, region_only: bool = True) -> Array:
    """FMR-Net eq. (1) with transparency ``lam`` (1 = opaque/destructive defect).

    ``region_only=False`` is the formula as printed:
    ``I_s = lam * [(1 - I_m) * I_o + I_m * I_d] + (1 - lam) * I_d``, which for ``lam < 1`` lays
    ``I_d`` at weight ``1 - lam`` over the *whole* image (every pixel changes; the mask region
    is fully replaced).

    ``region_only=True`` (default) is our reading of the paper's text, where occlusion defects are
    *regions* overlaid with a translucent substance: ``I_s = (1 - lam*I_m) * I_o + lam*I_m * I_d``,
    i.e. inside the mask the substance covers the surface with opacity ``lam`` and outside it
    nothing changes. Both readings equal eq. (1) of RB-AE (``paste``) at ``lam = 1``.
    """
    m = _channel_mask(mask, io)
    if region_only:
        a = m * lam
        return io * (1 - a) + source * a
    return (io * (1 - m) + source * m) * lam + source * (1 - lam)
