"""FMR-Net's reconstruction and adversarial losses (eqs. 10-13); the latent loss is in ``cmfm.py``.

Choices (README): the squared error of eq. (10) is the per-pixel mean (a sum over 64x64x3 pixels
would make the weight 100 swamp the other terms by another factor of 12288); the penalty
``eps * sum ||W||_F`` is added literally over the weight tensors being trained; the generator's
GAN term is the non-saturating ``-log D(I_rec)`` (the usual stand-in for minimising
``log(1 - D(I_rec))`` in eq. 12, which has vanishing gradients early on); the discriminator
maximises eq. (12) with its own optimizer on detached reconstructions.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

PERCEPTUAL_WEIGHTS = (0.5, 0.5)  # Psi of eq. (13) for D's blocks 3 and 4


def weight_penalty(modules: Iterable[nn.Module]) -> torch.Tensor:
    """sum of Frobenius norms of the trainable weight tensors (conv kernels, linear matrices)."""
    terms = [
        p.norm()
        for m in modules
        for name, p in m.named_parameters()
        if p.requires_grad and p.dim() > 1 and name.endswith("weight")
    ]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def reconstruction_loss(
    target: torch.Tensor, rec: torch.Tensor, penalty: torch.Tensor, eps: float
) -> torch.Tensor:
    """Eq. (10): mean squared error + eps * sum ||W||_F."""
    return F.mse_loss(rec, target) + eps * penalty.to(rec)


def perceptual_loss(real_feats: list[torch.Tensor], fake_feats: list[torch.Tensor]) -> torch.Tensor:
    """Eq. (13): sum_l Psi_l * mean |D_l(I) - D_l(I_rec)| over D's 3rd and 4th blocks."""
    return sum(
        (
            w * (r.detach() - f).abs().mean()
            for w, r, f in zip(PERCEPTUAL_WEIGHTS, real_feats, fake_feats, strict=True)
        ),
        torch.zeros((), device=fake_feats[0].device),
    )


def discriminator_loss(
    disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """D maximises eq. (12), log D(I) + log(1 - D(I_rec)), written as a BCE to minimise.

    Also returns D's block-3/4 features of the real patches (detached) for the perceptual term,
    so the generator step does not run D on the real patches a second time.
    """
    logit_real, real_feats = disc(real)
    logit_fake, _ = disc(fake.detach())
    loss = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
    loss = loss + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    return loss, [f.detach() for f in real_feats]


def generator_adversarial_loss(
    disc: nn.Module, real_feats: list[torch.Tensor], fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. (11) for the generator: non-saturating GAN term + feature-matching perceptual term."""
    logit_fake, fake_feats = disc(fake)
    gan = F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))
    per = perceptual_loss(real_feats, fake_feats)
    return gan + per, {"gan_g": float(gan.detach()), "per": float(per.detach())}
