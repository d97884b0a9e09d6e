"""The `prose` LightningModule: the PROSE transformer (operators.prose.model) trained on ODE samples.

Loss 6 · relative squared L² of the trajectory + cross-entropy of the symbols (Liu, Zhang &
Schaeffer 2023; `symbolicregression/trainer.py` of the official code, github.com/felix-lyx/prose,
folder `prose_ode/`). Each step's batch and skeleton corruption come from `workbench.batches`
(seeded by (TrainConfig.seed, step)), so a resumed run sees what an uninterrupted one would.

The data noise is drawn afresh at every step, as the official `enc_dec_step` does: the batch starts
from the CLEAN trajectories u (all T = 192 times) and each sample gets u + σ ε with
ε ~ N(0, I) over its real components and σ = γ ‖u‖₂ / (‖ε‖₂ + 1e-6), norms over the whole
trajectory; the first ``input_len`` points of that noisy trajectory are the input and the rest the
target, so input and target carry one draw. ε of the global batch comes from
``step_rng(seed, step, NOISE_STREAM)``, a stream of its own (rows and corruption keep theirs), so
the draw depends only on (seed, step) and each data-parallel rank keeps its rows of it. γ is the
data's noise level (`data_noise_gamma`: the make-data directory's ``noise_gamma``, else
`operators.odes.NOISE_GAMMA` = 0.02, the official ``--train_noise_gamma``). Validation keeps the
stored noisy copy (noise drawn once at generation), as the official evaluation scores against
noisy data.

Every ``eval_every`` steps (and after the last) the trajectory and symbol losses on the first
``eval_samples`` validation samples, with the test corruption drawn once from seed 42, are
recorded; metrics.nc then also holds ``val_data_loss``, ``val_symbol_loss`` (over
``eval_step``), their final values, the parameter counts per block and ``train_noise_gamma``.

Optimisation follows the official defaults (`parsers.py`, `symbolicregression/optim.py`): AdamW
(0.9, 0.999, eps 1e-8, decoupled weight decay 1e-4), LR linear from 1e-7 to ``lr`` over
``warmup_steps`` then ``lr · sqrt(warmup_steps / step)`` (fairseq's `inverse_sqrt` schedule),
gradient-norm clip 1.0; bf16 autocast on a GPU comes from the harness.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from operators.odes import NOISE_GAMMA
from operators.prose.config import ProseTrainableConfig
from operators.prose.model import ProseModel, ProseOutput, count_parameters, prose_loss
from operators.prose.samples import corrupted_inputs, load_data, make_batch, run_model
from operators.prose.skeleton import SkeletonCorruptor
from operators.prose.tokens import Vocabulary
from workbench.batches import step_loader, step_rng
from workbench.callbacks import PeriodicEvaluation
from workbench.errors import InputError

__all__ = [
    "NOISE_STREAM",
    "TEST_CORRUPTION_SEED",
    "Prose",
    "add_training_noise",
    "data_noise_gamma",
    "forward_losses",
    "inverse_sqrt_lr",
    "training_batch",
]

TEST_CORRUPTION_SEED = 42  # the validation/test skeleton corruption is drawn once, from this seed
NOISE_STREAM = 1  # step_rng(seed, step, NOISE_STREAM) draws the data noise; step_rng(seed, step) rows and corruption
NOISE_EPS = 1e-6  # σ = γ‖u‖ / (‖ε‖ + 1e-6), the official enc_dec_step's additive noise


def data_noise_gamma(config: ProseTrainableConfig) -> float:
    """The noise level γ of the training data: ``noise_gamma`` of the make-data directory
    ``config.data`` (its manifest), else `operators.odes.NOISE_GAMMA`, with which in-process data
    are generated; the stored noisy copies that validation uses have the same level."""
    if not config.data:
        return float(NOISE_GAMMA)
    manifest = Path(config.data) / "manifest.json"
    try:
        return float(json.loads(manifest.read_text(encoding="utf-8"))["data"]["noise_gamma"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{manifest} does not give the data's noise_gamma; rerun make-data to rewrite it") from None


def add_training_noise(clean: np.ndarray, eps: np.ndarray, dim: np.ndarray, gamma: float) -> np.ndarray:
    """clean + σ ε per sample, float32 (the official `enc_dec_step`, ``--noise_type additive``).

    clean and eps are (B, T, d_max), dim (B,). Only a sample's ``dim`` real components get noise
    (padded ones stay 0); σ = γ ‖u‖₂ / (‖ε‖₂ + 1e-6), both norms over all T times and the real
    components, so ‖noise‖₂ ≈ γ ‖u‖₂ for each whole trajectory.
    """
    u = np.asarray(clean, dtype=np.float64)
    real = np.arange(u.shape[2])[None, :] < np.asarray(dim)[:, None]  # (B, d_max)
    eps = np.asarray(eps, dtype=np.float64) * real[:, None, :]
    sigma = gamma * np.linalg.norm(u, axis=(1, 2)) / (np.linalg.norm(eps, axis=(1, 2)) + NOISE_EPS)
    return (u + sigma[:, None, None] * eps).astype(np.float32)


def training_batch(data, rows, symbol_inputs, eps: np.ndarray, *, gamma: float, input_len: int, **batch_args) -> dict:
    """`make_batch` of `rows` with this step's noise: input and target come from
    ``add_training_noise(clean, eps)``, not from the noisy copy stored at generation."""
    rows = np.asarray(rows, dtype=np.int64)
    batch = make_batch(data, rows, symbol_inputs, input_len=input_len, **batch_args)
    noisy = add_training_noise(data.clean[rows], eps, data.dim[rows], gamma)
    batch["data_values"] = torch.from_numpy(np.ascontiguousarray(noisy[:, :input_len]))
    batch["target"] = torch.from_numpy(np.ascontiguousarray(noisy[:, input_len:]))  # the same draw, as the official
    return batch


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
        self.noise_gamma = data_noise_gamma(config)
        self.val_data = val.subset(np.arange(min(config.eval_samples, len(val))))
        # The validation corruption is drawn once, from seed 42 (the official --test_env_seed).
        self.val_inputs = corrupted_inputs(
            self.val_data, range(len(self.val_data)), self.corruptor, np.random.default_rng(TEST_CORRUPTION_SEED)
        )
        self.evaluations: dict[int, tuple[float, float]] = {}  # filled by PeriodicEvaluation

    def draw(self, rng: np.random.Generator, step: int) -> tuple[np.ndarray, list | None, np.ndarray]:
        """The global batch of `step`: sample rows, unless data_only their corrupted skeletons, and
        the standard normal ε (batch, T, d_max) of the data noise, from its own stream."""
        rows = rng.integers(len(self.train_data), size=self.config.batch_size)
        inputs = corrupted_inputs(self.train_data, rows, self.corruptor, rng) if self.with_symbols else None
        shape = (self.config.batch_size, len(self.train_data.t), self.config.d_max)
        eps = step_rng(self.seed, step, NOISE_STREAM).standard_normal(shape)
        return rows, inputs, eps

    def build_batch(self, share: tuple[np.ndarray, list | None, np.ndarray]) -> dict:
        """Tensors of this rank's rows, with this step's data noise (run in the DataLoader's workers)."""
        rows, inputs, eps = share
        return training_batch(
            self.train_data,
            rows,
            inputs,
            eps,
            gamma=self.noise_gamma,
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
        ds["train_noise_gamma"] = ((), float(self.noise_gamma))
        ds["train_noise_gamma"].attrs["description"] = (
            "relative level of the data noise drawn afresh for every training batch (||noise|| = gamma ||u||)"
        )
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
