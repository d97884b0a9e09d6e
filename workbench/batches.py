"""The one batch stream every trainable trains on: step-seeded, rank-aware and resumable.

A trainable describes the *global* batch of optimizer step k as a function of k alone::

    def draw(rng, step):                      # rng = np.random.default_rng([seed, step])
        rows = rng.integers(len(x), size=batch_size)
        return rows

    loader = step_loader(module, draw, batch_size=batch_size, build=lambda rows: (x[rows], y[rows]))

and this module does the rest, once for every model:

- **step-seeded**: the draw for step k depends only on (seed, k), so a run resumed at step k sees
  the batches an uninterrupted run would (Lightning restores ``global_step`` before it asks for
  the data);
- **rank-aware**: under DDP with w processes, rank r keeps rows r, r + w, r + 2w, ... of every
  array in the global draw (noise included), so the ranks see different data and the mean of
  their gradients is the full-batch gradient: w processes train exactly as one would;
- **worker-aware**: with DataLoader workers, worker j of W yields steps start + j, start + j + W,
  ...; the loader takes one batch from each worker in turn, so batches arrive in step order.

`build` turns a rank's share into tensors; it runs in the worker, after the split, so only this
rank's rows are built.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["StepBatches", "rank_share", "step_loader", "step_rng"]


def step_rng(seed: int, step: int, *stream: int) -> np.random.Generator:
    """The generator of step `step` (extra `stream` numbers give independent streams per step)."""
    return np.random.default_rng([seed, step, *stream])


def rank_share(batch: Any, rank: int, world: int) -> Any:
    """Rows rank, rank + world, ... of every array, tensor or list in `batch` (dicts and tuples
    are walked; other values, such as scalars, are shared by every rank)."""
    if world == 1:
        return batch
    if isinstance(batch, Mapping):
        return {key: rank_share(value, rank, world) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(rank_share(value, rank, world) for value in batch)
    if isinstance(batch, (np.ndarray, torch.Tensor, list)):
        return batch[rank::world]
    return batch


class StepBatches(torch.utils.data.IterableDataset):
    """This rank's share of the global batch of steps start, start + 1, ... (see the module doc)."""

    def __init__(
        self,
        draw: Callable[[np.random.Generator, int], Any],
        *,
        seed: int,
        start: int,
        rank: int = 0,
        world: int = 1,
        build: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.draw, self.build, self.seed = draw, build, seed
        self.start, self.rank, self.world = start, rank, world

    def batch(self, step: int) -> Any:
        """This rank's batch of optimizer step `step`."""
        share = rank_share(self.draw(step_rng(self.seed, step), step), self.rank, self.world)
        return self.build(share) if self.build is not None else share

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        first, stride = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
        for step in itertools.count(first, stride):
            yield self.batch(step)


def step_loader(
    module: Any,
    draw: Callable[[np.random.Generator, int], Any],
    *,
    batch_size: int,
    build: Callable[[Any], Any] | None = None,
    workers: int = 0,
) -> torch.utils.data.DataLoader:
    """The DataLoader a LightningModule's ``train_dataloader`` returns: its rank's share of each
    global batch, from the step the trainer is at, seeded by ``module.seed``."""
    trainer = module.trainer
    world, rank = int(trainer.world_size), int(trainer.global_rank)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world} training processes")
    batches = StepBatches(draw, seed=module.seed, start=int(trainer.global_step), rank=rank, world=world, build=build)
    return torch.utils.data.DataLoader(
        batches, batch_size=None, num_workers=workers, persistent_workers=False, prefetch_factor=4 if workers else None
    )
