"""Synthetic training-run tables drawn from a known law, for recovery tests and planning.

Two designs:
- `isoflop`: at each budget C, `sizes` model sizes spaced geometrically over ±`span`× around the
  true optimum N*(C) (Hoffmann Eq. 4), with D = C / (6N) — the Approach-2 design;
- `grid`: every N of a geometric grid crossed with every D — the Approach-3 design.
Noise is multiplicative (log-normal, `noise` = std of log loss), since fits work on log loss.

Every table drawn is one that `scaling.table.load_runs` accepts: settings that would give repeated
runs, or losses that overflow, are refused before anything is written, and the size is checked
before anything is allocated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.conventions import porian_budgets
from scaling.laws import ChinchillaLaw
from workbench.errors import InputError

KINDS = ("isoflop", "grid")
# Rows a table may have: 10x what a parametric fit handles in a minute on 2 cores (200 000 runs),
# and about 100 MB of CSV.
MAX_ROWS = 2_000_000
BUDGET_RTOL = 0.02  # budgets closer than this are one budget to `scaling.table.group_budgets`


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
    _check_law(law)
    settings = {"noise": noise, "center": center, "span": span, "drift": drift}
    for name, value in settings.items():
        if not np.isfinite(value):
            raise InputError(f"--{name} must be a finite number, got {value}")
    if noise < 0 or center <= 0 or seeds < 1 or sizes < 1 or span <= 1 or grid_points < 2:
        raise InputError("simulate needs noise >= 0, center > 0, seeds >= 1, sizes >= 1, span > 1 and grid points >= 2")
    if kind == "isoflop":
        budgets = porian_budgets() if budgets is None else np.asarray(budgets, float).ravel()
        _check_budgets(budgets)
    per_seed = budgets.size * sizes if kind == "isoflop" else grid_points**2
    if per_seed * seeds > MAX_ROWS:
        design = f"{budgets.size} budgets x {sizes} sizes" if kind == "isoflop" else f"{grid_points}^2 grid points"
        raise InputError(
            f"simulate would draw {per_seed * seeds:,} runs ({design} x {seeds} seeds); at most {MAX_ROWS:,}"
        )
    if kind == "isoflop":
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
    for name, values in (("N", N), ("D", D)):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise InputError(f"the design gives {name} outside (0, inf): narrow --span, --center or --drift")
    rng = np.random.default_rng(seed)
    tables = []
    for s in range(seeds):
        with np.errstate(over="ignore", under="ignore"):
            loss = law.loss(N, D) * np.exp(noise * rng.standard_normal(N.size))
        if not np.all(np.isfinite(loss) & (loss > 0)):
            raise InputError(
                f"--noise {noise:g} (std of log loss) drives losses to 0 or infinity; use a noise well below 1"
            )
        tables.append(pd.DataFrame({"N": N, "D": D, "C": C, "loss": loss, "seed": s}))
    return pd.concat(tables, ignore_index=True)


def _check_law(law: ChinchillaLaw) -> None:
    for name, value in law.as_dict().items():
        if not np.isfinite(value):
            raise InputError(f"the law's {name} = {value} is not finite")
    if not (law.E >= 0 and min(law.A, law.B, law.alpha, law.beta) > 0):
        raise InputError(f"the law needs E >= 0 and A, B, alpha, beta > 0; got {law}")


def _check_budgets(budgets: np.ndarray) -> None:
    """Finite, positive, and no two within BUDGET_RTOL: `scaling fit` would merge those into one."""
    if budgets.size == 0 or not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise InputError(f"compute budgets must be finite numbers > 0, got {', '.join(f'{b:g}' for b in budgets)}")
    ordered = np.sort(budgets)
    close = np.flatnonzero(ordered[1:] <= ordered[:-1] * (1 + BUDGET_RTOL))
    if close.size:
        i = int(close[0])
        raise InputError(
            f"--budgets {ordered[i]:g} and {ordered[i + 1]:g} are the same budget (within {BUDGET_RTOL:.0%}): "
            "their runs would repeat or be merged; give each budget once"
        )
