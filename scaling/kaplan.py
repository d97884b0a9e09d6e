"""Fits of Kaplan et al. 2020 (arXiv:2001.08361) power laws: L(N), L(D) and L(N, D).

- L(N)    = (N_c / N)^alpha_N                              (Eq. 1.1)
- L(D)    = (D_c / D)^alpha_D                              (Eq. 1.2)
- L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D  (Eq. 1.5)

Every form is fitted in log space, with the same objective as `scaling.fit` (Huber, delta = 1e-3,
on log L̂ - log L, **summed** over runs) and the same recipe: a grid of starts advanced as one
batch by `scaling.lbfgs.minimize_batched`, keeping the best. The constants come back as a
`laws.KaplanLaws`. These objectives are small, so their gradients come from autograd
(`huber_log_objective`), which `scaling.data_constrained` reuses. On long tables the starts are
screened on a subsample of the runs and the best few refined on all of them, with every
evaluation in blocks of bounded size (`scaling.multistart`). Runs are sorted first and data that
cannot determine the law are refused (`scaling.identify`), as in `scaling.fit`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from scaling import identify
from scaling.fit import HUBER_DELTA, canonical_runs, huber
from scaling.laws import KaplanLaws
from scaling.lbfgs import Objective, minimize_batched
from scaling.multistart import in_blocks, screen_rows
from workbench.errors import InputError

# Starts: log N_c, log D_c in {20, 25, 30, 35} (Kaplan's constants are e^31-e^32); exponents in
# {0.05, 0.1, 0.2, 0.4} (Kaplan's are 0.05-0.1, over-trained testbeds give larger ones).
LOG_SCALE_STARTS = (20.0, 25.0, 30.0, 35.0)
EXPONENT_STARTS = (0.05, 0.1, 0.2, 0.4)
REFINE_STARTS = 8  # on a long table, the best screened starts refined on every run


def huber_log_objective(
    log_predict: Callable[[torch.Tensor], torch.Tensor], loss, *, delta: float = HUBER_DELTA, weights=None
) -> Objective:
    """Objective for `minimize_batched`: sum over runs of Huber(log L̂ - log L), gradient by autograd.

    `log_predict(x)` maps a (b, P) batch of parameters to (b, n) predicted log losses. `weights`
    (R, n), if given, weights each batch row's runs (gathered by row, e.g. bootstrap counts).
    The sum over rows that autograd differentiates is separable, so each row gets its own gradient.
    Rows are evaluated in blocks (`scaling.multistart.in_blocks`), so memory does not grow with
    rows × runs.
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

    return in_blocks(objective, log_loss.numel())


def best_start(objective: Objective, starts, *, max_iter: int = 1000, progress=None) -> tuple[np.ndarray, float, bool]:
    """Run L-BFGS from every start as one batch; return (x, objective, converged) of the best."""
    x0 = torch.as_tensor(np.asarray(starts, float), dtype=torch.float64)
    result = minimize_batched(objective, x0, max_iter=max_iter, progress=progress)
    f = result.f.numpy()
    finite = np.isfinite(f) & np.all(np.isfinite(result.x.numpy()), 1)
    if not finite.any():
        raise InputError("no start of the fit reached a finite objective; check the data")
    best = int(np.argmin(np.where(finite, f, np.inf)))
    return result.x[best].numpy().copy(), float(f[best]), bool(result.success[best])


def multistart(
    build: Callable[[np.ndarray | None], Objective], starts, n_runs: int, *, max_iter: int = 1000, progress=None
):
    """`best_start` over all runs, from the starts that do best on a subsample when the table is long.

    `build(indices)` returns the objective on those runs (None: all of them). Returns
    (x, objective, converged, problems) of the best, with `scaling.identify`'s verdict on it.
    `progress(done)` counts the starts that have stopped, in the screen and then the refinement.
    """
    subsample = screen_rows(n_runs)
    if subsample is not None:
        x0 = torch.as_tensor(np.asarray(starts, float))
        screened = minimize_batched(build(subsample), x0, max_iter=max_iter, progress=progress)
        f = screened.f.numpy()
        f = np.where(np.isfinite(f) & np.all(np.isfinite(screened.x.numpy()), 1), f, np.inf)
        starts = screened.x[np.argsort(f, kind="stable")[:REFINE_STARTS]].numpy()
    objective = build(None)
    x, f, converged = best_start(objective, starts, max_iter=max_iter, progress=progress)
    flat = identify.flatness_problem(identify.hessian_eigenvalues(objective, torch.as_tensor(x)))
    return x, f, converged, (flat,) if flat else ()


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
    problems: tuple[str, ...] = ()  # why the optimum does not determine the constants; empty when it does

    @property
    def identified(self) -> bool:
        return not self.problems

    @property
    def laws(self) -> KaplanLaws:
        return KaplanLaws(N_c=self.N_c, alpha_N=self.alpha_N, D_c=self.D_c, alpha_D=self.alpha_D)

    def summary(self) -> dict:
        """Constants (NaN where not fitted) and fit diagnostics."""
        return {
            "form": self.form,
            "N_c": self.N_c,
            "alpha_N": self.alpha_N,
            "D_c": self.D_c,
            "alpha_D": self.alpha_D,
            "objective": self.objective,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "converged": self.converged,
            "identified": self.identified,
            "problems": list(self.problems),
        }


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


def fit_kaplan_N(N, loss, *, frontier: bool = True, delta: float = HUBER_DELTA, progress=None) -> KaplanFit:
    """Fit L(N) = (N_c/N)^alpha_N (Eq. 1.1) as log L = alpha_N·(log N_c - log N).

    With `frontier=True` (default) only the lowest loss per distinct N is fitted (`envelope_by`):
    Eq. 1.1 describes converged, data-unlimited models. Pass False when `loss` already is that.
    """
    return _fit_single("N", N, loss, frontier=frontier, delta=delta, progress=progress)


def fit_kaplan_D(D, loss, *, frontier: bool = True, delta: float = HUBER_DELTA, progress=None) -> KaplanFit:
    """Fit L(D) = (D_c/D)^alpha_D (Eq. 1.2) as log L = alpha_D·(log D_c - log D).

    Eq. 1.2 describes large models early-stopped after D tokens, so `frontier=True` (default)
    keeps the lowest loss per distinct D, as in `fit_kaplan_N`.
    """
    return _fit_single("D", D, loss, frontier=frontier, delta=delta, progress=progress)


def _fit_single(form: str, values, loss, *, frontier: bool, delta: float, progress=None) -> KaplanFit:
    values, loss = _checked({form: values, "loss": loss}, n_params=2)
    identify.check_loss_varies(loss)
    if frontier:
        values, loss = envelope_by(values, loss)
        _check_count(values.size, 2, f"distinct {form} values")
    identify.check_loss_varies(loss)
    log_v = torch.as_tensor(np.log(values), dtype=torch.float64)

    def build(rows):
        lv, lo = (log_v, loss) if rows is None else (log_v[rows], loss[rows])
        # x = (log X_c, alpha): log L = alpha·(log X_c - log X)
        return huber_log_objective(lambda x: x[:, 1:2] * (x[:, 0:1] - lv), lo, delta=delta)

    starts = list(itertools.product(LOG_SCALE_STARTS, EXPONENT_STARTS))
    x, f, converged, problems = multistart(build, starts, values.size, progress=progress)
    scale, exponent = float(np.exp(x[0])), float(x[1])
    pair = {"N_c": scale, "alpha_N": exponent} if form == "N" else {"D_c": scale, "alpha_D": exponent}
    constants = {"N_c": np.nan, "alpha_N": np.nan, "D_c": np.nan, "alpha_D": np.nan} | pair
    problems += tuple(identify.value_problems(pair))
    return KaplanFit(
        form=form,
        **constants,
        objective=f,
        n_points=int(values.size),
        n_starts=len(starts),
        converged=converged,
        x=x,
        problems=problems,
    )


def fit_kaplan_ND(N, D, loss, *, delta: float = HUBER_DELTA, progress=None) -> KaplanFit:
    """Fit L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5).

    Free parameters (log N_c, log D_c, alpha_N, alpha_D); in log space the form is
    log L = alpha_D · logaddexp((alpha_N/alpha_D)·(log N_c - log N), log D_c - log D),
    which never overflows. Started from all 4^4 = 256 grid points at once.
    """
    N, D, loss = _checked({"N": N, "D": D, "loss": loss}, n_params=4)
    identify.check_law_inputs(N, D, loss)
    log_N = torch.as_tensor(np.log(N), dtype=torch.float64)
    log_D = torch.as_tensor(np.log(D), dtype=torch.float64)

    def build(rows):
        lN, lD, lo = (log_N, log_D, loss) if rows is None else (log_N[rows], log_D[rows], loss[rows])

        def log_predict(x):
            log_Nc, log_Dc, alpha_N, alpha_D = (x[:, k : k + 1] for k in range(4))
            return alpha_D * torch.logaddexp(alpha_N / alpha_D * (log_Nc - lN), log_Dc - lD)

        return huber_log_objective(log_predict, lo, delta=delta)

    starts = list(itertools.product(LOG_SCALE_STARTS, LOG_SCALE_STARTS, EXPONENT_STARTS, EXPONENT_STARTS))
    x, f, converged, problems = multistart(build, starts, N.size, progress=progress)
    constants = {"N_c": float(np.exp(x[0])), "alpha_N": float(x[2]), "D_c": float(np.exp(x[1])), "alpha_D": float(x[3])}
    return KaplanFit(
        form="ND",
        **constants,
        objective=f,
        n_points=int(N.size),
        n_starts=len(starts),
        converged=converged,
        x=x,
        problems=problems + tuple(identify.value_problems(constants)),
    )


def _checked(columns: dict, n_params: int) -> list[np.ndarray]:
    """Columns as flat float arrays; InputError naming the column for bad shape or values."""
    arrays = dict(zip(columns, canonical_runs(*columns.values())))
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1:
        lengths = ", ".join(f"{name} {a.size}" for name, a in arrays.items())
        raise InputError(f"columns must have the same length (got {lengths})")
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise InputError(f"column '{name}' must be finite and > 0 for a power-law fit (logs are taken)")
    _check_count(sizes.pop(), n_params, "runs")
    return list(arrays.values())


def _check_count(n: int, n_params: int, what: str) -> None:
    if n <= n_params:
        raise InputError(f"the fit has {n_params} parameters but only {n} {what}; need more {what} than parameters")
