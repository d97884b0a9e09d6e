"""Multi-start fits that stay fast and bounded in memory on tables of any length.

A grid of starts (Hoffmann's 4500, Kaplan's 256) costs starts × runs per evaluation, which on
200 000 runs is about a billion terms for every L-BFGS step. The starts only have to find the
basin of the best optimum, and a random subsample of a few thousand runs has the same basins, so
on long tables they are screened on `SCREEN_ROWS` runs and only the best few are refined on
every run. Tables up to `SCREEN_ROWS` runs are screened on all of them, exactly as before.

Objectives are evaluated in blocks of batch rows so that no intermediate holds more than
`BLOCK_ELEMENTS` numbers, whatever the number of starts or runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

SCREEN_ROWS = 2048
SCREEN_SEED = 0  # the subsample is a fixed function of the (canonically ordered) runs
BLOCK_ELEMENTS = 1 << 17  # batch rows × runs per evaluation block (1 MiB of float64)


def screen_rows(n: int, limit: int = SCREEN_ROWS) -> np.ndarray | None:
    """Sorted indices of `limit` of `n` runs to screen starts on, or None to use all of them."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(SCREEN_SEED).choice(n, size=limit, replace=False))


def rows_per_block(n_runs: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many batch rows one block evaluates, so that rows × runs <= block_elements (at least 1)."""
    return max(1, block_elements // max(1, n_runs))


def in_blocks(evaluate: Callable, n_runs: int, block_elements: int = BLOCK_ELEMENTS) -> Callable:
    """An objective(x, rows) that calls `evaluate` on blocks of batch rows and concatenates."""
    step = rows_per_block(n_runs, block_elements)

    def objective(x: torch.Tensor, rows: torch.Tensor):
        if x.shape[0] <= step:
            return evaluate(x, rows)
        parts = [evaluate(x[i : i + step], rows[i : i + step]) for i in range(0, x.shape[0], step)]
        return torch.cat([f for f, _ in parts]), torch.cat([g for _, g in parts])

    return objective
