"""Data-constrained scaling law of Muennighoff et al. 2023 (arXiv:2305.16264, §3 and App. A).

    L(N, D, U) = E + A / N'^alpha + B / D'^beta                                 (Eq. 5)

Repeated tokens and excess parameters are worth exponentially less than fresh ones:

    D' = U_D + U_D·R*_D·(1 - exp(-R_D / R*_D)),  R_D = D / U_D - 1  (repetitions)
    N' = U_N + U_N·R*_N·(1 - exp(-R_N / R*_N)),  R_N = max(N / U_N - 1, 0)

U_D = U is the number of unique tokens. U_N = min(N, N_opt(U_D)) is the largest model that is
still compute-optimal for U_D tokens under the base law (Hoffmann Eq. 4), and R_N counts the
parameters beyond it. As R* -> infinity, D' -> D and N' -> N: repeats count as fresh.

Fitted as in the paper: (1) the base law E, A, B, alpha = beta on the single-epoch runs (D == U)
with `scaling.fit.fit_parametric(tie=True)`; (2) with the base fixed, log R*_D and log R*_N on
all runs, Huber (delta = 1e-3) on log loss summed, from a small grid of starts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scaling.fit import HUBER_DELTA, fit_parametric, huber
from scaling.kaplan import best_start, huber_log_objective
from scaling.laws import ChinchillaLaw, effective_data
from workbench.errors import InputError

# Starts for (log R*_D, log R*_N): R* from e^0 = 1 to e^5 ~ 150 repetitions (paper: 15.4, 5.3).
LOG_R_STAR_STARTS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)

# Variants in the bundled Muennighoff table that are not plain runs of the grid: "opt" runs
# use another model shape than the name's parameter count says (one also decodes to wrong token
# counts), so (N, D, U) are not known for them. Seed replicas are plain runs and are kept.
ABLATION_VARIANTS = ("opt",)


@dataclass(frozen=True)
class DataConstrainedFit:
    base: ChinchillaLaw  # fitted on single-epoch runs
    r_d_star: float  # R*_D: repetitions of the data at which their value has decayed by 1/e
    r_n_star: float  # R*_N: same for excess parameters
    objective: float  # Huber sum over all runs at the optimum
    n_single_epoch: int
    n_points: int
    converged: bool  # both stages met a convergence test

    def summary(self) -> dict:
        return {
            "E": self.base.E,
            "A": self.base.A,
            "B": self.base.B,
            "alpha": self.base.alpha,
            "beta": self.base.beta,
            "R_D_star": self.r_d_star,
            "R_N_star": self.r_n_star,
            "objective": self.objective,
            "n_single_epoch": self.n_single_epoch,
            "n_points": self.n_points,
            "converged": self.converged,
        }


def compute_optimal_params_for_tokens(base: ChinchillaLaw, U):
    """N_opt(U): the parameter count whose compute-optimal token count D*(C) equals U.

    From D*(C) = G^-1 (C/6)^b (Hoffmann Eq. 4): C/6 = (G·U)^(1/b), so N* = G·(G·U)^(a/b).
    """
    return base.G * (base.G * np.asarray(U, float)) ** (base.a / base.b)


def _decayed(unique, repeats, r_star):
    """U + U·R*·(1 - exp(-R/R*)) (Eq. 5), with the R* -> infinity limit U·(1 + R) exactly."""
    if np.isinf(r_star):
        return unique * (1.0 + repeats)
    return unique + unique * r_star * -np.expm1(-repeats / r_star)


def effective_tokens(D, U, r_d_star: float):
    """D' of Eq. 5: `laws.effective_data`, plus its R*_D = inf limit D' = D."""
    return np.asarray(D, float) if np.isinf(r_d_star) else effective_data(D, U, r_d_star)


def effective_params(base: ChinchillaLaw, N, U, r_n_star: float):
    """N' of Eq. 5: parameters beyond U_N = min(N, N_opt(U)) decay with R*_N (inf gives N)."""
    N = np.asarray(N, float)
    U_N = np.minimum(N, compute_optimal_params_for_tokens(base, U))
    return _decayed(U_N, np.maximum(N / U_N - 1.0, 0.0), r_n_star)


def predict(fit: DataConstrainedFit, N, D, U):
    """L(N, D, U) = E + A/N'^alpha + B/D'^beta (Eq. 5)."""
    return _loss(fit.base, N, D, U, fit.r_d_star, fit.r_n_star)


def _loss(base: ChinchillaLaw, N, D, U, r_d_star: float, r_n_star: float):
    return base.loss(effective_params(base, N, U, r_n_star), effective_tokens(D, U, r_d_star))


def huber_objective(
    base: ChinchillaLaw, N, D, U, loss, *, r_d_star: float, r_n_star: float, delta: float = HUBER_DELTA
) -> float:
    """The fit's objective, sum of Huber(log L̂ - log L), at given constants (R* may be inf).

    For comparing the data-constrained form with treating repeats as fresh tokens
    (r_d_star = inf) on any subset of runs.
    """
    r = np.log(_loss(base, N, D, U, r_d_star, r_n_star)) - np.log(np.asarray(loss, float))
    return float(huber(torch.as_tensor(r), delta).sum())


def plain_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of `load_dataset("muennighoff")` that are plain grid runs (drops ABLATION_VARIANTS)."""
    if "variant" not in table.columns:
        return table
    return table[~table["variant"].isin(ABLATION_VARIANTS)].reset_index(drop=True)


def fit_data_constrained(
    N, D, U, loss, *, base: ChinchillaLaw | None = None, delta: float = HUBER_DELTA, starts=None
) -> DataConstrainedFit:
    """Fit Eq. 5: the base law on single-epoch runs, then R*_D and R*_N on all runs.

    `base` skips stage 1 and uses the given law (e.g. `laws.MUENNIGHOFF_C4`). `starts` overrides
    the (log R*_D, log R*_N) grid.
    """
    N, D, U, loss = _checked(N, D, U, loss)
    single = np.isclose(D, U, rtol=1e-9)
    base_converged = True
    if base is None:
        if single.sum() <= 4:
            raise InputError(
                f"the base law has 4 parameters but only {int(single.sum())} single-epoch "
                "runs (D == U); need more single-epoch runs than parameters"
            )
        stage1 = fit_parametric(N[single], D[single], loss[single], tie=True, delta=delta)
        base, base_converged = stage1.law, stage1.converged

    objective = huber_log_objective(_log_predict_for(base, N, D, U), loss, delta=delta)
    grid = list(itertools.product(LOG_R_STAR_STARTS, LOG_R_STAR_STARTS)) if starts is None else starts
    x, f, converged = best_start(objective, grid)
    return DataConstrainedFit(
        base=base,
        r_d_star=float(np.exp(x[0])),
        r_n_star=float(np.exp(x[1])),
        objective=f,
        n_single_epoch=int(single.sum()),
        n_points=int(N.size),
        converged=converged and base_converged,
    )


def _log_predict_for(base: ChinchillaLaw, N, D, U):
    """Batched log L̂(x) for x = (log R*_D, log R*_N), the base law held fixed."""
    U_N = np.minimum(N, compute_optimal_params_for_tokens(base, U))
    R_D, R_N = _tensor(np.maximum(D / U - 1.0, 0.0)), _tensor(np.maximum(N / U_N - 1.0, 0.0))
    U_D, U_N = _tensor(U), _tensor(U_N)
    log_E, log_A, log_B = (float(np.log(v)) for v in (base.E, base.A, base.B))

    def log_predict(x):
        r_d, r_n = torch.exp(x[:, 0:1]), torch.exp(x[:, 1:2])  # (b, 1): R* > 0 by construction
        D_eff = U_D + U_D * r_d * -torch.expm1(-R_D / r_d)
        N_eff = U_N + U_N * r_n * -torch.expm1(-R_N / r_n)
        # log(E + A/N'^alpha + B/D'^beta) as a log-sum-exp of the three terms' logs.
        log_terms = torch.broadcast_tensors(
            torch.full_like(N_eff, log_E), log_A - base.alpha * torch.log(N_eff), log_B - base.beta * torch.log(D_eff)
        )
        return torch.logsumexp(torch.stack(log_terms), 0)

    return log_predict


def _tensor(values) -> torch.Tensor:
    return torch.tensor(np.asarray(values, float), dtype=torch.float64)


def _checked(N, D, U, loss):
    arrays = {name: np.asarray(v, dtype=float).ravel() for name, v in (("N", N), ("D", D), ("U", U), ("loss", loss))}
    if len({a.size for a in arrays.values()}) != 1:
        lengths = ", ".join(f"{name} {a.size}" for name, a in arrays.items())
        raise InputError(f"N, D, U and loss must have the same length (got {lengths})")
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise InputError(f"column '{name}' must be finite and > 0 for the data-constrained fit")
    fewer = np.flatnonzero(arrays["D"] < arrays["U"] * (1 - 1e-9))
    if fewer.size:
        raise InputError(
            f"column 'D' must be >= 'U' (tokens seen cannot be fewer than unique tokens); "
            f"row {fewer[0]} has D = {arrays['D'][fewer[0]]:g} < U = {arrays['U'][fewer[0]]:g}"
        )
    if arrays["N"].size <= 2:
        raise InputError(f"R*_D and R*_N are 2 parameters but only {arrays['N'].size} runs; need more runs")
    return list(arrays.values())
