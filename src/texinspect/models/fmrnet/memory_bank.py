"""Memory bank stage (Algorithm 1, lines 12-16): k-means over the latent codes of normal patches.

After phase 1 every normal training image is cut into sliding-window patches, the encoder maps
them to latent codes R+ = E(P+), and scikit-learn's k-means puts L = ``fmrnet.memory_size``
centroids on them. The centroids are the memory bank M: phase 2's addressing network reads convex
combinations of them, and the patch-level early exit scores a patch by its distance to the
nearest one.

The bank is its own artifact (``memory_bank.pt``: centroids plus where they came from), written
atomically and loaded with ``weights_only=True``, so phase 2 (or a pipeline step) can reuse it
without rerunning phase 1 or k-means.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.utils.data import DataLoader, Dataset

from texinspect.config import Config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import scan_dataset
from texinspect.devices import resolve_device
from texinspect.errors import ConfigError, ModelError
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet import build
from texinspect.models.fmrnet.network import FMRNet, work_size
from texinspect.models.fmrnet.patches import extract_patches, make_grid
from texinspect.outputs import ensure_output_dir
from texinspect.torch_files import load_torch_file, save_torch_file
from texinspect.training.checkpoint import load_checkpoint
from texinspect.training.common import VAL_FRACTION

log = logging.getLogger(__name__)

MEMORY_FILE = "memory_bank.pt"
PHASE1_END = "phase1_end.pt"


def phase1_checkpoint(source: Path) -> Path | None:
    """A phase-1 checkpoint from a file, a checkpoints folder or a training run folder."""
    if source.is_file():
        return source
    for candidate in (source / PHASE1_END, source / "checkpoints" / PHASE1_END):
        if candidate.exists():
            return candidate
    return None


def load_encoder_source(
    config: Config, source: str | Path, device: torch.device
) -> tuple[FMRNet, dict[str, Any]]:
    """The network whose encoder defines the codes: a model folder or a phase-1 checkpoint."""

    src = Path(source)
    if src.is_dir() and (src / "model.yaml").exists():
        detector, card = load_detector(src, device)
        if not isinstance(detector, FMRNet):
            raise ModelError(f"{src}: is a {card.family} model, the memory bank needs an FMR-Net")
        return detector, {"source": str(src), "phase1_step": -1}
    ckpt = phase1_checkpoint(src)
    if ckpt is None:
        raise ModelError(
            f"{src}: no FMR-Net phase-1 checkpoint here (expected a .pt file, a folder with {PHASE1_END}, "
            "a training run folder with checkpoints/, or a model folder with model.yaml)"
        )
    payload = load_checkpoint(ckpt)
    try:
        state = payload["modules"]["generator"]
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{ckpt}: not an FMR-Net training checkpoint (no modules.generator)") from exc
    net = build(config)
    try:  # only the encoder defines the codes: the bank size may differ from the one trained with
        for name in ("encoder", "to_latent"):
            part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
            getattr(net, name).load_state_dict(part)
    except RuntimeError as exc:
        raise ModelError(f"{ckpt}: encoder weights do not fit the configured FMR-Net: {exc}") from exc
    return net.to(device), {"source": str(ckpt), "phase1_step": int(payload.get("step", -1))}


def _normal_images(config: Config) -> Dataset:
    """The normal training images (same split as training: held-out validation images excluded)."""

    index = scan_dataset(config.data.root)
    train, _ = split_train_val(index.train, VAL_FRACTION, config.seed)
    return ImageDataset(train, work_size(config.fmrnet, config.data.image_size), config.data.channels, cache=False)


@torch.no_grad()
def encode_normal_patches(
    net: FMRNet, images: Dataset, device: torch.device, max_codes: int = 0, seed: int = 0, batch_size: int = 8
) -> tuple[torch.Tensor, int]:
    """Codes (N, latent_dim) of the sliding-window patches of every image, and the patch count.

    With ``max_codes > 0`` a seeded random subset of that many windows is encoded (the others are
    never run through the encoder), which bounds the stage's time on large datasets.
    """
    net.eval()
    cfg = net.cfg
    codes = []
    keep: torch.Tensor | None = None
    seen = 0
    total = 0
    for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
        images_at_work_size = net.to_work_size(batch["image"].to(device))  # no-op unless fmrnet.train_size
        patches, grid = extract_patches(images_at_work_size, cfg.patch_size, cfg.patch_stride)
        if keep is None:
            total = len(images) * grid.per_image  # type: ignore[arg-type]
            keep = torch.ones(total, dtype=torch.bool)
            if 0 < max_codes < total:
                keep = torch.zeros(total, dtype=torch.bool)
                keep[torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:max_codes]] = True
        sel = keep[seen : seen + patches.shape[0]].to(patches.device)
        seen += patches.shape[0]
        for chunk in patches[sel].split(max(1, cfg.inference_chunk)):
            codes.append(net.encode(chunk)[1].float().cpu())
    if not codes:
        raise ModelError("no normal training images to build the memory bank from")
    return torch.cat(codes), total


def _too_few_codes(size: int, found: str) -> ConfigError:
    return ConfigError(
        f"fmrnet.memory_size={size} needs at least that many normal training windows, but {found}: "
        "lower fmrnet.memory_size (--set fmrnet.memory_size=N) or fmrnet.patch_stride, "
        "raise fmrnet.memory_max_codes, or add training images"
    )


def check_memory_capacity(config: Config, n_images: int) -> None:
    """Raise before training if ``n_images`` cannot give k-means the L codes it needs.

    Phase 1 calls this first: finding out at the bank, after phase 1, would throw its minutes away.
    """
    cfg = config.fmrnet
    size = work_size(cfg, config.data.image_size)
    windows = n_images * make_grid(1, size, size, cfg.patch_size, cfg.patch_stride).per_image
    usable = windows if cfg.memory_max_codes <= 0 else min(windows, cfg.memory_max_codes)
    if usable < cfg.memory_size:
        capped = (
            f" (fmrnet.memory_max_codes={cfg.memory_max_codes} keeps {usable})" if usable < windows else ""
        )
        raise _too_few_codes(
            cfg.memory_size, f"{n_images} training image(s) of {size} px give {windows} window(s){capped}"
        )


def kmeans_bank(codes: torch.Tensor, size: int, seed: int, max_iter: int = 100) -> tuple[torch.Tensor, float]:
    """(size, D) k-means centroids of ``codes`` (scikit-learn) and the inertia."""
    n = codes.shape[0]
    if n < size:
        raise _too_few_codes(size, f"got {n}")
    km = KMeans(n_clusters=size, n_init=1, max_iter=max_iter, random_state=seed)
    km.fit(codes.double().numpy())
    return torch.from_numpy(km.cluster_centers_.astype(np.float32)), float(km.inertia_)


def build_memory_bank(
    config: Config,
    checkpoint_or_model_dir: str | Path,
    out_path: str | Path,
    images: Dataset | None = None,
) -> Path:
    """Encode the normal training patches with the given encoder, k-means them, write ``out_path``."""
    t0 = time.perf_counter()
    device = resolve_device(config.device)
    net, meta = load_encoder_source(config, checkpoint_or_model_dir, device)
    dataset = images if images is not None else _normal_images(config)
    codes, n_all = encode_normal_patches(net, dataset, device, config.fmrnet.memory_max_codes, config.seed)
    memory, inertia = kmeans_bank(
        codes, config.fmrnet.memory_size, config.seed, config.fmrnet.kmeans_max_iter
    )
    seconds = time.perf_counter() - t0
    payload = {
        "memory": memory,
        "memory_size": int(memory.shape[0]),
        "latent_dim": int(memory.shape[1]),
        "n_codes": int(codes.shape[0]),
        "n_patches": int(n_all),
        "inertia": inertia,
        "seconds": seconds,
        "patch_size": int(config.fmrnet.patch_size),
        "patch_stride": int(config.fmrnet.patch_stride),
        **meta,
    }
    out = Path(out_path)
    ensure_output_dir(out.parent)
    save_torch_file(payload, out)
    log.info(
        "memory bank: %d entries from %d of %d normal patches in %.1f s -> %s",
        payload["memory_size"],
        payload["n_codes"],
        n_all,
        seconds,
        out,
    )
    return out


def load_memory_bank(path: str | Path, config: Config | None = None) -> dict[str, Any]:
    """Read a bank written by :func:`build_memory_bank`; checks its shape against ``config``."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no memory bank; run `texinspect memory-bank` after phase 1")
    payload = load_torch_file(
        p, f"{p}: not a texinspect memory bank, or corrupted; refusing to load it (delete it to rebuild it)"
    )
    if not isinstance(payload, dict) or "memory" not in payload:
        raise ModelError(f"{p}: not a memory bank file (no 'memory' tensor)")
    if config is not None:
        expected = (config.fmrnet.memory_size, config.fmrnet.latent_dim)
        if tuple(payload["memory"].shape) != expected:
            raise ModelError(
                f"{p}: memory bank has shape {tuple(payload['memory'].shape)}, config expects {expected} "
                "(fmrnet.memory_size, fmrnet.latent_dim); rebuild it"
            )
    return payload


def memory_bank_matches(bank_path: Path, phase1_checkpoint: Path, config: Config) -> bool:
    """Whether an existing bank was built from this phase-1 checkpoint with this configuration."""
    if not bank_path.exists() or not phase1_checkpoint.exists():
        return False
    try:
        bank = load_memory_bank(bank_path, config)
    except ModelError:
        return False
    step = int(load_checkpoint(phase1_checkpoint).get("step", -2))
    return (
        bank.get("phase1_step") == step
        and Path(str(bank.get("source"))).resolve() == phase1_checkpoint.resolve()
        and bank.get("patch_stride") == config.fmrnet.patch_stride
        and bank.get("patch_size") == config.fmrnet.patch_size
    )
