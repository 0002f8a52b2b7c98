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
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from texinspect.config import Config
from texinspect.data.datasets import ImageDataset
from texinspect.errors import ConfigError
from texinspect.losses import focal_loss, resize_mask
from texinspect.models.rbae.losses import build_perceptual, feature_repair_loss, pixel_discrimination_loss
from texinspect.models.rbae.network import RBAM_LAYERS, RBAENet
from texinspect.models.rbae.reference import choose_reference
from texinspect.outputs import ensure_output_dir
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.common import (
    MODEL_SUBDIR,
    adam,
    ddp_summary,
    finalize_model,
    phase_budgets,
    prepare_training_data,
    to_device,
    write_summary,
)
from texinspect.training.distributed import DDPForward, DistContext, is_main_process, session
from texinspect.training.loop import infinite_batches, phase_dir, run_phase, seed_everything, steps_for
from texinspect.validation import training_validation

log = logging.getLogger(__name__)



def train_size(config: Config) -> int:
    return int(config.rbae.train_size or config.data.image_size)


def build_network(config: Config) -> RBAENet:
    return RBAENet(config.rbae, config.data.channels, train_size(config))


class Phase1Step:
    """Eq. (14) on one batch; returns the logged loss values."""

    def __init__(self, net: RBAENet, opt: torch.optim.Optimizer, config: Config, perceptual, device) -> None:
        self.net, self.opt, self.cfg, self.perceptual, self.device = net, opt, config, perceptual, device
        self.w = config.rbae.loss
        self.channels_last = config.train.channels_last
        self.sync = DDPForward([net.encoder, net.decoder])  # plain call in one process

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        return self.sync.optimize(self.losses, self.opt, batch)

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        b = to_device(batch, self.device, self.channels_last)
        io, iad, mask = b["image"], b["defect"], b["mask"]
        use_pd = self.cfg.rbae.use_pixel_dis and self.w.pixel_dis > 0
        n = io.shape[0]
        feats = self.net.encoder(torch.cat([io, iad]) if use_pd else io)
        f_o = [f[:n] for f in feats]
        recon = self.net.decoder(f_o)
        l_rec = F.mse_loss(recon, io)
        loss = self.w.rec1 * l_rec
        out = {"rec": l_rec.item()}
        if self.perceptual is not None and self.w.per1 > 0:
            l_per = self.perceptual(recon, io)
            loss = loss + self.w.per1 * l_per
            out["per"] = l_per.item()
        if use_pd:
            l_pd = pixel_discrimination_loss(f_o, [f[n:] for f in feats], mask)
            loss = loss + self.w.pixel_dis * l_pd
            out["pixel_dis"] = l_pd.item()
        return loss, out


class Phase2Step:
    """Eq. (17) on one batch (encoder frozen); returns the logged loss values."""

    def __init__(self, net: RBAENet, opt: torch.optim.Optimizer, config: Config, perceptual, device) -> None:
        self.net, self.opt, self.cfg, self.perceptual, self.device = net, opt, config, perceptual, device
        self.w = config.rbae.loss
        self.channels_last = config.train.channels_last
        trained_encoder = None if net.encoder_frozen else net.encoder
        self.sync = DDPForward([trained_encoder, net.rbams, net.decoder, net.msfdm, net.segmenter])

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        return self.sync.optimize(self.losses, self.opt, batch)

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
        l_rec = F.mse_loss(recon, io)
        loss = self.w.rec2 * l_rec
        out = {"rec": l_rec.item()}
        if self.perceptual is not None and self.w.per2 > 0:
            l_per = self.perceptual(recon, io)
            loss = loss + self.w.per2 * l_per
            out["per"] = l_per.item()
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
    with session(config.device) as ctx:
        return _train(config, Path(out_dir), resume, ctx)


def _train(config: Config, out: Path, resume: bool, ctx: DistContext) -> Path:
    ensure_output_dir(out)  # a read-only or file-valued --out fails now, in one line, not at a checkpoint
    t_start = time.perf_counter()
    seed_everything(config.seed)
    device = ctx.device
    size = train_size(config)
    perceptual, perceptual_desc = build_perceptual(config.rbae.perceptual, config.rbae.vgg_weights)
    if perceptual is not None:
        perceptual = perceptual.to(device)

    small = config.with_overrides({"data.image_size": size}) if size != config.data.image_size else config
    data = prepare_training_data(small)
    data.train.preload()
    data.val.preload()
    val_full = data.val
    if size != config.data.image_size:
        val_full = ImageDataset(data.val.records, config.data.image_size, config.data.channels, cache=True)

    net = build_network(config).to(device)
    if config.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    ckpt = Checkpointer(phase_dir(out), enabled_resume=resume)
    tc = config.train
    n_train = len(data.train)
    batches = infinite_batches(data.synthetic, tc.batch_size, config.seed, config.data.num_workers)
    budget1, budget2 = _budgets(config)
    lr = tc.lr
    resumed = {p: _saved_step(ckpt, p) for p in ("phase1", "phase2")} if resume else {}

    # ---------------- phase 1: encoder + decoder (eq. 14)
    opt1 = adam(list(net.encoder.parameters()) + list(net.decoder.parameters()), lr, tc.weight_decay)
    steps1 = steps_for(tc.phase1_epochs, n_train, tc.batch_size, tc.max_steps_phase1)
    r1 = run_phase(
        "phase1",
        Phase1Step(net, opt1, config, perceptual, device),
        batches,
        {"net": net},
        {"adam": opt1},
        ckpt,
        max_steps=steps1,
        max_seconds=budget1,
        checkpoint_every=tc.checkpoint_every,
        log_every=tc.log_every,
        progress=tc.progress,
        lr_schedule=tc.lr_schedule,
        warmup_steps=tc.warmup_steps,
    )

    # ---------------- between phases: freeze the encoder (paper), fix the reference
    if config.rbae.freeze_encoder:
        net.freeze_encoder()
    reference_info: dict[str, Any] = {"reference_rule": "none (rbae.use_rbam=false)"}
    if net.use_rbam:
        image, reference_info = choose_reference(
            net,
            data.train,
            config.rbae.reference,
            size,
            config.data.channels,
            device,
            config.rbae.reference_candidates,
            config.seed,
            config.data.root,
        )
        net.set_reference(image)

    # ---------------- phase 2: RBAMs + decoder + MSFDM (eq. 17)
    opt2 = adam(_phase2_params(net), lr, tc.weight_decay)
    steps2 = steps_for(tc.phase2_epochs, n_train, tc.batch_size, tc.max_steps_phase2)
    if budget1 or budget2:  # time phase 1 left unused goes to phase 2
        budget2 = max(1.0, budget1 + budget2 - r1.seconds)
    r2 = run_phase(
        "phase2",
        Phase2Step(net, opt2, config, perceptual, device),
        batches,
        {"net": net},
        {"adam": opt2},
        ckpt,
        max_steps=steps2,
        max_seconds=budget2,
        checkpoint_every=tc.checkpoint_every,
        log_every=tc.log_every,
        progress=tc.progress,
        lr_schedule=tc.lr_schedule,
        warmup_steps=tc.warmup_steps,
    )

    if not net.encoder_frozen and net.use_rbam:  # extension: F_ref from the encoder as it ended
        net.set_reference(net.reference_image)

    # ---------------- validation on synthetic defects, calibration, artifact (rank 0)
    if not is_main_process():
        return out / MODEL_SUBDIR
    net.eval()
    synthetic = training_validation(net, config, val_full, device)
    log.info(
        "synthetic defects on held-out normals: image AUROC %.3f, pixel AUROC %.3f",
        synthetic["synthetic_image_auroc"],
        synthetic["synthetic_pixel_auroc"],
    )
    extra = {
        "perceptual": perceptual_desc,
        "train_size": size,
        "lr": lr,
        "segmentation": config.rbae.segmentation,
        "use_rbam": config.rbae.use_rbam,
        "use_pixel_dis": config.rbae.use_pixel_dis,
        "freeze_encoder": config.rbae.freeze_encoder,
        **reference_info,
        **synthetic,
        "phase1_steps": r1.steps,
        "phase2_steps": r2.steps,
        "phase1_seconds": round(r1.seconds, 1),
        "phase2_seconds": round(r2.seconds, 1),
    }
    model_dir = finalize_model(net, config, out, val_full, device, extra)
    summary = {
        "family": "rbae",
        "device": str(device),
        "model_dir": str(model_dir),
        "resumed_from": resumed,
        "phases": {
            r.name: {
                "steps": r.steps,
                "seconds": round(r.seconds, 2),
                "steps_per_second": round(r.steps / r.seconds, 3) if r.seconds > 0 else None,
                "stopped_by": r.stopped_by,
                "first_losses": r.history[0] if r.history else {},
                "last_losses": r.history[-1] if r.history else {},
            }
            for r in (r1, r2)
        },
        "history": {"phase1": r1.history, "phase2": r2.history},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
        "distributed": ddp_summary(ctx, tc.batch_size, [r1, r2]),
        **extra,
    }
    write_summary(out, summary)
    return model_dir


def _budgets(config: Config) -> tuple[float, float]:
    """Seconds for the phases: the shared split, or ``rbae.phase1_fraction`` when set."""
    frac = config.rbae.phase1_fraction
    if not frac:
        return phase_budgets(config)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"rbae.phase1_fraction: expected a share in (0, 1), got {frac}")
    total = config.train.max_minutes * 60.0
    return (total * frac, total * (1.0 - frac)) if total > 0 else (0.0, 0.0)


def _saved_step(ckpt: Checkpointer, phase: str) -> int:
    payload = ckpt.load_phase(phase)
    return int(payload["step"]) if payload is not None else 0

