"""Synthetic training-run tables drawn from a known law, for recovery tests and planning.

Two designs:
- `isoflop`: at each budget C, `sizes` model sizes spaced geometrically over ±`span`× around the
  true optimum N*(C) (Hoffmann Eq. 4), with D = C / (6N) — the Approach-2 design;
- `grid`: every N of a geometric grid crossed with every D — the Approach-3 design.
Noise is multiplicative (log-normal, `noise` = std of log loss), since fits work on log loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.conventions import porian_budgets
from scaling.laws import ChinchillaLaw
from workbench.errors import InputError

KINDS = ("isoflop", "grid")


def simulate_runs(
    law: ChinchillaLaw,
    *,
    kind: str = "isoflop",
    budgets=None,
    sizes: int = 9,
    span: float = 8.0,
    N_range=(1e7, 1e10),
    D_range=(1e9, 1e12),
    grid_points: int = 8,
    noise: float = 0.0,
    seeds: int = 1,
    seed: int = 0,
    center: float = 1.0,
    drift: float = 0.0,
) -> pd.DataFrame:
    """Draw a run table (columns N, D, C, loss, seed) from `law`.

    `center` and `drift` move the IsoFLOP sampling off the true optimum, as happens when the
    optimum is guessed: sizes are centred on center · (C/C_min)^drift · N*(C). Off-centre sampling
    is what biases Approach 2 (Open-Athena/vpnls, arXiv:2603.22339).
    """
    if kind not in KINDS:
        raise InputError(f"unknown simulation kind '{kind}'; valid: {', '.join(KINDS)}")
    if noise < 0 or center <= 0 or seeds < 1 or sizes < 1 or span <= 1 or grid_points < 2:
        raise InputError("simulate needs noise >= 0, center > 0, seeds >= 1, sizes >= 1, span > 1 and grid points >= 2")
    if kind == "isoflop":
        budgets = porian_budgets() if budgets is None else np.asarray(budgets, float)
        if np.any(budgets <= 0):
            raise InputError("compute budgets must be > 0")
        N_opt, _ = law.optimal_allocation(budgets)
        N_opt = N_opt * center * (budgets / budgets.min()) ** drift
        factors = np.geomspace(1.0 / span, span, sizes)
        N = (N_opt[:, None] * factors[None, :]).ravel()
        C = np.repeat(budgets, sizes)
        D = C / (6.0 * N)
    else:
        N, D = np.meshgrid(np.geomspace(*N_range, grid_points), np.geomspace(*D_range, grid_points), indexing="ij")
        N, D = N.ravel(), D.ravel()
        C = 6.0 * N * D
    rng = np.random.default_rng(seed)
    tables = []
    for s in range(seeds):
        loss = law.loss(N, D) * np.exp(noise * rng.standard_normal(N.size))
        tables.append(pd.DataFrame({"N": N, "D": D, "C": C, "loss": loss, "seed": s}))
    return pd.concat(tables, ignore_index=True)
