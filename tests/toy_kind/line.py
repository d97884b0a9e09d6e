"""Fit y = slope·x + noise with a single weight: the smallest model kind a user can bring.

A LightningModule class with a `Config` dataclass attribute and an ``__init__(config, seed)`` is
all the registry needs; the batch stream and the harness come from the workbench.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning.pytorch as pl
import numpy as np
import torch

from workbench.batches import step_loader
from workbench.config import bounds


@dataclass(frozen=True)
class LineConfig:
    slope: float = 2.0
    noise: float = field(default=0.01, metadata=bounds(ge=0))
    batch_size: int = field(default=16, metadata=bounds(ge=1))
    lr: float = field(default=0.1, metadata=bounds(gt=0))


class LineFit(pl.LightningModule):
    """One weight fitted to y = slope·x + noise by SGD."""

    Config = LineConfig

    def __init__(self, config: LineConfig, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def draw(self, rng: np.random.Generator, step: int):
        x = rng.standard_normal(self.config.batch_size)
        y = self.config.slope * x + self.config.noise * rng.standard_normal(self.config.batch_size)
        return torch.from_numpy(x).float(), torch.from_numpy(y).float()

    def train_dataloader(self):
        return step_loader(self, self.draw, batch_size=self.config.batch_size)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.weight * x - y) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.config.lr)
