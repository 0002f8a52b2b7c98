"""AE-SSIM training: one phase of SSIM-loss reconstruction on random defect-free patches.

Bergmann et al. train on random ``P x P`` crops of the defect-free images with the loss
``1 - SSIM(x, AE(x))`` (Adam). Here each step draws ``train.batch_size`` images (the same
batches of the same split as RB-AE and FMR-Net) and ``PATCHES_PER_IMAGE`` random, randomly
flipped windows from each. The shared phase loop gives the wall-clock budget (``train.max_minutes``,
the whole of it: there is no second phase), checkpoints and resume; the thresholds are then
calibrated on the same held-out normal images as the other families.

Step cap: ``train.max_steps_phase1 + train.max_steps_phase2`` when both are set (the total the
other families get), else ``train.phase1_epochs + train.phase2_epochs`` epochs.

Data parallel (``WORLD_SIZE`` > 1, see ``training.distributed``): the SSIM loss runs through a
``DDPForward`` over the network, each rank draws windows from its own shard with its own window
generator, and rank 0 alone calibrates and writes the artifact.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from texinspect.calibration import calibrate
from texinspect.config import Config, save_config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import scan_dataset
from texinspect.errors import DataError
from texinspect.models.aessim.network import SSIM_WINDOW, AESSIMNet
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.outputs import ensure_output_dir
from texinspect.scoring import ssim_map
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.common import MODEL_SUBDIR, VAL_FRACTION, adam, ddp_summary, to_device, write_summary
from texinspect.training.distributed import DDPForward, DistContext, is_main_process, session
from texinspect.training.loop import infinite_batches, phase_dir, run_phase, seed_everything, steps_for
from texinspect.validation import training_validation

log = logging.getLogger(__name__)

FAMILY = "aessim"
PHASE = "train"
LR = 1e-3  # Bergmann et al. (MVTec AD) use Adam 2e-4; 1e-3 with BatchNorm learns in minutes (network.py)
WEIGHT_DECAY = 1e-5  # as Bergmann et al.
PATCHES_PER_IMAGE = 4  # random windows cut from each image of a batch (1 when the window is the image)


def random_windows(images: torch.Tensor, patch: int, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """``per_image`` random ``patch`` x ``patch`` crops of each image, each flipped at random.

    One gather for the whole batch (no Python loop over windows). Returns ``(B*per_image, C, p, p)``.
    """
    b, c, h, w = images.shape
    n = b * per_image
    dev = images.device
    src = torch.arange(b, device=dev).repeat_interleave(per_image)
    oy = torch.randint(0, h - patch + 1, (n,), generator=generator).to(dev)
    ox = torch.randint(0, w - patch + 1, (n,), generator=generator).to(dev)
    ar = torch.arange(patch, device=dev)
    flip_y = torch.randint(0, 2, (n,), generator=generator).bool().to(dev)
    flip_x = torch.randint(0, 2, (n,), generator=generator).bool().to(dev)
    rows = torch.where(flip_y[:, None], ar.flip(0), ar) + oy[:, None]  # (n, p)
    cols = torch.where(flip_x[:, None], ar.flip(0), ar) + ox[:, None]
    out = images[src[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, p, p, C)
    return out.permute(0, 3, 1, 2)


class TrainStep:
    """One Adam step of ``1 - mean SSIM`` on random windows of a batch of normal images."""

    def __init__(
        self, net: AESSIMNet, opt: torch.optim.Optimizer, config: Config, device: torch.device, rank: int = 0
    ) -> None:
        self.net, self.opt, self.device = net, opt, device
        self.channels_last = config.train.channels_last
        self.generator = torch.Generator().manual_seed(config.seed + 1_000_003 * rank)  # own windows per rank
        # a window as large as the image can only differ by its flips: one per image then
        self.per_image = PATCHES_PER_IMAGE if net.patch < config.data.image_size else 1
        self.sync = DDPForward([net])

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        loss = self.sync(self.loss, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        value = float(loss.item())
        return {"ssim_loss": value, "loss": value}

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        images = to_device(batch, self.device)["image"]
        x = random_windows(images, self.net.patch, self.per_image, self.generator)
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
        rec = self.net.ae(x)
        return 1.0 - ssim_map(x, rec, window=SSIM_WINDOW).mean()


def step_cap(config: Config, n_train: int) -> int:
    tc = config.train
    if tc.max_steps_phase1 > 0 and tc.max_steps_phase2 > 0:
        return tc.max_steps_phase1 + tc.max_steps_phase2
    return steps_for(tc.phase1_epochs + tc.phase2_epochs, n_train, tc.batch_size)


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:
    """Train (resuming from ``out_dir/checkpoints``), calibrate, write ``out_dir/model``.

    In a DDP job every rank calls this and gets ``out_dir/model`` back; rank 0 alone writes it.
    """
    with session(config.device) as ctx:
        return _train(config, Path(out_dir), resume, ctx)


def _train(config: Config, out: Path, resume: bool, ctx: DistContext) -> Path:
    ensure_output_dir(out)
    t_start = time.perf_counter()
    seed_everything(config.seed)
    device = ctx.device
    index = scan_dataset(config.data.root)
    train_records, val_records = split_train_val(index.train, VAL_FRACTION, config.seed)
    if not train_records or len(val_records) < 2:
        raise DataError(
            f"{config.data.root}: AE-SSIM needs training images and at least 2 held-out normal images "
            f"for calibration, got {len(train_records)} + {len(val_records)}"
        )
    size, channels = config.data.image_size, config.data.channels
    train_set = ImageDataset(train_records, size, channels, cache=True)
    val_set = ImageDataset(val_records, size, channels, cache=True)
    train_set.preload()

    net = AESSIMNet(channels, size).to(device)
    if config.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = adam(net.parameters(), LR, WEIGHT_DECAY)
    ckpt = Checkpointer(phase_dir(out), enabled_resume=resume)
    tc = config.train
    step = TrainStep(net, opt, config, device, ctx.rank)
    result = run_phase(
        PHASE,
        step,
        infinite_batches(train_set, tc.batch_size, config.seed, config.data.num_workers),
        {"net": net},
        {"adam": opt},
        ckpt,
        max_steps=step_cap(config, len(train_set)),
        max_seconds=tc.max_minutes * 60.0,
        checkpoint_every=tc.checkpoint_every,
        log_every=tc.log_every,
        progress=tc.progress,
        generators={"windows": step.generator},  # saved with the checkpoints: exact resume
    )
    if not is_main_process():
        return out / MODEL_SUBDIR
    net.eval()
    stats = calibrate(net, val_set, config.eval, device)
    synthetic = training_validation(net, config, val_set, device)  # the same set as every family's
    extra = {
        **synthetic,
        "patch": net.patch,
        "stride": net.stride,
        "lr": LR,
        "patches_per_image": step.per_image,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
    }
    card = ModelCard(
        family=FAMILY,
        config=config.to_dict(),
        image_size=size,
        channels=channels,
        threshold=float(stats["threshold"]),
        pixel_threshold=float(stats["pixel_threshold"]),
        normal_score_mean=float(stats["normal_score_mean"]),
        normal_score_std=float(stats["normal_score_std"]),
        score_smoothing=config.eval.score_smoothing,
        extra=extra,
    )
    model_dir = save_detector(net.cpu(), card, out / MODEL_SUBDIR)
    net.to(device)
    save_config(config, out / "config.yaml")
    write_summary(
        out,
        {
            "family": FAMILY,
            "device": str(device),
            "model_dir": str(model_dir),
            "phases": {
                PHASE: {
                    "steps": result.steps,
                    "seconds": round(result.seconds, 2),
                    "steps_per_second": round(result.steps / result.seconds, 3) if result.seconds > 0 else None,
                    "stopped_by": result.stopped_by,
                    "first_losses": result.history[0] if result.history else {},
                    "last_losses": result.history[-1] if result.history else {},
                }
            },
            "history": {PHASE: result.history},
            "wall_seconds": round(time.perf_counter() - t_start, 1),
            "parameters": sum(p.numel() for p in net.parameters()),
            "n_train": len(train_set),
            "n_val": len(val_set),
            "distributed": ddp_summary(ctx, tc.batch_size, [result]),
            **extra,
        },
    )
    log.info("AE-SSIM: %d steps in %.0f s -> %s", result.steps, result.seconds, model_dir)
    return model_dir
