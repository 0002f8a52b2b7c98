"""The fixed reference defect-free image of RBFRM (paper III-C1).

The paper uses "a fixed reference defect-free image" without saying which. Default (``rbae.reference:
auto``): the most typical training image, the medoid of the training images under a texture
descriptor taken from the phase-1 encoder: per channel, the spatial mean and standard deviation of
the layer 3-5 feature maps (the layers the RBAMs repair), each dimension standardised over the
candidates so that no layer dominates by scale. The medoid minimises the summed Euclidean distance
to all candidates, so its patches are the likeliest to resemble any normal input's patches.
``rbae.reference_candidates`` caps how many training images are compared (seeded sample).
Otherwise ``rbae.reference`` names an image file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import pairwise_distances
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, Dataset, Subset

from texinspect.data.images import load_image
from texinspect.errors import ConfigError, DataError
from texinspect.models.rbae.network import RBAM_LAYERS, RBAENet

log = logging.getLogger(__name__)


@torch.no_grad()
def texture_descriptors(
    net: RBAENet, dataset: Dataset, device: torch.device, batch_size: int = 16
) -> np.ndarray:
    """(N, D) float64: channel means and stds of the encoder's layer 3-5 maps for each image."""
    was_training = net.encoder.training
    net.encoder.eval()
    rows: list[np.ndarray] = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            feats = net.encoder(batch["image"].to(device))
            parts = []
            for layer in RBAM_LAYERS:
                f = feats[layer - 1].float()
                parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)]
            rows.append(torch.cat(parts, dim=1).cpu().double().numpy())
    finally:
        net.encoder.train(was_training and not net.encoder_frozen)
    return np.concatenate(rows)


def medoid_index(descriptors: np.ndarray) -> int:
    """Row that minimises the summed Euclidean distance to all rows (after standardisation)."""
    if descriptors.shape[0] == 0:
        raise DataError("no training images to choose a reference image from")
    z = StandardScaler().fit_transform(descriptors)
    return int(np.argmin(pairwise_distances(z).sum(axis=1)))


def choose_reference(
    net: RBAENet,
    train: Dataset,
    reference: str,
    size: int,
    channels: int,
    device: torch.device,
    max_candidates: int = 256,
    seed: int = 0,
    data_root: str | Path = ".",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(reference image (1, C, size, size), description for the model card)."""
    if reference != "auto":
        path = Path(reference)
        if not path.is_file() and (Path(data_root) / reference).is_file():
            path = Path(data_root) / reference
        if not path.is_file():
            raise ConfigError(f"rbae.reference: image not found: {reference} (use 'auto' or an image path)")
        image = torch.from_numpy(load_image(path, size, channels))[None]
        return image, {"reference_rule": "configured file", "reference": str(path)}
    n = len(train)  # type: ignore[arg-type]
    indices = np.arange(n)
    if 0 < max_candidates < n:
        indices = np.sort(np.random.default_rng(seed).choice(n, size=max_candidates, replace=False))
    candidates = Subset(train, indices.tolist())
    desc = texture_descriptors(net, candidates, device)
    best = int(indices[medoid_index(desc)])
    item = train[best]
    rel = item.get("rel", str(best))
    log.info(
        "reference image: %s (medoid of %d training images' encoder texture statistics)", rel, len(indices)
    )
    info = {
        "reference_rule": "medoid of standardised channel mean/std of phase-1 encoder layers 3-5",
        "reference": rel,
        "reference_candidates": int(len(indices)),
    }
    return item["image"][None].float(), info
