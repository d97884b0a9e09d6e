"""Fits of Kaplan et al. 2020 (arXiv:2001.08361) power laws: L(N), L(D) and L(N, D).

- L(N)    = (N_c / N)^alpha_N                              (Eq. 1.1)
- L(D)    = (D_c / D)^alpha_D                              (Eq. 1.2)
- L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D  (Eq. 1.5)

Every form is fitted in log space, with the same objective as `scaling.fit` (Huber, delta = 1e-3,
on log L̂ - log L, **summed** over runs) and the same recipe: a grid of starts advanced as one
batch by `scaling.lbfgs.minimize_batched`, keeping the best. The constants come back as a
`laws.KaplanLaws`. These objectives are small, so their gradients come from autograd
(`huber_log_objective`), which `scaling.data_constrained` reuses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from scaling.fit import HUBER_DELTA, huber
from scaling.laws import KaplanLaws
from scaling.lbfgs import BatchedResult, Objective, minimize_batched
from workbench.errors import InputError

# Starts: log N_c, log D_c in {20, 25, 30, 35} (Kaplan's constants are e^31-e^32); exponents in
# {0.05, 0.1, 0.2, 0.4} (Kaplan's are 0.05-0.1, over-trained testbeds give larger ones).
LOG_SCALE_STARTS = (20.0, 25.0, 30.0, 35.0)
EXPONENT_STARTS = (0.05, 0.1, 0.2, 0.4)


def huber_log_objective(log_predict: Callable[[torch.Tensor], torch.Tensor], loss, *,
                        delta: float = HUBER_DELTA, weights=None) -> Objective:
    """Objective for `minimize_batched`: sum over runs of Huber(log L̂ - log L), gradient by autograd.

    `log_predict(x)` maps a (b, P) batch of parameters to (b, n) predicted log losses. `weights`
    (R, n), if given, weights each batch row's runs (gathered by row, e.g. bootstrap counts).
    The sum over rows that autograd differentiates is separable, so each row gets its own gradient.
    """
    log_loss = torch.as_tensor(np.log(np.asarray(loss, float)), dtype=torch.float64)
    row_weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def objective(x: torch.Tensor, rows: torch.Tensor):
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            h = huber(log_predict(x) - log_loss, delta)
            if row_weights is not None:
                h = h * row_weights[rows]
            f = h.sum(1)
            (grad,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), grad

    return objective


def best_start(objective: Objective, starts, *, max_iter: int = 1000) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS from every start as one batch; return (x, objective, converged) of the best."""
    x0 = torch.as_tensor(np.asarray(starts, float), dtype=torch.float64)
    result: BatchedResult = minimize_batched(objective, x0, max_iter=max_iter)
    f = result.f.numpy()
    finite = np.isfinite(f) & np.all(np.isfinite(result.x.numpy()), 1)
    if not finite.any():
        raise InputError("no start of the fit reached a finite objective; check the data")
    best = int(np.argmin(np.where(finite, f, np.inf)))
    return result.x[best].numpy().copy(), float(f[best]), bool(result.success[best])


@dataclass(frozen=True)
class KaplanFit:
    """Fitted Kaplan constants. A single-variable fit leaves the other pair NaN."""

    form: str  # "N" (Eq. 1.1), "D" (Eq. 1.2) or "ND" (Eq. 1.5)
    N_c: float
    alpha_N: float
    D_c: float
    alpha_D: float
    objective: float  # Huber sum at the optimum
    n_points: int
    n_starts: int
    converged: bool  # the best start met a convergence test
    x: np.ndarray = field(repr=False)  # the free parameters at the optimum (log space)

    @property
    def laws(self) -> KaplanLaws:
        return KaplanLaws(N_c=self.N_c, alpha_N=self.alpha_N, D_c=self.D_c, alpha_D=self.alpha_D)

    def summary(self) -> dict:
        return {"form": self.form, "N_c": self.N_c, "alpha_N": self.alpha_N, "D_c": self.D_c,
                "alpha_D": self.alpha_D, "objective": self.objective, "n_points": self.n_points,
                "n_starts": self.n_starts, "converged": self.converged}


def envelope_by(values, loss) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct value keep the lowest loss: the frontier that L(N) or L(D) describes.

    Kaplan's Eq. 1.1 is the loss of a model trained to convergence on unlimited data, so among
    runs of one size the best (longest-trained) one is the closest to it. Returns the sorted
    distinct values and their minimum losses.
    """
    values, loss = np.asarray(values, float).ravel(), np.asarray(loss, float).ravel()
    if values.shape != loss.shape:
        raise InputError(f"values and loss must have the same length (got {values.size}, {loss.size})")
    distinct, group = np.unique(values, return_inverse=True)
    lowest = np.full(distinct.size, np.inf)
    np.minimum.at(lowest, group, loss)
    return distinct, lowest


def fit_kaplan_N(N, loss, *, frontier: bool = True, delta: float = HUBER_DELTA) -> KaplanFit:
    """Fit L(N) = (N_c/N)^alpha_N (Eq. 1.1) as log L = alpha_N·(log N_c - log N).

    With `frontier=True` (default) only the lowest loss per distinct N is fitted (`envelope_by`):
    Eq. 1.1 describes converged, data-unlimited models. Pass False when `loss` already is that.
    """
    N, loss = _checked({"N": N, "loss": loss}, n_params=2)
    if frontier:
        N, loss = envelope_by(N, loss)
        _check_count(N.size, 2, "distinct N values")
    log_c, alpha = _single_power_law(N, loss, delta)
    return log_c, alpha  # replaced below


def fit_kaplan_D(D, loss, *, frontier: bool = True, delta: float = HUBER_DELTA) -> KaplanFit:
    """Fit L(D) = (D_c/D)^alpha_D (Eq. 1.2) as log L = alpha_D·(log D_c - log D).

    Eq. 1.2 describes large models early-stopped on D tokens, so `frontier=True` (default) keeps
    the lowest loss per distinct D, as in `fit_kaplan_N`.
    """
    raise NotImplementedError
