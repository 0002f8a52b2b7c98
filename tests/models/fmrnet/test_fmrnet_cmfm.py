"""CMFM: addressing gives convex combinations of memory entries; patch score; latent loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linprog

from texinspect.models.fmrnet.cmfm import (
    AddressingNetwork,
    AuxiliaryClassifier,
    latent_loss,
    nearest_entry_distance,
    read_memory,
)


def test_addressing_output_is_a_convex_combination_of_memory_entries() -> None:
    torch.manual_seed(0)
    dim, size = 8, 12
    net = AddressingNetwork(dim, size)
    memory = torch.randn(size, dim)
    z = torch.randn(5, dim) * 10  # far outside the entries' hull: the read-out must still be inside
    q = net(z)
    assert q.shape == (5, size)
    assert bool((q >= 0).all())
    torch.testing.assert_close(q.sum(dim=1), torch.ones(5))
    z_hat = read_memory(q, memory)
    torch.testing.assert_close(z_hat, torch.einsum("bl,ld->bd", q, memory))
    # membership in the convex hull, checked independently: a feasible LP  M^T w = z_hat, w >= 0, sum w = 1
    m = memory.double().numpy()
    for row in z_hat.detach().double().numpy():
        a_eq = np.vstack([m.T, np.ones((1, size))])
        b_eq = np.concatenate([row, [1.0]])
        res = linprog(np.zeros(size), A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * size, method="highs")
        assert res.status == 0, "read-out is outside the convex hull of the memory entries"


def test_addressing_layers_follow_the_paper() -> None:
    net = AddressingNetwork(256, 512)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(256, 256), (256, 512)]
    cls = AuxiliaryClassifier(256)
    linears = [m for m in cls.modules() if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [512, 256, 1]


def test_nearest_entry_distance_is_the_brute_force_minimum() -> None:
    torch.manual_seed(1)
    memory = torch.randn(7, 4)
    z = torch.randn(6, 4)
    expected = torch.tensor([min(float((zi - mj).norm()) for mj in memory) for zi in z])
    torch.testing.assert_close(nearest_entry_distance(z, memory), expected, rtol=1e-5, atol=1e-5)
    assert float(nearest_entry_distance(memory[:3], memory).abs().max()) == 0.0  # exact, not |z|^2 - 2z.m + |m|^2
    big_memory, codes = torch.randn(2048, 256), torch.randn(49, 256)  # the cpu profile's bank, one 256 px image
    torch.testing.assert_close(nearest_entry_distance(codes, big_memory), torch.cdist(codes, big_memory).amin(dim=1))


def test_latent_loss_is_eq2() -> None:
    torch.manual_seed(2)
    cls = AuxiliaryClassifier(4)
    r0, rp, rn = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    loss, info = latent_loss(cls, r0, rp, rn)
    logits = torch.cat([cls(rp), cls(rn)])
    labels = torch.tensor([1.0, 1, 1, 0, 0, 0])
    p = torch.sigmoid(logits)
    bce = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()  # eq. (3)
    expected = bce + (rp - r0).norm(dim=1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert info["lat_dist"] == pytest.approx(float((rp - r0).norm(dim=1).mean()), rel=1e-5)
    # a "negative" window that missed the defect is labelled normal
    loss2, _ = latent_loss(cls, r0, rp, rn, neg_labels=torch.tensor([1.0, 0, 0]))
    bce2 = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 1, 1, 1, 0, 0]))
    torch.testing.assert_close(loss2, bce2 + (rp - r0).norm(dim=1).mean(), rtol=1e-5, atol=1e-6)
