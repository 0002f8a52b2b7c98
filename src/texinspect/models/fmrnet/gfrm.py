"""Global feature rearrangement module (GFRM, FMR-Net Sec. III-D, eqs. 6-9).

The skip feature map ``F_D`` of the encoder may carry defect residue straight to the decoder. The
GFRM rebuilds it only from *textons*: the non-overlapping K x K blocks of the memory-generated
feature map ``F`` (the decoder's map at the same scale, upsampled from the memory read-out, so it
holds normal texture only). Every K x K block of ``F_D`` is matched to all textons by cosine
similarity (a stride-K convolution with the normalised textons as filters, eqs. 7-8), the
similarities are softmax-normalised over textons (eq. 6), smoothed by a small convolution on the
similarity map (s -> s*), and the output is the transposed convolution of s* with the textons as
filters (eq. 9), i.e. a convex-like mix of normal textons at every block.

Textons are per sample (each patch rearranges its own memory-generated map). With stride K equal
to the texton size, the convolution and the transposed convolution touch disjoint blocks, so both
are computed exactly as batched matrix products over unfolded blocks (no per-sample conv calls).

Choices where the paper is silent (see README): a softmax temperature (eq. 6 as printed is the
case ``temperature = 1``; cosines lie in [-1, 1], so without a scale the softmax is nearly flat and
every block becomes the mean texton; contextual attention [39], which the GFRM follows, uses 10),
and the similarity-map convolution is one learnable k x k kernel shared by all texton channels
(applied to each s_i alone, initialised to the identity) so that it does not depend on the
number of textons N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


class GFRM(nn.Module):
    def __init__(self, texton_size: int = 2, temperature: float = 10.0, kernel: int = 3) -> None:
        super().__init__()
        if texton_size < 1:
            raise ValueError(f"texton size must be >= 1, got {texton_size}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"similarity-map kernel must be odd and >= 1, got {kernel}")
        self.k = int(texton_size)
        self.temperature = float(temperature)
        self.sim_conv = nn.Conv2d(1, 1, kernel_size=kernel, padding=kernel // 2, bias=False)
        with torch.no_grad():
            self.sim_conv.weight.zero_()
            self.sim_conv.weight[0, 0, kernel // 2, kernel // 2] = 1.0

    def textons(self, memory_map: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, C*K*K) textons, N = (H/K)(W/K), row-major block order."""
        return F.unfold(memory_map, kernel_size=self.k, stride=self.k).transpose(1, 2)

    def similarity(self, skip: torch.Tensor, textons: torch.Tensor) -> torch.Tensor:
        """Eqs. 6-8: softmax over textons of the cosine similarity, (B, N, H/K, W/K)."""
        b, _, h, w = skip.shape
        blocks = F.unfold(skip, kernel_size=self.k, stride=self.k)  # (B, C*K*K, P) with P = (H/K)(W/K)
        blocks = blocks / blocks.norm(dim=1, keepdim=True).clamp_min(EPS)
        tn = textons / textons.norm(dim=2, keepdim=True).clamp_min(EPS)
        d = torch.bmm(tn, blocks)  # (B, N, P): <F_D*, b_i*> at every block
        s = torch.softmax(self.temperature * d, dim=1)
        return s.reshape(b, -1, h // self.k, w // self.k)

    def refine(self, s: torch.Tensor) -> torch.Tensor:
        """s -> s*: the shared convolution applied to every texton's similarity map."""
        b, n, hh, ww = s.shape
        return self.sim_conv(s.reshape(b * n, 1, hh, ww)).reshape(b, n, hh, ww)

    def forward(self, skip: torch.Tensor, memory_map: torch.Tensor) -> torch.Tensor:
        """Rearranged skip map G (B, C, H, W) from ``skip`` = F_D and ``memory_map`` = F."""
        if skip.shape != memory_map.shape:
            raise ValueError(
                f"GFRM needs F_D and F of equal shape, got {tuple(skip.shape)} and {tuple(memory_map.shape)}"
            )
        b, c, h, w = skip.shape
        if h % self.k or w % self.k:
            raise ValueError(f"GFRM feature map {h}x{w} is not divisible by the texton size {self.k}")
        tex = self.textons(memory_map)  # (B, N, C*K*K)
        s_star = self.refine(self.similarity(skip, tex))  # (B, N, H/K, W/K)
        blocks = torch.bmm(tex.transpose(1, 2), s_star.flatten(2))  # (B, C*K*K, P): sum_i s*_i b_i
        return F.fold(blocks, (h, w), kernel_size=self.k, stride=self.k)
