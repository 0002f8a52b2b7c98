"""FMR-Net two-phase training (Algorithm 1): phase 1 -> memory bank -> phase 2 -> calibration.

Each part reads what the previous one left on disk, so the Kubeflow pipeline can run them as
separate steps and a killed run resumes where it stopped:

    OUT/checkpoints/last.pt, phase1_end.pt, phase2_end.pt   (training.checkpoint.Checkpointer)
    OUT/memory_bank.pt                                       (memory_bank.build_memory_bank)
    OUT/model/                                               (model artifact, thresholds)
    OUT/train_summary.json

Phase 1 (eq. 15): encoder, decoder, GFRMs, auxiliary classifier C_A and discriminator learn to
reconstruct normal patches (P0, P+ from I_o) while the latent loss (eq. 2) separates them from
synthetic-defect patches (P- from I_s). The decoder reads the code z directly (no bank yet).
Phase 2 (eq. 16): the encoder is frozen (weights and BatchNorm statistics), the decoder reads
z_hat = A_N(z) M, and decoder, A_N, GFRMs and D learn to turn I_s patches into the I_o patches.

Ablations (Table II): ``two_phase=false`` runs phase 2 on defect-free inputs only (the model never
learns restoration); ``use_cmfm=false`` drops C_A, the latent loss and the addressing network
(the bank is still built: it only feeds the patch-level scores); ``use_gfrm=false`` uses plain
skip connections on the two deepest paths.

Data parallel (``WORLD_SIZE`` > 1, see ``training.distributed``): the generator's loss runs
through one ``DDPForward`` (its trained parts: encoder, decoder, GFRMs, C_A, A_N) and the
discriminator's through another, so each backward averages its own module's gradients; the
discriminator update inside a generator step keeps its place (D sees the same I_rec as in one
process). Each rank cuts patches from its own shard of images. The memory bank is built by rank 0
alone (k-means on one copy of the codes; the other ranks wait at a barrier) and every rank loads
the same ``memory_bank.pt``, exactly as the pipeline's separate memory-bank step hands it to
phase 2. Rank 0 alone calibrates and writes the artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from texinspect.config import Config
from texinspect.errors import ModelError
from texinspect.losses import focal_loss
from texinspect.models.fmrnet import build
from texinspect.models.fmrnet.cmfm import AuxiliaryClassifier, latent_loss
from texinspect.models.fmrnet.losses import (
    discriminator_loss,
    generator_adversarial_loss,
    reconstruction_loss,
    weight_penalty,
)
from texinspect.models.fmrnet.memory_bank import (
    MEMORY_FILE,
    build_memory_bank,
    check_memory_capacity,
    load_memory_bank,
    memory_bank_matches,
)
from texinspect.models.fmrnet.network import Discriminator, FMRNet, work_size
from texinspect.models.fmrnet.patches import (
    crop,
    defect_corners,
    extract_patches,
    random_corners,
    shifted_corners,
    stitch,
)
from texinspect.models.fmrnet.restarts import (
    PHASE1,
    read_selection,
    restart_count,
    select_phase1,
    selection_done,
)
from texinspect.outputs import ensure_output_dir
from texinspect.scoring import k_sigma_threshold
from texinspect.training.checkpoint import Checkpointer, load_checkpoint
from texinspect.training.common import TrainData, phase_budgets, prepare_training_data
from texinspect.training.contract import FamilyTrainer, Phase, PhasePlan, run_phases, run_plan, train_family
from texinspect.training.distributed import (
    DDPForward,
    DistContext,
    barrier,
    init_distributed,
    is_main_process,
)
from texinspect.training.loop import PhaseResult, infinite_batches, phase_dir, seed_everything

log = logging.getLogger(__name__)

PHASE2 = "phase2"


# --------------------------------------------------------------------------- helpers


def phase_steps(config: Config) -> tuple[int, int]:
    """The paper's T1, T2 (``fmrnet.phase{1,2}_steps``), capped by ``train.max_steps_phase{1,2}``."""
    t = config.train
    s1 = (
        config.fmrnet.phase1_steps
        if t.max_steps_phase1 <= 0
        else min(config.fmrnet.phase1_steps, t.max_steps_phase1)
    )
    s2 = (
        config.fmrnet.phase2_steps
        if t.max_steps_phase2 <= 0
        else min(config.fmrnet.phase2_steps, t.max_steps_phase2)
    )
    return max(1, s1), max(1, s2)


def _memory_format(config: Config) -> torch.memory_format:
    return torch.channels_last if config.train.channels_last else torch.contiguous_format


def _adam(params: list[nn.Parameter], config: Config) -> torch.optim.Adam:
    return torch.optim.Adam(
        [p for p in params if p.requires_grad], lr=config.fmrnet.lr, betas=(config.fmrnet.adam_beta1, 0.999)
    )


def _params(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def _build_parts(
    config: Config, device: torch.device
) -> tuple[FMRNet, AuxiliaryClassifier | None, Discriminator]:

    fmt = _memory_format(config)
    net = build(config).to(device, memory_format=fmt)
    classifier = AuxiliaryClassifier(config.fmrnet.latent_dim).to(device) if config.fmrnet.use_cmfm else None
    disc = Discriminator(config.data.channels, config.fmrnet.widths).to(device, memory_format=fmt)
    return net, classifier, disc


def _to(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        batch["image"].to(device, non_blocking=True),
        batch["defect"].to(device, non_blocking=True),
        batch["mask"].to(device, non_blocking=True),
    )


def _min_defect_pixels(patch: int) -> int:
    """A window counts as a defect patch (label 0 of C_A) from 1/256 of its area (16 px at 64x64)."""
    return max(1, patch * patch // 256)


class _AdversarialPair:
    """Discriminator update then the generator's adversarial terms (eqs. 11-13)."""

    def __init__(self, disc: Discriminator, opt_d: torch.optim.Optimizer) -> None:
        self.disc = disc
        self.opt_d = opt_d
        self.sync = DDPForward([disc])  # D's gradients averaged over DDP ranks

    def __call__(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss_d, real_feats = self.sync(discriminator_loss, self.disc, real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        adv, info = generator_adversarial_loss(self.disc, real_feats, fake)
        info["d"] = float(loss_d.detach())
        return adv, info


# --------------------------------------------------------------------------- phase 1


class _GeneratorStep:
    """What the steps of both phases hold: the generator, the parts it trains, its optimizer and
    the adversarial pair; a step is the generator's loss through one ``DDPForward``."""

    def __init__(
        self,
        config: Config,
        net: FMRNet,
        adversarial: _AdversarialPair,
        opt_g: torch.optim.Optimizer,
        device: torch.device,
    ) -> None:
        self.cfg = config.fmrnet
        self.fmt = _memory_format(config)
        self.net, self.adv, self.opt_g, self.device = net, adversarial, opt_g, device
        self.gen_modules = self.trained(net)  # their weights enter the weight penalty
        self.sync = DDPForward(self.synced())

    def trained(self, net: FMRNet) -> list[nn.Module]:
        """The generator's parts this phase trains (phase 2's by default)."""
        return generator_modules(net)

    def synced(self) -> list[nn.Module | None]:
        """What the generator's ``DDPForward`` averages gradients over."""
        return list(self.gen_modules)

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        return self.sync.optimize(self.losses, self.opt_g, batch)

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError


class Phase1Step(_GeneratorStep):
    """One step of phase 1: triplets (P0, P+, P-), eq. (15), D update."""

    def __init__(
        self,
        config: Config,
        net: FMRNet,
        classifier: AuxiliaryClassifier | None,
        adversarial: _AdversarialPair,
        opt_g: torch.optim.Optimizer,
        device: torch.device,
    ) -> None:
        self.classifier = classifier
        super().__init__(config, net, adversarial, opt_g, device)

    def trained(self, net: FMRNet) -> list[nn.Module]:
        return [*net.encoder_modules(), *net.decoder_modules(), *net.gfrm_modules()]

    def synced(self) -> list[nn.Module | None]:
        return [*self.gen_modules, self.classifier]

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. (15) and the D update in between; under DDP this runs inside the generator's forward."""
        io, defect, mask = _to(batch, self.device)
        p, n = self.cfg.patch_size, self.cfg.patches_per_image
        b, _, h, w = io.shape
        c0 = random_corners(b * n, h, w, p, io.device)
        if self.cfg.positive_pairing == "shift":  # P+: the window of P0 moved by a few pixels
            c_pos = shifted_corners(c0, h, w, p, self.cfg.positive_shift)
        else:  # "independent": anywhere in the same image
            c_pos = random_corners(b * n, h, w, p, io.device)
        p0 = crop(io, c0, p, n)
        p_pos = crop(io, c_pos, p, n)
        normal = torch.cat([p0, p_pos])
        parts = [normal]
        neg_labels = None
        if self.classifier is not None:
            corners = defect_corners(mask, n, p, self.cfg.defect_patch_fraction)
            parts.append(crop(defect, corners, p, n))
            defect_px = crop(mask, corners, p, n).flatten(1).sum(1)
            neg_labels = (defect_px < _min_defect_pixels(p)).float()  # windows that missed the defect
        x = torch.cat(parts).contiguous(memory_format=self.fmt)
        feats, z = self.net.encode(x)  # one encoder pass: shared BatchNorm statistics
        m = normal.shape[0]
        rec = self.net.decode([f[:m] for f in feats], z[:m])
        target = normal.contiguous(memory_format=self.fmt)
        loss_rec = reconstruction_loss(target, rec, weight_penalty(self.gen_modules), self.cfg.weight_penalty)
        loss_adv, info = self.adv(target, rec)
        loss = self.cfg.loss.rec1 * loss_rec + self.cfg.loss.adv1 * loss_adv
        if self.classifier is not None:
            r0, r_pos = z[: m // 2], z[m // 2 : m]
            loss_lat, lat_info = latent_loss(self.classifier, r0, r_pos, z[m:], neg_labels)
            loss = loss + self.cfg.loss.lat1 * loss_lat
            info.update(lat_info)
        info.update({"rec": float(loss_rec.detach()), "adv": float(loss_adv.detach())})
        return loss, info


def phase1_plan(
    config: Config, data: TrainData, device: torch.device, max_seconds: float, max_steps: int
) -> PhasePlan:
    """Phase 1's networks, optimizers and step, seeded afresh with ``config.seed`` (a restart
    candidate passes its own config, hence its own seed)."""
    seed_everything(config.seed)
    net, classifier, disc = _build_parts(config, device)
    gen = [*net.encoder_modules(), *net.decoder_modules(), *net.gfrm_modules()]
    if classifier is not None:
        gen.append(classifier)
    opt_g = _adam(_params(gen), config)
    opt_d = _adam(list(disc.parameters()), config)
    step = Phase1Step(config, net, classifier, _AdversarialPair(disc, opt_d), opt_g, device)
    modules: dict[str, nn.Module] = {"generator": net, "discriminator": disc}
    if classifier is not None:
        modules["classifier"] = classifier
    return PhasePlan(
        step=step,
        batches=infinite_batches(data.synthetic, config.train.batch_size, config.seed, config.data.num_workers),
        modules=modules,
        optimizers={"g": opt_g, "d": opt_d},
        max_steps=max_steps,
        max_seconds=max_seconds,
        lr_schedule=config.fmrnet.lr_schedule,
        warmup_steps=config.fmrnet.warmup_steps,
    )


# --------------------------------------------------------------------------- phase 2


class Phase2Step(_GeneratorStep):
    """One step of phase 2: I_s patches in, I_o patches as target, eq. (16), D update."""

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. (16) and the D update in between; under DDP this runs inside the generator's forward.

        With the extension's segmenter trained on whole images (``fmrnet.segmenter_training=images``)
        every window of each image is restored and stitched, as at inference, and the segmenter
        learns on the whole image; otherwise on the defect-centred windows."""
        io, defect, mask = _to(batch, self.device)
        whole = self.net.segmenter is not None and self.cfg.segmenter_training == "images"
        source_images = defect if self.cfg.two_phase else io
        if whole:
            p, stride = self.cfg.patch_size, self.cfg.patch_stride
            source, grid = extract_patches(source_images, p, stride)
            target = extract_patches(io, p, stride)[0]
            seg_images, seg_mask, seg_grid = source_images, mask, grid
        else:
            p, n = self.cfg.patch_size, self.cfg.patches_per_image
            corners = defect_corners(mask, n, p, self.cfg.defect_patch_fraction)
            target = crop(io, corners, p, n)
            source = crop(source_images, corners, p, n)
            seg_images, seg_mask, seg_grid = source, crop(mask, corners, p, n), None
        target = target.contiguous(memory_format=self.fmt)
        with torch.no_grad():  # frozen encoder: it must keep matching the memory bank
            feats, z = self.net.encode(source.contiguous(memory_format=self.fmt))
        code = self.net.address(z)[1] if self.net.addressing is not None else z
        rec = self.net.decode(feats, code)
        loss_rec = reconstruction_loss(target, rec, weight_penalty(self.gen_modules), self.cfg.weight_penalty)
        loss_adv, info = self.adv(target, rec)
        loss = self.cfg.loss.rec2 * loss_rec + self.cfg.loss.adv2 * loss_adv
        info.update({"rec": float(loss_rec.detach()), "adv": float(loss_adv.detach())})
        if self.net.segmenter is not None and self.cfg.loss.seg2 > 0:  # extension: pixel segmenter
            seg_recs = rec if seg_grid is None else stitch(rec, seg_grid)[0]
            logits = self.net.segment_logits(seg_images, seg_recs)
            loss_seg = focal_loss(logits, seg_mask, self.cfg.focal_alpha, self.cfg.focal_gamma)
            loss = loss + self.cfg.loss.seg2 * loss_seg
            info["seg"] = float(loss_seg.detach())
        return loss, info


def generator_modules(net: FMRNet) -> list[nn.Module]:
    """What phase 2 trains (encoder frozen): decoder, GFRMs, addressing network, the extension's segmenter."""
    modules = [*net.decoder_modules(), *net.gfrm_modules(), *net.segmenter_modules()]
    if net.addressing is not None:
        modules.append(net.addressing)
    return modules


def load_phase1(
    config: Config, out_dir: str | Path, device: torch.device
) -> tuple[FMRNet, Discriminator, dict[str, Any]]:
    """Generator and discriminator as phase 1 left them (``checkpoints/phase1_end.pt``)."""
    path = Checkpointer(phase_dir(out_dir)).phase_end(PHASE1)
    if not path.exists():
        raise ModelError(
            f"{path}: phase 1 has not finished in {out_dir}; run phase 1 (texinspect train) first"
        )
    payload = load_checkpoint(path)
    net, _, disc = _build_parts(config, device)
    try:
        net.load_state_dict(payload["modules"]["generator"])
        disc.load_state_dict(payload["modules"]["discriminator"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{path}: does not fit the configured FMR-Net ({exc})") from exc
    return net, disc, payload


def phase2_plan(config: Config, out: Path, data: TrainData, device: torch.device) -> PhasePlan:
    """Phase 2 from ``phase1_end.pt`` and ``memory_bank.pt`` (encoder frozen), seeded with ``seed + 1``."""
    net, disc, _ = load_phase1(config, out, device)
    bank = load_memory_bank(out / MEMORY_FILE, config)
    net.set_memory(bank["memory"])
    net.freeze_encoder()
    gen = generator_modules(net)
    opt_g = _adam(_params(gen), config)
    opt_d = _adam(list(disc.parameters()), config)
    step = Phase2Step(config, net, _AdversarialPair(disc, opt_d), opt_g, device)
    _, seconds = phase_budgets(config)
    if seconds > 0:  # the k-means stage spends part of the run's wall-clock budget
        seconds = max(1.0, seconds - float(bank.get("seconds", 0.0)))
    _, steps = phase_steps(config)
    return PhasePlan(
        step=step,
        batches=infinite_batches(data.synthetic, config.train.batch_size, config.seed + 1, config.data.num_workers),
        modules={"generator": net, "discriminator": disc},
        optimizers={"g": opt_g, "d": opt_d},
        max_steps=steps,
        max_seconds=seconds,
        lr_schedule=config.fmrnet.lr_schedule,
        warmup_steps=config.fmrnet.warmup_steps,
    )


def load_phase2(config: Config, out_dir: str | Path, device: torch.device) -> FMRNet:
    path = Checkpointer(phase_dir(out_dir)).phase_end(PHASE2)
    if not path.exists():
        raise ModelError(f"{path}: phase 2 has not finished in {out_dir}")
    payload = load_checkpoint(path)

    net = build(config)
    net.load_state_dict(payload["modules"]["generator"])
    return net.to(device, memory_format=_memory_format(config))


# --------------------------------------------------------------------------- calibration and the whole run


@torch.no_grad()
def calibrate_patch_threshold(
    net: FMRNet, dataset: torch.utils.data.Dataset, k: float, device: torch.device
) -> dict[str, float]:
    """k-sigma threshold over the patch scores of held-out normal images (the early exit's rule)."""
    net.eval()
    scores = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    for batch in loader:
        scores.append(net.patch_scores(batch["image"].to(device)).flatten().cpu())
    s = torch.cat(scores)
    thr = k_sigma_threshold(s, k)
    net.patch_threshold.fill_(thr)
    return {"patch_threshold": thr, "patch_score_mean": float(s.mean()), "patch_score_std": float(s.std())}


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:
    """phase 1 -> memory bank -> phase 2 -> thresholds -> ``OUT/model``; returns the model folder.

    In a DDP job (``WORLD_SIZE`` > 1) every rank calls this; all return ``OUT/model``, which
    rank 0 alone writes.
    """
    return train_family(FMRNetTrainer(config, Path(out_dir), resume))


def train_phase1(
    config: Config, out_dir: str | Path, resume: bool = True, data: TrainData | None = None
) -> PhaseResult:
    """Phase 1 of Algorithm 1 alone; leaves ``checkpoints/phase1_end.pt``.

    With ``fmrnet.phase1_restarts`` > 1 the budget is shared by that many candidates and the best
    by synthetic defects is promoted to ``phase1_end.pt`` (``restarts.py``).
    """
    trainer = FMRNetTrainer(config, ensure_output_dir(out_dir), resume, data)
    trainer.device = init_distributed(config.device).device  # cuda:LOCAL_RANK under DDP
    return run_phases([Phase(PHASE1, trainer.phase1)], trainer.out, resume, config.train)[0]


def train_phase2(
    config: Config, out_dir: str | Path, resume: bool = True, data: TrainData | None = None
) -> PhaseResult:
    """Phase 2 of Algorithm 1 alone, from ``phase1_end.pt`` and ``memory_bank.pt``; leaves ``phase2_end.pt``."""
    trainer = FMRNetTrainer(config, Path(out_dir), resume, data)
    return run_phases([Phase(PHASE2, trainer.phase2)], trainer.out, resume, config.train)[0]


class FMRNetTrainer(FamilyTrainer):
    """FMR-Net's part of the trainer contract (``training.contract``): the networks and steps of
    the two phases, phase 1's restarts, the memory bank between the phases and the patch threshold."""

    family = "fmrnet"

    def __init__(self, config: Config, out: Path, resume: bool = True, data: TrainData | None = None) -> None:
        super().__init__(config, out, resume)
        self.data = data

    def _data(self) -> TrainData:
        if self.data is None:
            self.data = prepare_training_data(self.config, work_size=work_size(self.config.fmrnet, self.config.data.image_size))
        self.val, self.data_info = self.data.val, self.data.info
        return self.data

    def prepare(self, ctx: DistContext) -> None:
        self._data()

    def phases(self) -> list[Phase]:
        return [Phase(PHASE1, self.phase1), Phase(PHASE2, self.bank_then_phase2)]

    def phase1(self, done: list[PhaseResult]) -> PhasePlan:
        """Phase 1, after the restarts' candidates when ``fmrnet.phase1_restarts`` > 1."""
        config, out, device, data = self.config, self.out, self.device, self._data()
        check_memory_capacity(config, len(data.train))  # the bank built after this phase needs L windows
        seconds, _ = phase_budgets(config)
        steps, _ = phase_steps(config)
        resume = self.resume
        if restart_count(config) > 1 and not (resume and selection_done(config, out)):
            def run_candidate(cand: Config, run_dir: Path, name: str, max_seconds: float, max_steps: int) -> PhaseResult:
                plan = phase1_plan(cand, data, device, max_seconds, max_steps)
                return run_plan(name, plan, Checkpointer(phase_dir(run_dir), enabled_resume=resume), cand.train)

            select_phase1(config, out, data, device, run_candidate, seconds, steps, resume=resume)
            resume = True  # phase1_end.pt is the promoted candidate: the phase below returns it as done
        plan = phase1_plan(config, data, device, seconds, steps)
        plan.resume = resume
        return plan

    def bank_then_phase2(self, done: list[PhaseResult]) -> PhasePlan:
        """The memory bank from phase 1's encoder (one k-means, rank 0; reused when it matches), then phase 2."""
        bank_path = self.out / MEMORY_FILE
        phase1_end = Checkpointer(phase_dir(self.out)).phase_end(PHASE1)
        if is_main_process():  # the other ranks load the file after the barrier
            if self.resume and memory_bank_matches(bank_path, phase1_end, self.config):
                log.info("memory bank %s is up to date with phase 1: reused", bank_path)
            else:
                build_memory_bank(self.config, phase1_end, bank_path, images=self._data().train)
        barrier()
        return self.phase2(done)

    def phase2(self, done: list[PhaseResult]) -> PhasePlan:
        seed_everything(self.config.seed + 1)
        self.device = init_distributed(self.config.device).device
        return phase2_plan(self.config, self.out, self._data(), self.device)

    def final_detector(self, results: list[PhaseResult]) -> FMRNet:
        """Phase 2's generator as saved, with the k-sigma patch threshold of the early exit."""
        data = self._data()
        net = load_phase2(self.config, self.out, self.device)
        self.patch_stats = calibrate_patch_threshold(net, data.val, self.config.eval.k_sigma, self.device)
        self.bank = load_memory_bank(self.out / MEMORY_FILE, self.config)
        return net

    def card_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        p1, p2 = results
        return {
            **self.patch_stats,
            "phase1_steps": p1.steps,
            "phase2_steps": p2.steps,
            "memory_codes": int(self.bank.get("n_codes", 0)),
        }

    def summary_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        return {
            "memory_bank": {k: v for k, v in self.bank.items() if k != "memory"},
            "phase1_restarts": read_selection(self.out) if restart_count(self.config) > 1 else None,
            "patch_threshold": self.patch_stats,
        }
