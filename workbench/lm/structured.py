"""Structured transforms that can stand in for the GPT's dense MLP matrices: Monarch.

A Monarch matrix (Dao et al. 2022, "Monarch: Expressive Structured Matrices for Efficient and
Accurate Training", §3) is a product of two block-diagonal matrices with a fixed permutation
between them,

    M = L · P · R,      R = diag(R_1 .. R_b),  L = diag(L_1 .. L_b),

where P is the block-transpose permutation: the middle vector z (b blocks of m) is read as an
(m, b) array and transposed, so the k-th block fed to L is z[k::b], one entry from every block
of R's output as long as m >= b. The paper's outer permutations only relabel inputs and
outputs and are left out. With `mid = min(n_in, n_out)` (as in the paper's rectangular layers)
the layer has `mid · (n_in + n_out) / b` parameters instead of `n_in · n_out`.

muP (as microsoft/mup implements it): the block weights are stored as (blocks, out_block, in_block).
With the number of blocks fixed across widths, both block sizes scale with width while the leading
dim stays finite, so mup's infshape sees a hidden matrix (ninf = 2) whose main (last) dim is the
fan-in; MuAdamW divides its lr by width_mult and `mup.init` divides its std by sqrt(width_mult), as
for a dense hidden matrix.

`monarch_size_error` works on plain integers, so configs can validate before a model is built.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from workbench.lm.config import monarch_size_error

__all__ = ["MonarchLinear", "block_transpose", "monarch_size_error"]


def block_transpose(z: torch.Tensor, blocks: int) -> torch.Tensor:
    """P: the last dim (blocks × m, block-major) → blocks of z[k::blocks], as (..., blocks, m)."""
    m = z.shape[-1] // blocks
    return z.reshape(*z.shape[:-1], m, blocks).transpose(-1, -2)


class MonarchLinear(nn.Module):
    """y = L · P · R · x, bias-free, with R and L stored as (blocks, out_block, in_block)."""

    def __init__(self, in_features: int, out_features: int, blocks: int):
        super().__init__()
        problem = monarch_size_error(blocks, in_features=in_features, out_features=out_features)
        if problem:
            raise ValueError(problem)
        mid = min(in_features, out_features)
        self.in_features, self.out_features, self.mid, self.blocks = in_features, out_features, mid, blocks
        self.r_blocks = nn.Parameter(torch.empty(blocks, mid // blocks, in_features // blocks))
        self.l_blocks = nn.Parameter(torch.empty(blocks, out_features // blocks, mid // blocks))
        if self.r_blocks.device.type != "meta":
            self.reset_parameters(1.0 / math.sqrt(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.blocks
        h = x.reshape(*x.shape[:-1], b, self.in_features // b)
        h = torch.einsum("...ki,koi->...ko", h, self.r_blocks)  # block-diagonal R
        h = block_transpose(h.flatten(-2), b)  # P
        h = torch.einsum("...ki,koi->...ko", h, self.l_blocks)  # block-diagonal L
        return h.flatten(-2)

    def factor_stds(self, std: float, width_mult: float = 1.0) -> tuple[float, float]:
        """(std of R, std of L) at `width_mult` = 1 that make M's entries have variance std².

        R is variance-preserving (std 1/sqrt(in_block), i.e. ∝ 1/sqrt(fan_in)). Each input reaches
        each output through mid_block / b middle units, so Var(M_ij) = (m/b)·σ_L²·σ_R²; σ_L
        carries the dense layer's std. Both are returned for the base width (sizes ÷
        width_mult) so `mup.init` can apply the width scaling, as for dense hidden matrices.
        """
        b = self.blocks
        in_block = self.in_features / b / width_mult
        mid_block = self.mid / b / width_mult
        std_r = 1.0 / math.sqrt(in_block)
        std_l = std * math.sqrt(b / mid_block) / std_r
        return std_r, std_l

    @torch.no_grad()
    def reset_parameters(self, std: float) -> None:
        """Plain torch init so the materialised matrix has N(0, std²)-like entries (no muP)."""
        std_r, std_l = self.factor_stds(std)
        nn.init.normal_(self.r_blocks, std=std_r)
        nn.init.normal_(self.l_blocks, std=std_l)

    def dense(self) -> torch.Tensor:
        """The (out_features, in_features) matrix M, materialised by applying the layer to I."""
        eye = torch.eye(self.in_features, dtype=self.r_blocks.dtype, device=self.r_blocks.device)
        return self.forward(eye).T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, blocks={self.blocks}"
