"""The `prose` LightningModule: the PROSE transformer (operators.prose.model) trained on ODE samples.

Loss 6 · relative squared L² of the trajectory + cross-entropy of the symbols (Liu, Zhang &
Schaeffer 2023; `symbolicregression/trainer.py` of the official code, github.com/felix-lyx/prose,
folder `prose_ode/`). Each step's batch and skeleton corruption come from `workbench.batches`
(seeded by (TrainConfig.seed, step)), so a resumed run sees what an uninterrupted one would. Every
``eval_every`` steps (and after the last) the trajectory and symbol losses on the first
``eval_samples`` validation samples, with the test corruption drawn once from seed 42, are
recorded; metrics.nc then also holds ``val_data_loss``, ``val_symbol_loss`` (over
``eval_step``), their final values and the parameter counts per block.

Optimisation follows the official defaults (`parsers.py`, `symbolicregression/optim.py`): AdamW
(0.9, 0.999, eps 1e-8, decoupled weight decay 1e-4), LR linear from 1e-7 to ``lr`` over
``warmup_steps`` then ``lr · sqrt(warmup_steps / step)`` (fairseq's `inverse_sqrt` schedule),
gradient-norm clip 1.0; bf16 autocast on a GPU comes from the harness.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch

from operators.prose.config import ProseTrainableConfig
from operators.prose.model import ProseModel, ProseOutput, count_parameters, prose_loss
from operators.prose.samples import corrupted_inputs, load_data, make_batch, run_model
from operators.prose.skeleton import SkeletonCorruptor
from operators.prose.tokens import Vocabulary
from workbench.batches import step_loader
from workbench.callbacks import PeriodicEvaluation

__all__ = ["TEST_CORRUPTION_SEED", "Prose", "forward_losses", "inverse_sqrt_lr"]

TEST_CORRUPTION_SEED = 42  # the validation/test skeleton corruption is drawn once, from this seed


def inverse_sqrt_lr(step: int, lr: float, warmup_steps: int, warmup_init_lr: float = 1e-7) -> float:
    """The official `adam_inverse_sqrt`: linear warmup_init_lr -> lr over warmup_steps, then lr·sqrt(warmup/step).

    1e-4 at step 20 000 and 1e-4·sqrt(1/2) ≈ 7.07e-5 at 40 000 with the paper settings.
    """
    if step < warmup_steps:
        return warmup_init_lr + step * (lr - warmup_init_lr) / warmup_steps
    return lr * math.sqrt(warmup_steps / step)


def forward_losses(model, batch: dict):
    """ProseLosses of one batch (the trajectory in float32 for the relative L²)."""
    output = run_model(model, batch, teacher_forcing="symbol_ids" in batch)
    output = ProseOutput(output.trajectory.float(), output.symbol_logits)
    return prose_loss(
        output, batch["target"].float(), batch["dim_mask"], batch.get("target_ids"), pad_id=model.cfg.pad_id
    )


class Prose(pl.LightningModule):
    def __init__(self, config: ProseTrainableConfig, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        self.model = ProseModel(config.model_config())
        self.counts = count_parameters(self.model)
        self.with_symbols = not config.data_only
        self.vocabulary = Vocabulary(max_dim=config.d_max)
        self.corruptor = SkeletonCorruptor(self.vocabulary, config.add_term_prob, config.miss_term_prob)
        self.train_data, val = load_data(config)
        self.val_data = val.subset(np.arange(min(config.eval_samples, len(val))))
        # The validation corruption is drawn once, from seed 42 (the official --test_env_seed).
        self.val_inputs = corrupted_inputs(
            self.val_data, range(len(self.val_data)), self.corruptor, np.random.default_rng(TEST_CORRUPTION_SEED)
        )
        self.evaluations: dict[int, tuple[float, float]] = {}  # filled by PeriodicEvaluation

    def draw(self, rng: np.random.Generator, step: int) -> tuple[np.ndarray, list | None]:
        """The global batch of `step`: sample rows and, unless data_only, their corrupted skeletons."""
        rows = rng.integers(len(self.train_data), size=self.config.batch_size)
        inputs = corrupted_inputs(self.train_data, rows, self.corruptor, rng) if self.with_symbols else None
        return rows, inputs

    def build_batch(self, share: tuple[np.ndarray, list | None]) -> dict:
        """Tensors of this rank's rows (run in the DataLoader's workers)."""
        rows, inputs = share
        return make_batch(
            self.train_data,
            rows,
            inputs,
            input_len=self.config.input_len,
            d_max=self.config.d_max,
            vocabulary=self.vocabulary,
            with_symbols=self.with_symbols,
        )

    def train_dataloader(self):
        return step_loader(
            self,
            self.draw,
            batch_size=self.config.batch_size,
            build=self.build_batch,
            workers=self.config.loader_workers,
        )

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(trajectory loss, symbol loss) on the fixed validation subset, sample-weighted means."""
        was_training = self.model.training
        self.model.eval()
        totals, n = np.zeros(2), len(self.val_data)
        for start in range(0, n, self.config.batch_size):
            rows = np.arange(start, min(n, start + self.config.batch_size))
            batch = make_batch(
                self.val_data,
                rows,
                [self.val_inputs[i] for i in rows],
                input_len=self.config.input_len,
                d_max=self.config.d_max,
                vocabulary=self.vocabulary,
                with_symbols=self.with_symbols,
            )
            batch = {k: v.to(self.device) for k, v in batch.items()}
            losses = forward_losses(self.model, batch)
            sym = float("nan") if losses.symbol is None else float(losses.symbol)
            totals += len(rows) * np.array([float(losses.trajectory), sym])
        self.model.train(was_training)
        return float(totals[0] / n), float(totals[1] / n)

    def configure_callbacks(self):
        return [PeriodicEvaluation(self.config.eval_every)]

    def training_step(self, batch, batch_idx):
        return forward_losses(self.model, batch).total

    def extra_metrics(self, ds):
        """Validation losses and parameter counts, added to metrics.nc (harness hook)."""
        steps = sorted(self.evaluations)
        values = np.asarray([self.evaluations[s] for s in steps], dtype=float).reshape(-1, 2)
        ds = ds.assign_coords(eval_step=np.asarray(steps, dtype=np.int64))
        ds["val_data_loss"] = ("eval_step", values[:, 0])
        ds["val_data_loss"].attrs["description"] = (
            f"relative squared L2 of the trajectory on {len(self.val_data)} fixed validation "
            "samples (noisy targets), after eval_step optimizer steps"
        )
        ds["val_symbol_loss"] = ("eval_step", values[:, 1])
        ds["val_symbol_loss"].attrs["description"] = (
            "teacher-forced token cross-entropy on the same samples, skeleton corruption "
            "drawn once with seed 42; NaN for data_only"
        )
        ds["final_val_data_loss"] = ((), values[-1, 0] if len(values) else np.nan)
        ds["final_val_symbol_loss"] = ((), values[-1, 1] if len(values) else np.nan)
        ds["params"] = ((), np.int64(self.counts["total"]))
        ds["params"].attrs["description"] = "trainable parameters (a tied weight once)"
        for block, count in self.counts.items():
            if block != "total":
                ds[f"params_{block}"] = ((), np.int64(count))
        ds["samples_per_step"] = ((), np.int64(self.config.batch_size))
        return ds

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.config.grad_clip > 0:  # the official gradient-norm clip is 1.0
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)

    def configure_optimizers(self):
        c = self.config
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: inverse_sqrt_lr(step, c.lr, c.warmup_steps, c.warmup_init_lr) / c.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
