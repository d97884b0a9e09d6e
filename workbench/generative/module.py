"""The LightningModule of the `pfgmpp` and `diffusion` kinds: a denoiser, its EMA and its loss.

The data set lives on the module as a buffer; each step's global batch (sample rows, label
dropout and the training noise: σ and the PFGM++ kernel draw, or t and ε) comes from
`workbench.batches`, seeded by (TrainConfig.seed, step), so a resumed run sees what an
uninterrupted one would, and every rank of a data-parallel run takes its own rows of the same
global draw.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch

from workbench.batches import step_loader, step_rng
from workbench.generative.config import DataAndNet, PFGMPPConfig
from workbench.generative.data import training_data
from workbench.generative.losses import EDMPrecond, diffusion_loss, diffusion_noise, pfgmpp_loss, pfgmpp_noise
from workbench.generative.networks import EMA, make_network

__all__ = ["NULL_LABEL", "Generative"]

NULL_LABEL = 10  # the "no label" class of classifier-free guidance (digits are 0..9)
NOISE_STREAM = 1  # step_rng(seed, step, NOISE_STREAM) draws the noise; step_rng(seed, step) the rows


class Generative(pl.LightningModule):
    def __init__(self, config: DataAndNet, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        data, labels = training_data(config)
        self.register_buffer("data", torch.from_numpy(data), persistent=False)
        self.register_buffer("labels", None if labels is None else torch.from_numpy(labels), persistent=False)
        self.sample_shape = tuple(data.shape[1:])
        self.pfgmpp = isinstance(config, PFGMPPConfig)
        net = make_network(config, self.sample_shape)
        self.sigma_data = config.resolved_sigma_data(data) if self.pfgmpp else math.nan
        self.model = EDMPrecond(net, self.sigma_data) if self.pfgmpp else net
        self.ema = EMA(self.model, config.ema_half_life)
        self.alpha_bar = None if self.pfgmpp else config.alpha_bar()

    def draw(self, rng: np.random.Generator, step: int) -> dict:
        """The global batch of `step`: rows, label dropout and training noise, all batch-first."""
        c = self.config
        rows = rng.integers(0, len(self.data), c.batch_size)
        noise_rng = step_rng(self.seed, step, NOISE_STREAM)
        batch = {"rows": torch.from_numpy(rows)}
        if c.class_conditional:
            batch["drop"] = torch.from_numpy(noise_rng.random(c.batch_size) < c.label_dropout)
        if self.pfgmpp:
            sigma, noise = pfgmpp_noise(noise_rng, c.batch_size, math.prod(self.sample_shape), c.D, clip=c.kernel_clip)
            batch.update(sigma=torch.from_numpy(sigma), noise=torch.from_numpy(noise))
        else:
            generator = torch.Generator().manual_seed(int(noise_rng.integers(2**62)))
            batch["t"], batch["eps"] = diffusion_noise(
                generator, (c.batch_size, *self.sample_shape), len(self.alpha_bar)
            )
        return batch

    def train_dataloader(self):
        return step_loader(self, self.draw, batch_size=self.config.batch_size)

    def training_step(self, batch, batch_idx):
        rows = batch["rows"].to(self.data.device)
        x = self.data[rows]
        labels = None
        if self.config.class_conditional:
            labels = self.labels[rows]
            labels = torch.where(batch["drop"].to(labels.device), torch.full_like(labels, NULL_LABEL), labels)
        if self.pfgmpp:
            return pfgmpp_loss(self.model, x, batch["sigma"], batch["noise"], labels)
        return diffusion_loss(
            self.model, x, self.alpha_bar, self.config.prediction_type, batch["t"], batch["eps"], labels
        )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.ema.update(self.model)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        warmup = max(self.config.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def extra_metrics(self, ds):
        ds["params"] = ((), np.int64(sum(p.numel() for p in self.model.parameters())))
        ds["D"] = ((), float(getattr(self.config, "D", math.nan)))
        ds["sigma_data"] = ((), float(self.sigma_data))  # EDM's σ_data as used (PFGM++ only)
        return ds
