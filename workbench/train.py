"""The Lightning training harness that every model family runs through, and its trainable registry.

A *trainable* is a frozen config dataclass plus a function that builds a LightningModule from it.
Model families register theirs here; `jobs` finds them by name (`kind`) and never imports a
model directly::

    register_trainable("mlp_regression", MLPRegressionConfig, build_mlp_regression, "tiny MLP ...")
    result = train(MLPRegressionConfig(width=64), TrainConfig(max_steps=200), run_dir)

What the harness guarantees, whatever the model:
  - accelerator and precision are chosen automatically (bf16 on a GPU that supports it);
  - ``checkpoints/last.ckpt`` is written every ``checkpoint_every`` steps, atomically, and a
    later call resumes from it (this is how a preempted or timed-out job continues);
  - a non-finite loss stops training; last.ckpt keeps the last good state and
    NonFiniteLossError is raised;
  - runs are seeded and, on CPU, bit-for-bit repeatable: a resumed run ends with exactly the
    weights of an uninterrupted one;
  - on SLURM (detected from the environment) Lightning reads ranks from SLURM but never
    requeues: submitit owns requeue, Lightning only resumes (DESIGN.md, "SLURM").

This module imports torch and Lightning only inside functions, so configs can be loaded and
validated (e.g. by `workbench jobs submit`) without paying ~15 s of imports.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.config import bounds
from workbench.errors import ConfigError

__all__ = [
    "MLPRegressionConfig",
    "NonFiniteLossError",
    "TRAINABLES",
    "TrainConfig",
    "Trainable",
    "get_trainable",
    "load_weights",
    "register_trainable",
    "train",
]

LAST_CHECKPOINT = "last.ckpt"
FINAL_WEIGHTS = "model.pt"


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite; last.ckpt holds the last good state."""


@dataclass(frozen=True)
class TrainConfig:
    """Harness settings shared by every model family (devices and nodes come from the JobSpec)."""

    max_steps: int = field(default=200, metadata=bounds(ge=1))
    checkpoint_every: int = field(default=20, metadata=bounds(ge=1))
    log_every: int = field(default=1, metadata=bounds(ge=1))
    seed: int = 0
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    # Fixed rather than "all cores": CPU matmuls split work by thread, so a different thread
    # count on a different node would change the rounding and break exact resume/equality.
    cpu_threads: int = field(default=1, metadata=bounds(ge=1))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trainable:
    """A model family the harness can train: its config type and a LightningModule builder."""

    name: str
    config_type: type
    # (config, seed) -> LightningModule. The harness seeds torch before calling it (initial
    # weights); `seed` is for whatever else the model draws, such as batch order.
    build: Callable[[Any, int], Any]
    description: str = ""
    # config -> None; raises InputError for what a config cannot say about itself (a data file
    # that is missing or too short, a base-shape file for another model). `jobs` calls it
    # before submitting, so the user hears at once, not from a failed job's log.
    preflight: Callable[[Any], None] | None = None


TRAINABLES: dict[str, Trainable] = {}


def register_trainable(name: str, config_type: type, build: Callable[[Any, int], Any],
                       description: str = "", preflight: Callable[[Any], None] | None = None) -> Trainable:
    """Make a model family trainable by name (`kind: NAME` in a job config)."""
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        raise TypeError(f"trainable {name!r}: config_type must be a dataclass type")
    if name in TRAINABLES and TRAINABLES[name].config_type is not config_type:
        raise ValueError(f"trainable {name!r} is already registered with another config type")
    TRAINABLES[name] = Trainable(name, config_type, build, description, preflight)
    return TRAINABLES[name]


def get_trainable(name: str) -> Trainable:
    try:
        return TRAINABLES[name]
    except KeyError:
        raise ConfigError(f"unknown trainable kind {name!r}; registered kinds: "
                          f"{', '.join(sorted(TRAINABLES))}") from None


# --------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------


def train(model_config: Any, config: TrainConfig, run_dir: Any, *, kind: str | None = None,
          devices: int = 1, num_nodes: int = 1) -> dict[str, Any]:
    """Train `model_config`'s model in `run_dir` (a store.RunDir), resuming from last.ckpt.

    `kind` names the registered trainable (default: the one registered for the config's type).
    `devices` and `num_nodes` are the processes per node and nodes (the JobSpec's
    tasks_per_node and nodes); more than one process trains with DDP (gloo on CPU).

    Writes ``checkpoints/last.ckpt`` (periodically and at the end), ``metrics.nc`` (loss per
    step; status) and ``model.pt`` (final weights, a plain state_dict). Returns a summary dict.
    Raises NonFiniteLossError if the loss became non-finite.
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    trainable = get_trainable(kind) if kind else _trainable_for(model_config)
    torch.set_num_threads(config.cpu_threads)
    on_gpu = config.accelerator == "gpu" or (config.accelerator == "auto" and torch.cuda.is_available())
    precision = config.precision if config.precision != "auto" else _auto_precision(on_gpu)

    last = Path(run_dir.checkpoints) / LAST_CHECKPOINT
    resume_from = last if last.is_file() else None
    # Seed before building so a fresh run's initial weights depend on the seed only; a resumed
    # run's weights come from the checkpoint instead.
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = trainable.build(model_config, config.seed)

    callbacks = _callbacks()
    guard = callbacks.NonFiniteGuard()
    recorder = callbacks.MetricsRecorder(Path(run_dir.metrics_path), config.log_every)
    saver = callbacks.PeriodicCheckpoint(last, config.checkpoint_every, guard, recorder)
    # Only inside a SLURM allocation: an unconditional SLURMEnvironment raises outside one, and
    # auto_requeue=False because submitit's USR2 handler requeues (DESIGN.md, "SLURM").
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    trainer = pl.Trainer(
        accelerator="gpu" if on_gpu else "cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp" if devices * num_nodes > 1 else "auto",
        precision=precision,
        max_steps=config.max_steps,
        max_epochs=-1,
        deterministic=not on_gpu,  # GPU kernels lack deterministic versions for some ops
        callbacks=[guard, recorder, saver],
        plugins=plugins,
        logger=False,
        enable_checkpointing=False,  # PeriodicCheckpoint writes last.ckpt, atomically
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir.path),
        use_distributed_sampler=False,  # trainables split each global batch by rank themselves
        num_sanity_val_steps=0,
    )
    start = time.time()
    trainer.fit(module, ckpt_path=str(resume_from) if resume_from else None, weights_only=True)

    status = "nonfinite" if guard.tripped_at is not None else "completed"
    if status == "completed":
        saver.save(trainer)
        if trainer.is_global_zero:
            _save_weights(module, Path(run_dir.path) / FINAL_WEIGHTS)
    if trainer.is_global_zero:
        recorder.write(status)
    trainer.strategy.barrier("workbench.train.end")
    summary = {
        "kind": trainable.name,
        "run_dir": str(run_dir.path),
        "status": status,
        "steps": int(trainer.global_step),
        "final_loss": recorder.losses[-1] if recorder.losses else float("nan"),
        "resumed_from_step": recorder.start_step if resume_from else None,
        "precision": precision,
        "world_size": int(trainer.world_size),
        "wall_time_s": time.time() - start,
    }
    if status == "nonfinite":
        kept = (f"last good checkpoint: step {_checkpoint_step(last)} ({last})" if last.is_file()
                else "no checkpoint was saved before it")
        raise NonFiniteLossError(f"loss became non-finite at step {guard.tripped_at} in "
                                 f"{run_dir.path}; {kept}")
    return summary


def _trainable_for(model_config: Any) -> Trainable:
    for trainable in TRAINABLES.values():
        if type(model_config) is trainable.config_type:
            return trainable
    raise ConfigError(f"no trainable is registered for {type(model_config).__name__}")


def _checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])


def _auto_precision(on_gpu: bool) -> str:
    import torch

    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _save_weights(module: Any, path: Path) -> None:
    import torch

    from workbench.store import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_weights(run_dir: Any) -> dict[str, Any]:
    """The final weights a completed run saved (``model.pt``), read with weights_only=True."""
    import torch

    return torch.load(Path(run_dir.path) / FINAL_WEIGHTS, weights_only=True, map_location="cpu")


# --------------------------------------------------------------------------------------------
# Harness callbacks. Classes that subclass Lightning's Callback are defined on first use, so
# that importing this module stays free of torch and Lightning.
# --------------------------------------------------------------------------------------------


def _loss_of(outputs: Any):
    return outputs["loss"] if isinstance(outputs, dict) else outputs


@functools.lru_cache(maxsize=None)
def _callbacks() -> types.SimpleNamespace:
    import numpy as np
    import torch
    import xarray as xr
    from lightning.pytorch.callbacks import Callback

    from workbench.store import atomic_write_netcdf

    class NonFiniteGuard(Callback):
        """Stops training at the first non-finite loss on any rank (all ranks stop together)."""

        def __init__(self) -> None:
            self.tripped_at: int | None = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = _loss_of(outputs)
            bad = loss is None or not bool(torch.isfinite(loss.detach()).all())
            # Every rank must agree, or one rank would stop while the others wait in allreduce.
            if trainer.strategy.reduce_boolean_decision(bad, all=False):
                self.tripped_at = int(trainer.global_step)
                trainer.should_stop = True

    class MetricsRecorder(Callback):
        """Loss per step (mean over ranks), kept in the checkpoint so a resumed run continues it.

        A model family adds its own variables (validation loss, parameter counts) by giving its
        LightningModule an `extra_metrics(ds) -> ds` method; it is applied on every write.
        """

        def __init__(self, path: Path, every: int) -> None:
            self.path, self.every = path, every
            self.steps: list[int] = []
            self.losses: list[float] = []
            self.start_step = 0
            self.module = None

        def on_train_start(self, trainer, pl_module) -> None:
            self.start_step = int(trainer.global_step)
            self.module = pl_module

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = int(trainer.global_step)
            if step % self.every and step != trainer.max_steps:
                return
            loss = _loss_of(outputs)
            value = float("nan") if loss is None else float(
                trainer.strategy.reduce(loss.detach().float(), reduce_op="mean"))
            self.steps.append(step)
            self.losses.append(value)

        def state_dict(self) -> dict[str, Any]:
            return {"steps": list(self.steps), "losses": list(self.losses)}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.steps = [int(s) for s in state_dict["steps"]]
            self.losses = [float(v) for v in state_dict["losses"]]

        def write(self, status: str) -> None:
            losses = np.asarray(self.losses, dtype=float)
            ds = xr.Dataset(
                {"loss": ("step", losses),
                 "final_loss": ((), losses[-1] if losses.size else np.nan),
                 "steps_done": ((), self.steps[-1] if self.steps else 0),
                 "status": ((), status)},
                coords={"step": np.asarray(self.steps, dtype=np.int64)})
            ds["loss"].attrs["description"] = "training loss (global-batch mean) after the step"
            extra = getattr(self.module, "extra_metrics", None)
            atomic_write_netcdf(extra(ds) if extra is not None else ds, self.path)

    class PeriodicCheckpoint(Callback):
        """Writes last.ckpt every `every` steps: to a temp file, then os.replace.

        Lightning's ModelCheckpoint writes in place, so a job killed mid-save (a timeout's
        SIGKILL) could leave a truncated last.ckpt and nothing to resume from.
        """

        def __init__(self, path: Path, every: int, guard, recorder) -> None:
            self.path, self.every, self.guard, self.recorder = path, every, guard, recorder

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step % self.every == 0 and self.guard.tripped_at is None:
                self.save(trainer)
                if trainer.is_global_zero:
                    self.recorder.write("running")

        def save(self, trainer) -> None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            # A collective: every rank calls it, rank 0 writes. weights_only=False keeps the
            # optimizer and loop state that an exact resume needs.
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
            trainer.strategy.barrier("workbench.checkpoint")

    return types.SimpleNamespace(NonFiniteGuard=NonFiniteGuard, MetricsRecorder=MetricsRecorder,
                                 PeriodicCheckpoint=PeriodicCheckpoint)


# --------------------------------------------------------------------------------------------
# A tiny real trainable: MLP regression on a synthetic smooth function
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPRegressionConfig:
    """An MLP fitted to y = sin(x·a) + (x·b)²/2 + noise, x ~ N(0, I); small enough for CI.

    Each step's global batch is drawn from a generator seeded by (TrainConfig.seed, step), so the data a
    step sees does not depend on where a run was interrupted, nor on how many processes share
    the batch (rank r of w takes rows r, r+w, ...).
    """

    in_features: int = field(default=4, metadata=bounds(ge=1))
    width: int = field(default=32, metadata=bounds(ge=1))
    depth: int = field(default=2, metadata=bounds(ge=1))
    n_samples: int = field(default=512, metadata=bounds(ge=1))
    batch_size: int = field(default=32, metadata=bounds(ge=1))
    noise: float = field(default=0.05, metadata=bounds(ge=0))
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = field(default=1e-2, metadata=bounds(gt=0))
    data_seed: int = 0
    # Pause after each step: makes the tiny model as slow as a real one, so preemption and
    # timeouts can be exercised (tests, try-outs). It does not change any number.
    step_time_s: float = field(default=0.0, metadata=bounds(ge=0, le=60))


def build_mlp_regression(config: MLPRegressionConfig, seed: int):
    return _mlp_module_class()(config, seed)


@functools.lru_cache(maxsize=None)
def _mlp_module_class():
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class StepBatches(torch.utils.data.IterableDataset):
        """Yields this rank's share of the global batch for steps start, start+1, ..."""

        def __init__(self, x, y, batch_size: int, seed: int, start: int, rank: int, world: int):
            super().__init__()
            self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
            self.start, self.rank, self.world = start, rank, world

        def __iter__(self):
            step = self.start
            while True:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
                rows = torch.randint(len(self.x), (self.batch_size,), generator=g)[self.rank::self.world]
                yield self.x[rows], self.y[rows]
                step += 1

    class MLPRegression(pl.LightningModule):
        def __init__(self, config: MLPRegressionConfig, seed: int) -> None:
            super().__init__()
            self.config, self.seed = config, seed
            layers, width_in = [], config.in_features
            for _ in range(config.depth):
                layers += [nn.Linear(width_in, config.width), nn.Tanh()]
                width_in = config.width
            self.net = nn.Sequential(*layers, nn.Linear(width_in, 1))

        def forward(self, x):
            return self.net(x).squeeze(-1)

        def _data(self):
            g = torch.Generator().manual_seed(self.config.data_seed)
            n, d = self.config.n_samples, self.config.in_features
            x = torch.randn(n, d, generator=g)
            a, b = torch.randn(d, generator=g) / d**0.5, torch.randn(d, generator=g) / d**0.5
            y = torch.sin(x @ a) + 0.5 * (x @ b) ** 2 + self.config.noise * torch.randn(n, generator=g)
            return x, y

        def train_dataloader(self):
            world, rank = self.trainer.world_size, self.trainer.global_rank
            if self.config.batch_size % world:
                raise ValueError(f"batch_size {self.config.batch_size} is not divisible by the "
                                 f"{world} training processes")
            x, y = self._data()
            # Lightning restores global_step before it asks for the data, so a resumed run
            # continues with the batch of the step it stopped at.
            batches = StepBatches(x, y, self.config.batch_size, self.seed,
                                  int(self.trainer.global_step), rank, world)
            return torch.utils.data.DataLoader(batches, batch_size=None)

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

    return MLPRegression


register_trainable("mlp_regression", MLPRegressionConfig, build_mlp_regression,
                   "tiny MLP regression on a synthetic smooth function (CPU, seconds)")

# Model families that register themselves on import (kept last: they import this module).
import workbench.lm.trainable  # noqa: E402,F401  - registers "gpt_lm"
import operators.prose.trainable  # noqa: E402,F401  - registers "prose"
import workbench.generative.trainable  # noqa: E402,F401  - registers "pfgmpp" and "diffusion"
