"""The harness's Lightning callbacks: non-finite guard, metrics recorder, atomic last.ckpt,
noted Ctrl-C.

`workbench.train.train` attaches all four to every run, whatever the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from workbench import interrupts
from workbench.provenance import with_provenance
from workbench.store import atomic_write_netcdf, atomic_write_text

__all__ = ["InterruptCheck", "MetricsRecorder", "NonFiniteGuard", "PeriodicCheckpoint", "PeriodicEvaluation"]


def _loss_of(outputs: Any):
    return outputs["loss"] if isinstance(outputs, dict) else outputs


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


class InterruptCheck(Callback):
    """Stops training at the next step after a Ctrl-C whose KeyboardInterrupt was swallowed
    (raised inside a weakref callback or a ``__del__``; see `workbench.interrupts`)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        interrupts.raise_if_requested()


class MetricsRecorder(Callback):
    """Loss per step (mean over ranks), kept in the checkpoint so a resumed run continues it.

    A model family adds its own variables (validation loss, parameter counts) by giving its
    LightningModule an `extra_metrics(ds) -> ds` method; it is applied on every write.
    """

    def __init__(self, path: Path, every: int, config: Any = None) -> None:
        self.path, self.every, self.config = path, every, config
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.start_step = 0
        self.module = self.trainer = None
        self.timing: dict[str, float] = {}  # startup_s, train_s: set by workbench.train at the end
        self.logged: set[tuple[str, int | None]] = set()  # (variable, step) already given to the loggers

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = int(trainer.global_step)
        self.module, self.trainer = pl_module, trainer
        for logger in trainer.loggers:
            if isinstance(logger, CSVLog):
                logger.resume_at(self.start_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step % self.every and step != trainer.max_steps:
            return
        loss = _loss_of(outputs)
        value = (
            float("nan") if loss is None else float(trainer.strategy.reduce(loss.detach().float(), reduce_op="mean"))
        )
        self.steps.append(step)
        self.losses.append(value)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"loss": value}, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = [int(s) for s in state_dict["steps"]]
        self.losses = [float(v) for v in state_dict["losses"]]

    def write(self, status: str) -> None:
        losses = np.asarray(self.losses, dtype=float)
        ds = xr.Dataset(
            {
                "loss": ("step", losses),
                "final_loss": ((), losses[-1] if losses.size else np.nan),
                "steps_done": ((), self.steps[-1] if self.steps else 0),
                "status": ((), status),
            },
            coords={"step": np.asarray(self.steps, dtype=np.int64)},
        )
        ds["loss"].attrs["description"] = "training loss (global-batch mean) after the step"
        for name, seconds in self.timing.items():
            ds[name] = ((), float(seconds))
        extra = getattr(self.module, "extra_metrics", None)
        ds = extra(ds) if extra is not None else ds
        atomic_write_netcdf(with_provenance(ds, self.config), self.path)
        self._log_to_loggers(ds, final=status != "running")

    def _log_to_loggers(self, ds: xr.Dataset, final: bool) -> None:
        """The metrics.nc values the loggers have not seen: step-indexed series (validation loss at
        its eval steps) as they appear, and the scalars (final loss, parameter counts) at the end."""
        trainer = self.trainer
        if trainer is None or not trainer.loggers:
            return
        for name, var in ds.data_vars.items():
            if not np.issubdtype(var.dtype, np.number):
                continue
            if var.ndim == 1 and var.dims[0] != "step" and "step" in var.dims[0]:
                for at, value in zip(var[var.dims[0]].values, var.values):
                    if (name, int(at)) not in self.logged and np.isfinite(value):
                        self.logged.add((name, int(at)))
                        for logger in trainer.loggers:
                            logger.log_metrics({name: float(value)}, step=int(at))
            elif var.ndim == 0 and final and (name, None) not in self.logged and np.isfinite(var.values):
                self.logged.add((name, None))
                for logger in trainer.loggers:
                    logger.log_metrics({name: float(var.values)}, step=self.steps[-1] if self.steps else 0)
        for logger in trainer.loggers:
            logger.save()


class CSVLog(Logger):
    """The `csv` logger: one row per value, ``step,metric,value``, appended to
    <run dir>/logs/csv/metrics.csv. Long format so that new metrics need no new header, and a
    resumed run first drops the rows after its checkpoint's step, so the file reads as one run.
    (Lightning's CSVLogger rewrites its file when a run resumes.)"""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.path = Path(directory) / "metrics.csv"

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def resume_at(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [lines[0], *(line for line in lines[1:] if line and int(line.split(",", 1)[0]) <= step)]
        atomic_write_text(self.path, "\n".join(kept) + "\n")

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with self.path.open("a", encoding="utf-8") as file:
            if new:
                file.write("step,metric,value\n")
            for name, value in metrics.items():
                file.write(f"{int(step or 0)},{name},{float(value)!r}\n")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:  # the config is in config.json
        pass


class PeriodicCheckpoint(Callback):
    """Writes last.ckpt every `every` steps: to a temp file, then os.replace.

    Lightning's ModelCheckpoint writes in place, so a job killed mid-save (a timeout's SIGKILL)
    could leave a truncated last.ckpt and nothing to resume from.
    """

    def __init__(self, path: Path, every: int, guard: NonFiniteGuard, recorder: MetricsRecorder) -> None:
        self.path, self.every, self.guard, self.recorder = path, every, guard, recorder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0 and self.guard.tripped_at is None:
            self.save(trainer)
            if trainer.is_global_zero:
                self.recorder.write("running")

    def save(self, trainer) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        # A collective: every rank calls it, rank 0 writes. weights_only=False keeps the optimizer
        # and loop state that an exact resume needs.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("workbench.checkpoint")


class PeriodicEvaluation(Callback):
    """Held-out evaluation every `every` optimizer steps and after the last one.

    A model kind returns it from ``configure_callbacks`` and implements ``evaluate()`` (a float or a
    tuple of floats, computed without touching the training RNG). It runs before the optimizer step
    whose count of finished steps is a multiple of `every` (step 0 = the initial model) and after
    training if the last step was not evaluated. The results, ``{steps done: value}``, are the
    module's ``evaluations`` and are kept in checkpoints, so a resumed run continues them.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self.results: dict[int, Any] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module.evaluations = self.results

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step % self.every == 0 and step not in self.results:
            self.results[step] = pl_module.evaluate()

    def on_train_end(self, trainer, pl_module) -> None:
        step = int(trainer.global_step)
        if step not in self.results:
            self.results[step] = pl_module.evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {"results": {int(step): value for step, value in self.results.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results.clear()
        self.results.update(
            {
                int(step): tuple(value) if isinstance(value, (list, tuple)) else float(value)
                for step, value in state_dict["results"].items()
            }
        )
