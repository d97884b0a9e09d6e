"""The Lightning training harness that every model kind runs through.

    result = train(MLPRegressionConfig(width=64), TrainConfig(max_steps=200), run_dir)

The model comes from the registry (`workbench.registry`): `kind` names it, or the config's type
does. What the harness guarantees, whatever the model:
  - accelerator and precision are chosen automatically (bf16 on a GPU that supports it);
  - ``checkpoints/last.ckpt`` is written every ``checkpoint_every`` steps, atomically, and a
    later call resumes from it (this is how a preempted or timed-out job continues);
  - a non-finite loss stops training; last.ckpt keeps the last good state and
    NonFiniteLossError is raised;
  - runs are seeded and, on CPU, bit-for-bit repeatable: a resumed run ends with exactly the
    weights of an uninterrupted one;
  - on SLURM (detected from the environment) Lightning reads ranks from SLURM but never
    requeues: submitit owns requeue (its USR2 handler), Lightning only resumes.

`TrainConfig` is read by `workbench jobs submit` on the submitting machine, so this module imports
torch and Lightning only when `train` runs (about 15 s); the callbacks live in
`workbench.callbacks`.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.registry import get_trainable, trainable_for
from workbench.store import atomic_write_bytes

__all__ = ["LOGGERS", "NonFiniteLossError", "TrainConfig", "load_weights", "train"]

# train.loggers: what each writes under <run dir>/logs/, and the package it needs (None: Lightning's own)
LOGGERS = {
    "csv": ("logs/csv/metrics.csv (step,metric,value rows)", None),
    "tensorboard": ("logs/tensorboard/ (event files)", ("tensorboard", "tensorboardX")),
    "wandb": ("logs/wandb/ (offline; `wandb sync` uploads it)", ("wandb",)),
}

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
    # Live scalars for the tools researchers watch (the same values that go into metrics.nc, which
    # stays the record the analysis reads): any of csv, tensorboard, wandb (offline); [] for none.
    loggers: tuple[str, ...] = ("csv",)

    def __post_init__(self) -> None:
        import importlib.util

        for name in self.loggers:
            if name not in LOGGERS:
                raise ConfigError(f"train.loggers: unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
            needs = LOGGERS[name][1]
            if needs and not any(importlib.util.find_spec(package) for package in needs):
                raise ConfigError(f"train.loggers: {name} needs the {needs[0]} package (pip install {needs[0]})")
        if len(set(self.loggers)) != len(self.loggers):
            raise ConfigError(f"train.loggers: {list(self.loggers)} names a logger twice")


# --------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------


def train(
    model_config: Any,
    config: TrainConfig,
    run_dir: Any,
    *,
    kind: str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
) -> dict[str, Any]:
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

    from workbench import callbacks

    trainable = get_trainable(kind) if kind else trainable_for(model_config)
    torch.set_num_threads(config.cpu_threads)
    on_gpu = config.accelerator == "gpu" or (config.accelerator == "auto" and torch.cuda.is_available())
    precision = config.precision if config.precision != "auto" else _auto_precision(on_gpu)

    last = Path(run_dir.checkpoints) / LAST_CHECKPOINT
    resume_from = last if last.is_file() else None
    # Seed before building so a fresh run's initial weights depend on the seed only; a resumed
    # run's weights come from the checkpoint instead.
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = trainable.build(model_config, config.seed)

    guard = callbacks.NonFiniteGuard()
    resolved = {"kind": trainable.name, "model": model_config, "train": config}
    recorder = callbacks.MetricsRecorder(Path(run_dir.metrics_path), config.log_every, config=resolved)
    saver = callbacks.PeriodicCheckpoint(last, config.checkpoint_every, guard, recorder)
    # Only inside a SLURM allocation: an unconditional SLURMEnvironment raises outside one, and
    # auto_requeue=False because submitit's USR2 handler requeues.
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
        callbacks=[guard, recorder, saver, callbacks.InterruptCheck()],
        plugins=plugins,
        logger=_loggers(config.loggers, Path(run_dir.path)) or False,
        enable_checkpointing=False,  # PeriodicCheckpoint writes last.ckpt, atomically
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir.path),
        use_distributed_sampler=False,  # each rank takes its share of the batch (workbench.batches)
        num_sanity_val_steps=0,
    )
    startup_s, start = process_age_s(), time.time()
    trainer.fit(module, ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
    # Where a short run's time goes: the process's start-up (interpreter, imports, data, model)
    # against this leg's training, in metrics.nc.
    recorder.timing = {"startup_s": startup_s, "train_s": time.time() - start}

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
        kept = (
            f"last good checkpoint: step {_checkpoint_step(last)} ({last})"
            if last.is_file()
            else "no checkpoint was saved before it"
        )
        raise NonFiniteLossError(f"loss became non-finite at step {guard.tripped_at} in {run_dir.path}; {kept}")
    return summary


def process_age_s() -> float:
    """Seconds since this process started: Linux's /proc start time (field 22 of
    /proc/self/stat, in clock ticks since boot) against the uptime; NaN elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _loggers(names, run_path: Path) -> list:
    """Lightning loggers under <run dir>/logs/; MetricsRecorder feeds them (`callbacks`)."""
    import warnings

    from lightning.pytorch import loggers

    from workbench.callbacks import CSVLog

    logs = run_path / "logs"
    made = []
    with warnings.catch_warnings():  # a resumed run finds its own log directory: expected, it appends
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        for name in names:
            if name == "csv":
                made.append(CSVLog(logs / "csv"))
            elif name == "tensorboard":
                made.append(loggers.TensorBoardLogger(logs, name="tensorboard", version="", default_hp_metric=False))
            elif name == "wandb":
                made.append(loggers.WandbLogger(save_dir=str(logs), name=run_path.name, offline=True))
    return made


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

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_weights(run_dir: Any) -> dict[str, Any]:
    """The final weights a completed run saved (``model.pt``), read with weights_only=True."""
    import torch

    return torch.load(Path(run_dir.path) / FINAL_WEIGHTS, weights_only=True, map_location="cpu")
