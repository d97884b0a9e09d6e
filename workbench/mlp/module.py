"""The `mlp_regression` LightningModule: a tanh MLP on a fixed synthetic data set.

Each step's global batch is drawn by `workbench.batches` from (TrainConfig.seed, step), so the data
a step sees depend neither on where a run was interrupted nor on how many processes share it.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from workbench.batches import step_loader
from workbench.mlp.config import MLPRegressionConfig

__all__ = ["MLPRegression"]


class MLPRegression(pl.LightningModule):
    def __init__(self, config: MLPRegressionConfig, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        layers, width_in = [], config.in_features
        for _ in range(config.depth):
            layers += [nn.Linear(width_in, config.width), nn.Tanh()]
            width_in = config.width
        self.net = nn.Sequential(*layers, nn.Linear(width_in, 1))
        self.x, self.y = self.make_data(config)

    @staticmethod
    def make_data(config: MLPRegressionConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y): n_samples points of y = sin(x·a) + (x·b)²/2 + noise, fixed by data_seed."""
        g = torch.Generator().manual_seed(config.data_seed)
        n, d = config.n_samples, config.in_features
        x = torch.randn(n, d, generator=g)
        a, b = torch.randn(d, generator=g) / d**0.5, torch.randn(d, generator=g) / d**0.5
        y = torch.sin(x @ a) + 0.5 * (x @ b) ** 2 + config.noise * torch.randn(n, generator=g)
        return x, y

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def draw(self, rng: np.random.Generator, step: int) -> np.ndarray:
        """The rows of the global batch of `step`."""
        return rng.integers(len(self.x), size=self.config.batch_size)

    def rows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(rows)
        return self.x[index], self.y[index]

    def train_dataloader(self):
        return step_loader(self, self.draw, batch_size=self.config.batch_size, build=self.rows)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if self.config.step_time_s:
            time.sleep(self.config.step_time_s)
        return loss

    def configure_optimizers(self):
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.config.lr)
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)
