"""RB-AE two-phase training (paper III-E, Fig. 8) on top of the shared phase loop.

Phase 1 (encoder + decoder, eq. 14): ``100 L_rec + 1 L_per + 1 L_pixel_dis`` on pairs of a
defect-free image and its artificial defect; only the defect-free features are decoded.
Between the phases the fixed reference image is chosen (``reference.py``) and its features are
stored in the network's buffers with the now-frozen encoder.
Phase 2 (encoder frozen: RBAMs + decoder + MSFDM, eq. 17): ``100 L_rec + 1 L_per + 1 L_fea_rep +
1 L_seg``: the artificial defect image is repaired and reconstructed towards its defect-free
source, and the MSFDM learns the pasted masks with the focal loss.

Budget: epochs (paper: 400 + 200) capped by ``train.max_steps_phase*`` and the wall clock
``train.max_minutes`` (split by ``train.phase1_fraction``; time phase 1 does not use goes to phase
2). A killed run resumes from ``checkpoints/last.pt``: a finished phase 1 is reloaded from its end
checkpoint, phase 2 continues from its saved step with the reference buffers it saved.

Data parallel (``WORLD_SIZE`` > 1, see ``training.distributed``): each step's losses run through
a ``DDPForward`` over the trained parts (phase 1: encoder + decoder; phase 2: RBAMs + decoder +
MSFDM), so backward averages their gradients over the ranks; each rank trains on its own shard.
Every rank chooses the reference (same data, same weights) and the loop starts phase 2 from
rank 0's copy of it. Rank 0 alone validates, calibrates and writes the artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from texinspect.config import Config
from texinspect.errors import ConfigError
from texinspect.losses import focal_loss, resize_mask
from texinspect.models.rbae.losses import build_perceptual, feature_repair_loss, pixel_discrimination_loss
from texinspect.models.rbae.network import RBAM_LAYERS, RBAENet
from texinspect.models.rbae.reference import choose_reference
from texinspect.training.common import adam, phase_budgets, prepare_training_data, to_device
from texinspect.training.contract import FamilyTrainer, Phase, PhasePlan, train_family
from texinspect.training.distributed import DDPForward, DistContext
from texinspect.training.loop import PhaseResult, infinite_batches, steps_for

log = logging.getLogger(__name__)


def train_size(config: Config) -> int:
    return int(config.rbae.train_size or config.data.image_size)


def build_network(config: Config) -> RBAENet:
    return RBAENet(config.rbae, config.data.channels, train_size(config))


class _Step:
    """One optimizer step of a phase: the losses of ``losses(batch)`` through a ``DDPForward``
    over the parts the phase trains (a plain call in one process); returns the logged values."""

    def __init__(self, net: RBAENet, opt: torch.optim.Optimizer, config: Config, perceptual, device) -> None:
        self.net, self.opt, self.cfg, self.perceptual, self.device = net, opt, config, perceptual, device
        self.w = config.rbae.loss
        self.channels_last = config.train.channels_last
        self.sync = DDPForward(self.trained(net))

    def trained(self, net: RBAENet) -> list[torch.nn.Module | None]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        return self.sync.optimize(self.losses, self.opt, batch)

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def reconstruction(
        self, recon: torch.Tensor, io: torch.Tensor, w_rec: float, w_per: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The terms both phases start with: ``w_rec L_rec + w_per L_per`` towards the defect-free image."""
        l_rec = F.mse_loss(recon, io)
        loss = w_rec * l_rec
        out = {"rec": l_rec.item()}
        if self.perceptual is not None and w_per > 0:
            l_per = self.perceptual(recon, io)
            loss = loss + w_per * l_per
            out["per"] = l_per.item()
        return loss, out


class Phase1Step(_Step):
    """Eq. (14) on one batch: encoder + decoder."""

    def trained(self, net: RBAENet) -> list[torch.nn.Module | None]:
        return [net.encoder, net.decoder]

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        b = to_device(batch, self.device, self.channels_last)
        io, iad, mask = b["image"], b["defect"], b["mask"]
        use_pd = self.cfg.rbae.use_pixel_dis and self.w.pixel_dis > 0
        n = io.shape[0]
        feats = self.net.encoder(torch.cat([io, iad]) if use_pd else io)
        f_o = [f[:n] for f in feats]
        recon = self.net.decoder(f_o)
        loss, out = self.reconstruction(recon, io, self.w.rec1, self.w.per1)
        if use_pd:
            l_pd = pixel_discrimination_loss(f_o, [f[n:] for f in feats], mask)
            loss = loss + self.w.pixel_dis * l_pd
            out["pixel_dis"] = l_pd.item()
        return loss, out


class Phase2Step(_Step):
    """Eq. (17) on one batch (encoder frozen): RBAMs, decoder, MSFDM (and the extensions' parts)."""

    def trained(self, net: RBAENet) -> list[torch.nn.Module | None]:
        trained_encoder = None if net.encoder_frozen else net.encoder
        return [trained_encoder, net.rbams, net.decoder, net.msfdm, net.segmenter]

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        b = to_device(batch, self.device, self.channels_last)
        io, iad, mask = b["image"], b["defect"], b["mask"]
        n = io.shape[0]
        if self.net.encoder_frozen:
            with torch.no_grad():  # frozen encoder: features are constants for this step
                feats = self.net.encoder(torch.cat([io, iad]))
        else:  # extension rbae.freeze_encoder=false: the encoder learns on; keep F_ref current
            if self.net.use_rbam:
                self.net.set_reference(self.net.reference_image)
            feats = self.net.encoder(torch.cat([io, iad]))
        f_o = [f[:n] for f in feats]
        f_ad = [f[n:] for f in feats]
        repaired = self.net.repair(f_ad)
        recon = self.net.decoder(repaired)
        loss, out = self.reconstruction(recon, io, self.w.rec2, self.w.per2)
        if self.net.use_rbam and self.w.fea_rep > 0:
            idx = [layer - 1 for layer in RBAM_LAYERS]
            l_fr = feature_repair_loss([repaired[i] for i in idx], [f_o[i] for i in idx])
            loss = loss + self.w.fea_rep * l_fr
            out["fea_rep"] = l_fr.item()
        if self.net.msfdm is not None and self.w.seg > 0:
            logits = self.net.segment_logits(f_ad, recon)
            seg = [
                focal_loss(
                    lg,
                    resize_mask(mask, tuple(lg.shape[-2:])),
                    self.cfg.rbae.focal_alpha,
                    self.cfg.rbae.focal_gamma,
                )
                for lg in logits
            ]
            l_seg = torch.stack(seg).mean()  # eq. (10)
            loss = loss + self.w.seg * l_seg
            out["seg"] = l_seg.item()
        if self.net.segmenter is not None and self.w.seg > 0:  # extension: full-resolution pixel segmenter
            l_seg = focal_loss(
                self.net.pixel_logits(iad, recon), mask, self.cfg.rbae.focal_alpha, self.cfg.rbae.focal_gamma
            )
            loss = loss + self.w.seg * l_seg
            out["seg"] = l_seg.item()
        return loss, out


def _phase2_params(net: RBAENet) -> list[torch.nn.Parameter]:
    params = list(net.rbams.parameters()) + list(net.decoder.parameters())
    if not net.encoder_frozen:
        params += list(net.encoder.parameters())
    if net.msfdm is not None:
        params += list(net.msfdm.parameters())
    if net.segmenter is not None:
        params += list(net.segmenter.parameters())
    return params


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:
    """Run both phases (resuming from ``out_dir/checkpoints``) and write ``out_dir/model``.

    In a DDP job (``WORLD_SIZE`` > 1) every rank calls this; all return ``out_dir/model``, which
    rank 0 alone writes.
    """
    return train_family(RBAETrainer(config, Path(out_dir), resume))


class RBAETrainer(FamilyTrainer):
    """RB-AE's part of the trainer contract (``training.contract``): the networks, the two step
    functions and, between the phases, the frozen encoder and the reference image."""

    family = "rbae"

    def prepare(self, ctx: DistContext) -> None:
        config, device = self.config, self.device
        self.size = size = train_size(config)
        perceptual, self.perceptual_desc = build_perceptual(config.rbae.perceptual, config.rbae.vgg_weights)
        self.perceptual = perceptual.to(device) if perceptual is not None else None
        self.data = data = prepare_training_data(config, work_size=size)  # validated at data.image_size
        data.train.preload()
        data.val.preload()
        self.val, self.data_info = data.val, data.info
        net = build_network(config).to(device)
        self.net = net.to(memory_format=torch.channels_last) if config.train.channels_last else net
        tc = config.train
        self.batches = infinite_batches(data.synthetic, tc.batch_size, config.seed, config.data.num_workers)
        self.budgets = _budgets(config)
        self.reference_info: dict[str, Any] = {"reference_rule": "none (rbae.use_rbam=false)"}

    def phases(self) -> list[Phase]:
        return [Phase("phase1", self._phase1), Phase("phase2", self._phase2)]

    def _plan(self, step_cls: type, params: list[torch.nn.Parameter], epochs: int, cap: int, seconds: float) -> PhasePlan:
        tc = self.config.train
        opt = adam(params, tc.lr, tc.weight_decay)
        return PhasePlan(
            step=step_cls(self.net, opt, self.config, self.perceptual, self.device),
            batches=self.batches,
            modules={"net": self.net},
            optimizers={"adam": opt},
            max_steps=steps_for(epochs, len(self.data.train), tc.batch_size, cap),
            max_seconds=seconds,
            lr_schedule=tc.lr_schedule,
            warmup_steps=tc.warmup_steps,
        )

    def _phase1(self, done: list[PhaseResult]) -> PhasePlan:
        """Encoder + decoder (eq. 14)."""
        net, tc = self.net, self.config.train
        params = list(net.encoder.parameters()) + list(net.decoder.parameters())
        return self._plan(Phase1Step, params, tc.phase1_epochs, tc.max_steps_phase1, self.budgets[0])

    def _phase2(self, done: list[PhaseResult]) -> PhasePlan:
        """Freeze the encoder (paper), fix the reference; then RBAMs + decoder + MSFDM (eq. 17)."""
        config, net, tc = self.config, self.net, self.config.train
        if config.rbae.freeze_encoder:
            net.freeze_encoder()
        if net.use_rbam:
            image, self.reference_info = choose_reference(
                net,
                self.data.train,
                config.rbae.reference,
                self.size,
                config.data.channels,
                self.device,
                config.rbae.reference_candidates,
                config.seed,
                config.data.root,
            )
            net.set_reference(image)
        budget1, budget2 = self.budgets
        if budget1 or budget2:  # time phase 1 left unused goes to phase 2
            budget2 = max(1.0, budget1 + budget2 - done[0].seconds)
        return self._plan(Phase2Step, _phase2_params(net), tc.phase2_epochs, tc.max_steps_phase2, budget2)

    def final_detector(self, results: list[PhaseResult]) -> RBAENet:
        net = self.net
        if not net.encoder_frozen and net.use_rbam:  # extension: F_ref from the encoder as it ended
            net.set_reference(net.reference_image)
        net.eval()
        return net

    def card_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        r1, r2 = results
        rbae = self.config.rbae
        return {
            "perceptual": self.perceptual_desc,
            "train_size": self.size,
            "lr": self.config.train.lr,
            "segmentation": rbae.segmentation,
            "use_rbam": rbae.use_rbam,
            "use_pixel_dis": rbae.use_pixel_dis,
            "freeze_encoder": rbae.freeze_encoder,
            **self.reference_info,
            **validation,
            "phase1_steps": r1.steps,
            "phase2_steps": r2.steps,
            "phase1_seconds": round(r1.seconds, 1),
            "phase2_seconds": round(r2.seconds, 1),
        }


def _budgets(config: Config) -> tuple[float, float]:
    """Seconds for the phases: the shared split, or ``rbae.phase1_fraction`` when set."""
    frac = config.rbae.phase1_fraction
    if not frac:
        return phase_budgets(config)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"rbae.phase1_fraction: expected a share in (0, 1), got {frac}")
    total = config.train.max_minutes * 60.0
    return (total * frac, total * (1.0 - frac)) if total > 0 else (0.0, 0.0)
