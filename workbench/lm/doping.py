"""Frozen-parameter "doping" (Chatelain et al. 2021, arXiv 2109.11928): MLP hidden units whose
weights are random and never trained.

A doped MLP runs `n_frozen = round(frozen_ratio · mlp_hidden)` frozen hidden units beside the
trainable ones, both paths adding into the block's output:

    y = c_proj(gelu(c_fc x)) + F_proj · gelu(F_fc x),      F_fc, F_proj frozen.

The paper asks whether such spurious parameters change the loss-vs-size law; the claim under
test is that only the trainable count matters. The paper gives no code; this implementation is
ours:

- F_fc and F_proj are *buffers*, not Parameters, so the optimizer, weight decay, mup's
  grouping and base shapes, and `clip_grad_norm_` never see them; they are in `state_dict`, so
  checkpoints and resumes carry them.
- mup never sees buffers, so they are initialised here with std ∝ 1/sqrt(fan_in): the std
  the trainable counterpart gets at the base width, times sqrt(base_width / width) (fan-in ∝
  width for both). A frozen matrix cannot correct a wrong scale by training, so this holds
  under SP as well.
- Each layer draws from its own generator seeded by (frozen_seed, layer), so one config
  always gives the same frozen weights whatever torch's global RNG has done.
- FLOPs: a frozen weight inside the network costs a forward and an input-gradient matmul, 4 FLOPs
  per weight per token, against 6 for a trainable one (which also needs the weight-gradient matmul).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DopedMLP", "frozen_buffers", "frozen_units", "layer_generator"]


def frozen_units(frozen_ratio: float, mlp_hidden: int) -> int:
    """Number of frozen hidden units: round(frozen_ratio · mlp_hidden)."""
    return int(round(frozen_ratio * mlp_hidden))


def layer_generator(frozen_seed: int, layer: int) -> torch.Generator:
    """A CPU generator for one layer's frozen weights, independent of torch's global RNG."""
    seed = int(np.random.SeedSequence([frozen_seed, layer]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device="cpu").manual_seed(seed)


class DopedMLP(nn.Module):
    """The trainable MLP (`c_fc`, `c_proj`: dense or structured) plus `n_frozen` frozen units."""

    def __init__(
        self,
        c_fc: nn.Module,
        c_proj: nn.Module,
        width: int,
        n_frozen: int,
        *,
        frozen_seed: int,
        layer: int,
        std_fc: float,
        std_proj: float,
    ):
        super().__init__()
        self.c_fc, self.c_proj = c_fc, c_proj
        self.frozen_seed, self.layer = frozen_seed, layer
        self.std_fc, self.std_proj = std_fc, std_proj
        self.register_buffer("frozen_fc", torch.empty(n_frozen, width))  # (fan_out, fan_in), as nn.Linear
        self.register_buffer("frozen_proj", torch.empty(width, n_frozen))
        if self.frozen_fc.device.type != "meta":  # base-shape models are built on meta: no values
            self.reset_frozen()

    @torch.no_grad()
    def reset_frozen(self) -> None:
        """Draw F_fc, F_proj from this layer's own generator (the same values on every call)."""
        g = layer_generator(self.frozen_seed, self.layer)
        for buffer, std in ((self.frozen_fc, self.std_fc), (self.frozen_proj, self.std_proj)):
            values = torch.randn(buffer.shape, generator=g, dtype=torch.float32, device="cpu") * std
            buffer.copy_(values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trainable = self.c_proj(F.gelu(self.c_fc(x)))
        frozen = F.linear(F.gelu(F.linear(x, self.frozen_fc)), self.frozen_proj)
        return trainable + frozen

    def extra_repr(self) -> str:
        return f"frozen_units={self.frozen_fc.shape[0]}, frozen_seed={self.frozen_seed}, layer={self.layer}"


def frozen_buffers(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every frozen doping weight in `model`."""
    for prefix, module in model.named_modules():
        if isinstance(module, DopedMLP):
            for name in ("frozen_fc", "frozen_proj"):
                yield f"{prefix}.{name}" if prefix else name, getattr(module, name)
