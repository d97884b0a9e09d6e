"""Approach 3: the parametric fit of L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022,
"Training Compute-Optimal Large Language Models", §3.3).

Fitted in log space as  log L̂ = LSE(a - alpha·log N, b - beta·log D, e)  with A = e^a, B = e^b,
E = e^e, minimising the Huber loss (delta = 1e-3) of log L̂ - log L **summed** over the runs
(Hoffmann App. D.2; "Epoch 2024" = Besiroglu et al. 2024, "Chinchilla Scaling: A replication
attempt", repo epoch-research/analyzing-chinchilla). L-BFGS is started from every point of
Hoffmann/Epoch's grid (4500 starts) and the best run is kept. All starts, and all bootstrap
replicates, are advanced together by `scaling.lbfgs.minimize_batched`. On long tables the starts
are screened on a subsample of the runs and the best refined on all of them (`scaling.multistart`).

Runs are put in a canonical order first, so the result does not depend on the order of the table,
and data that cannot determine the law are refused before the fit (`scaling.identify`); an
optimum that is flat in some direction is reported as not identified.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from scaling import identify
from scaling.laws import ChinchillaLaw
from scaling.lbfgs import BatchedResult, minimize_batched
from scaling.multistart import screen_rows
from workbench.errors import InputError

HUBER_DELTA = 1e-3
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")  # log A, log B, log E, alpha, beta


def hoffmann_grid() -> np.ndarray:
    """The 4500 starts of Epoch's "Replicate exactly" section (intended as Hoffmann App. D.2).

    alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1}; a, b in {0, 5, ..., 25}.
    Returned as rows of (a, b, e, alpha, beta).
    """
    alphas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = np.arange(0.0, 25.01, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, abs_, es, alphas, alphas)])


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber loss: r²/2 inside ±delta, linear outside (same as scipy.special.huber)."""
    ar = r.abs()
    return torch.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


class ChinchillaObjective:
    """Huber-sum objective of the LSE form and its analytic gradient, for a batch of parameters.

    `weights` (R, n) gives each batch row its own per-run weights: all ones for the start grid,
    multinomial counts for bootstrap replicates (a resample is the same as weighting by counts).
    `tie` fits alpha = beta (Muennighoff et al. 2023): the free vector is (a, b, e, alpha).
    """

    def __init__(
        self,
        N,
        D,
        loss,
        *,
        delta: float = HUBER_DELTA,
        weights=None,
        tie: bool = False,
        dtype=torch.float64,
        device=None,
    ):
        as_tensor = lambda v: torch.tensor(np.asarray(v, float), dtype=dtype, device=device)
        self.logN, self.logD, self.logL = as_tensor(np.log(N)), as_tensor(np.log(D)), as_tensor(np.log(loss))
        # [1, log x] columns: one matrix product gives both gradient sums of a term (see below).
        self._onesN = torch.stack([torch.ones_like(self.logN), -self.logN], 1)
        self._onesD = torch.stack([torch.ones_like(self.logD), -self.logD], 1)
        self.delta = delta
        # Bootstrap weights can be large: share the caller's float64 array instead of copying it.
        shared = dtype == torch.float64 and isinstance(weights, np.ndarray) and weights.dtype == np.float64
        shared = shared and weights.flags.writeable
        self.weights = (
            None if weights is None else torch.as_tensor(weights, device=device) if shared else as_tensor(weights)
        )
        self.tie = tie

    @property
    def n_free(self) -> int:
        return 4 if self.tie else 5

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Free parameters -> (a, b, e, alpha, beta)."""
        return torch.cat([x, x[:, 3:4]], 1) if self.tie else x

    # Rows per block: a block's (rows × runs) intermediates stay in cache, which is faster on a
    # CPU than passes over the whole batch (about 512 KB per intermediate measured best).
    block_bytes = 1 << 19

    def __call__(self, x: torch.Tensor, rows: torch.Tensor):
        step = max(1, self.block_bytes // (self.logN.element_size() * self.logN.numel()))
        if x.shape[0] <= step:
            return self._evaluate(x, rows)
        parts = [self._evaluate(x[i : i + step], rows[i : i + step]) for i in range(0, x.shape[0], step)]
        return torch.cat([f for f, _ in parts]), torch.cat([g for _, g in parts])

    def _evaluate(self, x: torch.Tensor, rows: torch.Tensor):
        p = self.expand(x)
        a, b, e, alpha, beta = (p[:, k : k + 1] for k in range(5))
        # LSE without max-shifting: terms stay far inside the exp range for any sensible fit, and a
        # start that overflows gives a non-finite value, which the line search rejects.
        # In-place operations below only save allocations; the maths is line by line the same.
        t1 = torch.addcmul(a, alpha, self.logN, value=-1.0).exp_()  # A / N^alpha
        t2 = torch.addcmul(b, beta, self.logD, value=-1.0).exp_()  # B / D^beta
        E = torch.exp(e)
        s = (t1 + t2).add_(E)  # predicted loss L̂
        r = torch.log(s).sub_(self.logL)  # residual log L̂ - log L
        psi = r.clamp(-self.delta, self.delta)  # Huber derivative
        h = r.add_(psi, alpha=-0.5).mul_(psi)  # Huber loss: r²/2 inside ±delta, delta(|r| - delta/2) outside
        if self.weights is not None:
            w = self.weights[rows]
            h.mul_(w)
            psi.mul_(w)
        f = h.sum(1)
        # d log L̂ / d(term k) = (term k) / L̂, the softmax weight of that term; chain rule through
        # term 1 = exp(a - alpha log N) gives (1, -log N) per run, term 3 = exp(e) gives 1.
        q = psi.div_(s)
        dN = t1.mul_(q) @ self._onesN  # (b, 2): d/da, d/dalpha
        dD = t2.mul_(q) @ self._onesD  # (b, 2): d/db, d/dbeta
        grad = torch.stack([dN[:, 0], dD[:, 0], q.sum(1) * E[:, 0], dN[:, 1], dD[:, 1]], 1)
        if self.tie:
            grad = torch.cat([grad[:, :3], grad[:, 3:4] + grad[:, 4:5]], 1)
        return f, grad


@dataclass(frozen=True)
class ParametricFit:
    """The best of all starts, plus what a reader needs to trust it."""

    law: ChinchillaLaw
    objective: float  # Huber sum at the optimum
    n_points: int
    n_starts: int
    n_at_optimum: int  # refined starts that ended within 1e-6 (relative) of the best objective
    converged: bool  # the best start met a convergence test
    tie: bool
    x: np.ndarray = field(repr=False)  # (a, b, e, alpha, beta) at the optimum
    bootstrap: np.ndarray | None = field(default=None, repr=False)  # (n_boot, 5) (E, A, B, alpha, beta)
    bootstrap_seed: int | None = None
    problems: tuple[str, ...] = ()  # why the optimum does not determine the law; empty when it does
    n_refined: int = 0  # starts refined in float64 on every run (the rest stopped at the screen)
    screen_rows: int = 0  # runs the starts were screened on (n_points unless the table is long)

    @property
    def identified(self) -> bool:
        return not self.problems

    def summary(self) -> dict:
        out = self.law.as_dict() | {
            "objective": self.objective,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "n_refined": self.n_refined,
            "n_at_optimum": self.n_at_optimum,
            "screen_rows": self.screen_rows,
            "converged": self.converged,
            "identified": self.identified,
            "problems": list(self.problems),
            "tie": self.tie,
        }
        if self.bootstrap is not None:
            out["ci"] = self.confidence_intervals()
            out["n_bootstrap"] = int(self.bootstrap.shape[0])
        return out

    def bootstrap_table(self) -> dict[str, np.ndarray]:
        """Bootstrap draws of every reported quantity, including the derived exponents a and b."""
        E, A, B, alpha, beta = self.bootstrap.T
        return {
            "E": E,
            "A": A,
            "B": B,
            "alpha": alpha,
            "beta": beta,
            "a": beta / (alpha + beta),
            "b": alpha / (alpha + beta),
        }

    def confidence_intervals(self, level: float = 0.95) -> dict[str, list[float]]:
        """Percentile intervals over the bootstrap draws (Epoch 2024 uses 2.5/97.5 %)."""
        if self.bootstrap is None:
            return {}
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        return {
            k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for k, v in self.bootstrap_table().items()
        }


def _law_from_x(x: np.ndarray) -> ChinchillaLaw:
    a, b, e, alpha, beta = (float(v) for v in x)
    return ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)


def canonical_runs(*columns) -> list[np.ndarray]:
    """The columns as flat float arrays with the runs sorted by the first, then the next, ...

    Sums over runs are not associative in floating point: sorted, the fit is the same to the last
    bit however the table was ordered."""
    arrays = [np.asarray(v, dtype=float).ravel() for v in columns]
    if len({a.size for a in arrays}) != 1:
        return arrays  # the caller reports the mismatch
    order = np.lexsort(arrays[::-1])
    return [a[order] for a in arrays]


def _check_inputs(N, D, loss, n_params: int):
    N, D, loss = canonical_runs(N, D, loss)
    if not (N.shape == D.shape == loss.shape):
        raise InputError(f"N, D and loss must have the same length (got {N.size}, {D.size}, {loss.size})")
    for name, v in (("N", N), ("D", D), ("loss", loss)):
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise InputError(f"column '{name}' must be finite and > 0 for a parametric fit")
    if N.size <= n_params:
        raise InputError(
            f"the parametric fit has {n_params} parameters but only {N.size} runs; need more runs than parameters"
        )
    return N, D, loss


# Mixed precision: every start runs L-BFGS to convergence in float32 (half the memory traffic of
# float64, and float32 resolves the Huber sum to ~1e-7 relative), then the starts that ended in
# the best basin are refined in float64 to the full tolerance. Only the selection of the best
# start uses float32; every reported number comes from the float64 refinement.
SCREEN_FTOL = 1e-7
POLISH_BAND = 1e-2  # refine starts whose screened objective is within 1 % of the best
POLISH_MIN = 32  # ... and at least this many of the best, whatever their spread
# ... but on a long table at most as many as keep (starts × runs) under this many terms per
# evaluation: ~1000 starts reach the optimum on Epoch's 240 runs, 40 do as well on 200 000.
POLISH_ELEMENTS = 1 << 23


def fit_parametric(
    N,
    D,
    loss,
    *,
    tie: bool = False,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
    reduction: str = "sum",
    max_iter: int = 1000,
    progress=None,
    refine_progress=None,
    device=None,
) -> ParametricFit:
    """Approach 3 from every start of the grid; returns the best (lowest Huber sum) fit.

    `progress(done)` follows the screen of the starts, `refine_progress(done)` the float64 refinement
    of the best of them (`ParametricFit.n_refined` starts).

    `reduction="mean"` is accepted for compatibility with code that averages the Huber loss, and is
    rescaled to the sum: the optimum is the same, and our stopping test is relative, so the smaller
    scale cannot stop the optimiser early (with scipy's default tolerances a mean objective stops
    L-BFGS too early: Besiroglu et al. 2024, notebook section "Replicate with lower loss scale").
    """
    if reduction not in ("sum", "mean"):
        raise InputError(f"unknown reduction '{reduction}'; valid: sum, mean")
    n_free = 4 if tie else 5
    N, D, loss = _check_inputs(N, D, loss, n_free)
    identify.check_law_inputs(N, D, loss)
    grid = hoffmann_grid() if starts is None else np.asarray(starts, float)
    if tie:
        grid = np.unique(grid[:, :4], axis=0)
    subsample = screen_rows(N.size)
    sN, sD, sL = (N, D, loss) if subsample is None else (N[subsample], D[subsample], loss[subsample])
    screen = ChinchillaObjective(sN, sD, sL, delta=delta, tie=tie, dtype=torch.float32, device=device)
    screened = minimize_batched(
        screen,
        torch.as_tensor(grid, dtype=torch.float32, device=device),
        max_iter=max_iter,
        ftol=SCREEN_FTOL,
        progress=progress,
    )
    f = screened.f.double().cpu().numpy()
    finite = np.isfinite(f)
    if not finite.any():
        raise InputError("no start of the parametric fit reached a finite objective; check the data")
    ranked = np.argsort(np.where(finite, f, np.inf))
    best_f = f[ranked[0]]
    chosen = ranked[: max(POLISH_MIN, int(np.sum(f[finite] <= best_f * (1 + POLISH_BAND))))]
    chosen = chosen[finite[chosen]][: max(POLISH_MIN, POLISH_ELEMENTS // N.size)]
    objective = ChinchillaObjective(N, D, loss, delta=delta, tie=tie, device=device)
    starts64 = screened.x[torch.as_tensor(chosen, device=screened.x.device)].double()
    # Refine in coordinates whitened by the Hessian at the best screened point (see _Whitened).
    whitened = _Whitened(objective, starts64[0], _inverse_sqrt_hessian(objective, starts64[0]))
    refined = minimize_batched(
        whitened, whitened.to_z(starts64), max_iter=max_iter, unit_first_step=False, progress=refine_progress
    )
    refined = replace(refined, x=whitened.to_x(refined.x))
    fit = _best_of(refined, objective, grid.shape[0], N.size, tie)
    return replace(fit, problems=_problems(fit, objective), screen_rows=sN.size)


def _problems(fit: ParametricFit, objective: ChinchillaObjective) -> tuple[str, ...]:
    """Why the optimum does not determine the law (`scaling.identify`); empty when it does."""
    law = fit.law
    problems = identify.value_problems(law.as_dict())
    problems += [f"{k} = {v:.3g}: the {k} term is constant" for k, v in (("alpha", law.alpha), ("beta", law.beta))
                 if not v > 0]  # fmt: skip
    x = torch.as_tensor(fit.x[: objective.n_free], dtype=torch.float64, device=objective.logN.device)
    flat = identify.flatness_problem(identify.hessian_eigenvalues(objective, x))
    return tuple(problems + ([flat] if flat else []))


def _best_of(
    result: BatchedResult, objective: ChinchillaObjective, n_starts: int, n_points: int, tie: bool
) -> ParametricFit:
    f = result.f.cpu().numpy()
    finite = np.isfinite(f)
    best = int(np.nanargmin(np.where(finite, f, np.inf)))
    x = objective.expand(result.x[best : best + 1]).cpu().numpy()[0]
    n_at = int(np.sum(finite & (f <= f[best] * (1 + 1e-6))))
    return ParametricFit(
        law=_law_from_x(x),
        objective=float(f[best]),
        n_points=n_points,
        n_starts=n_starts,
        n_at_optimum=n_at,
        converged=bool(result.success[best]),
        tie=tie,
        x=x,
        n_refined=int(f.size),
    )


class _Whitened:
    """The objective in coordinates z with x = center + L·z (chain rule: grad_z = Lᵀ grad_x)."""

    def __init__(self, objective, center: torch.Tensor, L: torch.Tensor):
        self.objective, self.center, self.L = objective, center, L

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        return self.center + z @ self.L.T

    def to_z(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve(self.L, (x - self.center).T).T

    def __call__(self, z: torch.Tensor, rows: torch.Tensor):
        f, g = self.objective(self.to_x(z), rows)
        return f, g @ self.L


def _inverse_sqrt_hessian(objective, x: torch.Tensor, step: float = 1e-5) -> torch.Tensor:
    """L with L·Lᵀ ≈ H⁻¹ at x, from central differences of the analytic gradient.

    Eigenvalues are floored at 1e-9 of the largest: a nearly flat direction (e.g. A and alpha
    trading off) then gets a long but finite scale instead of an infinite one.
    """
    P = x.numel()
    probes = torch.cat(
        [
            x + step * torch.eye(P, dtype=x.dtype, device=x.device),
            x - step * torch.eye(P, dtype=x.dtype, device=x.device),
        ]
    )
    _, g = objective(probes, torch.zeros(2 * P, dtype=torch.long, device=x.device))
    H = (g[:P] - g[P:]) / (2 * step)
    H = 0.5 * (H + H.T)
    eigvals, eigvecs = torch.linalg.eigh(H)
    eigvals = eigvals.clamp_min(1e-9 * eigvals.abs().max())
    return eigvecs / eigvals.sqrt()


# Bootstrap weights are one number per (replicate, run), held as float64: this many at most (1 GiB).
BOOTSTRAP_MAX_WEIGHTS = 1 << 27


def check_bootstrap_size(n_boot: int, n_runs: int) -> None:
    """InputError before anything is allocated when n_boot replicates of n_runs runs would not fit."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise InputError(f"--bootstrap must be a whole number >= 1, got {n_boot}")
    if n_boot * n_runs > BOOTSTRAP_MAX_WEIGHTS:
        most = BOOTSTRAP_MAX_WEIGHTS // n_runs
        raise InputError(
            f"--bootstrap {n_boot} on {n_runs} runs needs {n_boot * n_runs * 8 / 2**30:.3g} GiB of resampling "
            f"weights (at most {BOOTSTRAP_MAX_WEIGHTS * 8 / 2**30:.0f} GiB); use --bootstrap {most} or fewer"
        )


def bootstrap_parametric(
    N,
    D,
    loss,
    fit: ParametricFit,
    *,
    n_boot: int = 1000,
    seed: int = 42,
    delta: float = HUBER_DELTA,
    max_iter: int = 1000,
    progress=None,
    device=None,
) -> ParametricFit:
    """Resample runs with replacement `n_boot` times and refit each replicate (as Besiroglu et al. 2024).

    Every replicate starts from the full-data optimum (Epoch starts from Hoffmann's constants);
    all replicates run as one batch, each with its own multinomial weights. The replicates are
    solved in coordinates whitened by the full-data Hessian: a resample's objective has nearly the
    same curvature, so its first gradient step is already close to Newton's and L-BFGS needs a
    fraction of the iterations. The optimum found is the same; only the path to it changes.
    """
    N, D, loss = _check_inputs(N, D, loss, 4 if fit.tie else 5)
    check_bootstrap_size(n_boot, N.size)
    rng = np.random.default_rng(seed)
    n = N.size
    counts = np.empty((n_boot, n))  # filled row by row: no second copy of the (n_boot, n) weights
    for row in counts:
        row[:] = np.bincount(rng.integers(0, n, n), minlength=n)
    objective = ChinchillaObjective(N, D, loss, delta=delta, weights=counts, tie=fit.tie, device=device)
    center = torch.as_tensor(fit.x[: objective.n_free], dtype=torch.float64, device=device)
    full_data = ChinchillaObjective(N, D, loss, delta=delta, tie=fit.tie, device=device)
    whitened = _Whitened(objective, center, _inverse_sqrt_hessian(full_data, center))
    z0 = torch.zeros(n_boot, objective.n_free, dtype=torch.float64, device=device)
    # ftol 1e-12 relative is what scipy's L-BFGS-B ftol=1e-15 means at f ≈ 1e-3 (scipy scales by
    # max(|f|, 1)): each replicate's CI contribution does not need more digits than that.
    result = minimize_batched(whitened, z0, max_iter=max_iter, ftol=1e-12, progress=progress, unit_first_step=False)
    p = objective.expand(whitened.to_x(result.x)).cpu().numpy()
    draws = np.column_stack([np.exp(p[:, 2]), np.exp(p[:, 0]), np.exp(p[:, 1]), p[:, 3], p[:, 4]])
    draws = draws[np.isfinite(result.f.cpu().numpy()) & np.all(np.isfinite(draws), 1)]
    return dataclasses.replace(fit, bootstrap=draws, bootstrap_seed=seed)
