"""The harness's Lightning callbacks: non-finite guard, metrics recorder, atomic last.ckpt.

`workbench.train.train` attaches all three to every run, whatever the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.callbacks import Callback

from workbench.provenance import with_provenance
from workbench.store import atomic_write_netcdf

__all__ = ["MetricsRecorder", "NonFiniteGuard", "PeriodicCheckpoint", "PeriodicEvaluation"]


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
        self.module = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = int(trainer.global_step)
        self.module = pl_module

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
        extra = getattr(self.module, "extra_metrics", None)
        ds = extra(ds) if extra is not None else ds
        atomic_write_netcdf(with_provenance(ds, self.config), self.path)


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
