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
from pathlib import Path
from typing import Any

import torch

from texinspect.config import Config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import scan_dataset
from texinspect.errors import DataError
from texinspect.models.aessim.losses import ssim_loss
from texinspect.models.aessim.network import AESSIMNet
from texinspect.training.common import VAL_FRACTION, adam, to_device
from texinspect.training.contract import FamilyTrainer, Phase, PhasePlan, train_family
from texinspect.training.distributed import DDPForward, DistContext
from texinspect.training.loop import PhaseResult, infinite_batches, steps_for

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
        return ssim_loss(x, rec)


def step_cap(config: Config, n_train: int) -> int:
    tc = config.train
    if tc.max_steps_phase1 > 0 and tc.max_steps_phase2 > 0:
        return tc.max_steps_phase1 + tc.max_steps_phase2
    return steps_for(tc.phase1_epochs + tc.phase2_epochs, n_train, tc.batch_size)


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:
    """Train (resuming from ``out_dir/checkpoints``), calibrate, write ``out_dir/model``.

    In a DDP job every rank calls this and gets ``out_dir/model`` back; rank 0 alone writes it.
    """
    return train_family(AESSIMTrainer(config, Path(out_dir), resume))


class AESSIMTrainer(FamilyTrainer):
    """AE-SSIM's part of the trainer contract (``training.contract``): its own data (normal images
    only, no synthesis), the network and one phase of SSIM steps."""

    family = FAMILY

    def prepare(self, ctx: DistContext) -> None:
        config = self.config
        index = scan_dataset(config.data.root)
        train_records, val_records = split_train_val(index.train, VAL_FRACTION, config.seed)
        if not train_records or len(val_records) < 2:
            raise DataError(
                f"{config.data.root}: AE-SSIM needs training images and at least 2 held-out normal images "
                f"for calibration, got {len(train_records)} + {len(val_records)}"
            )
        size, channels = config.data.image_size, config.data.channels
        self.train_set = ImageDataset(train_records, size, channels, cache=True)
        self.val = ImageDataset(val_records, size, channels, cache=True)
        self.train_set.preload()
        self.data_info = {"data_root": str(config.data.root), "n_train": len(train_records), "n_val": len(val_records)}
        net = AESSIMNet(channels, size).to(self.device)
        self.net = net.to(memory_format=torch.channels_last) if config.train.channels_last else net
        self.rank = ctx.rank

    def phases(self) -> list[Phase]:
        return [Phase(PHASE, self._phase)]

    def _phase(self, done: list[PhaseResult]) -> PhasePlan:
        config, tc = self.config, self.config.train
        opt = adam(self.net.parameters(), LR, WEIGHT_DECAY)
        self.step = step = TrainStep(self.net, opt, config, self.device, self.rank)
        return PhasePlan(
            step=step,
            batches=infinite_batches(self.train_set, tc.batch_size, config.seed, config.data.num_workers),
            modules={"net": self.net},
            optimizers={"adam": opt},
            max_steps=step_cap(config, len(self.train_set)),
            max_seconds=tc.max_minutes * 60.0,  # all of it: there is no second phase
            generators={"windows": step.generator},  # saved with the checkpoints: exact resume
        )

    def final_detector(self, results: list[PhaseResult]) -> AESSIMNet:
        self.net.eval()
        return self.net

    def card_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        (result,) = results
        return {
            **validation,
            "patch": self.net.patch,
            "stride": self.net.stride,
            "lr": LR,
            "patches_per_image": self.step.per_image,
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
        }
