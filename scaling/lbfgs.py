"""Batched L-BFGS: many independent small minimisations advanced together as tensors.

Scaling-law fits need the same low-dimensional problem solved from thousands of starting points
(Hoffmann's 4500-point grid) and again for every bootstrap replicate. A Python loop over
`scipy.optimize.minimize` spends almost all its time in per-call overhead; here every member of
the batch is one row of a `(B, P)` tensor and one iteration advances all active rows at once.

Each row keeps its own history, step and convergence state, so the result for a row is the same
as running L-BFGS on that row alone (Nocedal & Wright, Algorithm 7.4 two-loop recursion, with a
backtracking Armijo line search). Converged rows drop out of the active set, so late iterations
only pay for the rows that still move.

Stopping is scale-free: the function decrease is compared with |f| itself, not with
max(|f|, 1) as scipy's `ftol` does. That is why a mean-reduced Huber objective (~1e-6) does not
stop early here (Epoch, "Replicate with lower loss scale").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# objective(x, rows) -> (f, grad): x is (b, P) for the batch rows `rows` (b,) of the full batch;
# returns f (b,) and its gradient (b, P). Rows are passed so that per-row data (e.g. bootstrap
# weights) can be gathered.
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

STATUS_CONVERGED_GRAD = 0
STATUS_CONVERGED_F = 1
STATUS_MAX_ITER = 2
STATUS_LINE_SEARCH = 3  # no decrease found along the search direction (like scipy's ABNORMAL)
STATUS_NONFINITE = 4  # the start itself is not finite


@dataclass(frozen=True)
class BatchedResult:
    x: torch.Tensor  # (B, P) final point per row
    f: torch.Tensor  # (B,) objective at x
    grad_norm: torch.Tensor  # (B,) max-abs gradient at x
    n_iter: torch.Tensor  # (B,) iterations taken
    status: torch.Tensor  # (B,) one of the STATUS_* codes

    @property
    def success(self) -> torch.Tensor:
        """Rows that met a convergence test (gradient or relative decrease)."""
        return self.status <= STATUS_CONVERGED_F


def minimize_batched(
    objective: Objective,
    x0: torch.Tensor,
    *,
    max_iter: int = 1000,
    memory: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-14,
    c1: float = 1e-4,
    max_backtracks: int = 40,
    progress: Callable[[int], None] | None = None,
    unit_first_step: bool = True,
) -> BatchedResult:
    """Minimise `objective` independently from every row of `x0` (B, P).

    A row stops when max|grad| <= gtol, or when one step lowers f by no more than ftol·|f|
    (relative, so independent of how the objective is scaled), or after `max_iter` iterations.
    """
    x = x0.detach().clone()
    B, P = x.shape
    dtype, device = x.dtype, x.device
    every = torch.arange(B, device=device)

    f, g = objective(x, every)
    status = torch.full((B,), -1, dtype=torch.long, device=device)
    status[~(torch.isfinite(f) & torch.isfinite(g).all(1))] = STATUS_NONFINITE
    n_iter = torch.zeros(B, dtype=torch.long, device=device)

    # Per-row curvature history, newest pair in slot (count-1) % memory; count = 0 means empty.
    S = torch.zeros(B, memory, P, dtype=dtype, device=device)
    Y = torch.zeros(B, memory, P, dtype=dtype, device=device)
    count = torch.zeros(B, dtype=torch.long, device=device)

    status[(status < 0) & (g.abs().amax(1) <= gtol)] = STATUS_CONVERGED_GRAD
    for _ in range(max_iter):
        rows = torch.nonzero(status < 0).squeeze(1)
        if rows.numel() == 0:
            break
        xa, fa, ga = x[rows], f[rows], g[rows]
        d = _lbfgs_direction(ga, S[rows], Y[rows], count[rows])

        # Not a descent direction (numerical trouble in the history): restart from steepest descent.
        slope = (d * ga).sum(1)
        bad = ~(slope < 0)
        if bad.any():
            d[bad] = -ga[bad]
            count[rows[bad]] = 0
            slope = (d * ga).sum(1)
        # With no curvature pairs yet the direction is -g, whose length says nothing about the
        # right step: try a unit-length step instead (as L-BFGS-B does).
        t = torch.ones_like(fa)
        if unit_first_step:
            fresh = count[rows] == 0
            t[fresh] = 1.0 / d[fresh].norm(dim=1).clamp_min(1e-10)

        x_new, f_new, g_new, ok = _backtracking(objective, rows, xa, fa, d, t, slope, c1, max_backtracks)
        n_iter[rows] += 1

        # Rows whose line search found no decrease keep their point and stop.
        status[rows[~ok]] = STATUS_LINE_SEARCH
        keep = ok.nonzero().squeeze(1)
        rk = rows[keep]
        s = x_new[keep] - xa[keep]
        y = g_new[keep] - ga[keep]
        f_old = fa[keep]
        x[rk], f[rk], g[rk] = x_new[keep], f_new[keep], g_new[keep]

        # Store (s, y) only when the curvature condition holds, which keeps the inverse-Hessian
        # approximation positive definite without a Wolfe line search.
        sy = (s * y).sum(1)
        good = sy > 1e-12 * (y * y).sum(1).sqrt() * (s * s).sum(1).sqrt()
        slot = count[rk] % memory
        rg, sg = rk[good], slot[good]
        S[rg, sg] = s[good]
        Y[rg, sg] = y[good]
        count[rg] += 1

        f_new_k = f[rk]
        small_grad = g[rk].abs().amax(1) <= gtol
        small_step = (f_old - f_new_k) <= ftol * torch.maximum(f_old.abs(), f_new_k.abs())
        status[rk[small_step]] = STATUS_CONVERGED_F
        status[rk[small_grad]] = STATUS_CONVERGED_GRAD
        if progress is not None:
            progress(int((status >= 0).sum()))

    status[status < 0] = STATUS_MAX_ITER
    return BatchedResult(x=x, f=f, grad_norm=g.abs().amax(1), n_iter=n_iter, status=status)


def _lbfgs_direction(g, S, Y, count):
    """L-BFGS search direction -H·g for every row, from the compact form of H.

    Byrd, Nocedal & Schnabel (1994) Eq. 2.6 / Nocedal & Wright Eq. 7.24:
        H = γI + [S γY] M [S γY]ᵀ,   M = [[R⁻ᵀ(D + γYᵀY)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]],
    with S, Y the stored pairs oldest first, R the upper triangle of SᵀY and D its diagonal. It
    equals the two-loop recursion (Alg. 7.4) but is a handful of batched matrix products instead
    of 4m small vector operations, which matters when only a few rows are still active.
    Empty history slots are zero columns with a unit diagonal in R, so they contribute nothing.
    """
    B, m, P = S.shape
    ar = torch.arange(m, device=g.device)
    # Chronological order: slot (count - m + k) % m is the k-th oldest; k < m - count are empty.
    order = (count[:, None] - m + ar) % m
    filled = (count[:, None] - m + ar) >= 0
    S = S.gather(1, order[:, :, None].expand(B, m, P)) * filled[:, :, None]
    Y = Y.gather(1, order[:, :, None].expand(B, m, P)) * filled[:, :, None]
    SY = S @ Y.transpose(1, 2)  # (B, m, m): s_i·y_j
    R = torch.triu(SY) + torch.diag_embed((~filled).to(g.dtype))
    d = torch.diagonal(SY, dim1=1, dim2=2)
    # Initial scaling γ = s'y / y'y of the newest pair (Eq. 7.20); 1 with no history.
    yy = (Y[:, -1] * Y[:, -1]).sum(1)
    has = (count > 0) & (yy > 0)
    gamma = torch.where(has, d[:, -1] / torch.where(has, yy, 1.0), 1.0)
    p1 = S @ g[:, :, None]  # (B, m, 1)
    p2 = gamma[:, None, None] * (Y @ g[:, :, None])
    v = torch.linalg.solve_triangular(R, p1, upper=True)
    inner = d[:, :, None] * v + gamma[:, None, None] * (Y @ (Y.transpose(1, 2) @ v)) - p2
    top = torch.linalg.solve_triangular(R.transpose(1, 2), inner, upper=False)
    Hg = gamma[:, None] * g + (S.transpose(1, 2) @ top)[:, :, 0] - gamma[:, None] * (Y.transpose(1, 2) @ v)[:, :, 0]
    return -Hg


# Step fractions tried together once the first (quadratic-model) backtrack has failed.
BACKTRACK_LADDER = torch.tensor([0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4])


def _backtracking(objective, rows, x, f, d, t, slope, c1, max_backtracks, c2=0.9, max_expansions=20):
    """Line search for all rows at once; only rows still searching are re-evaluated.

    Backtracks (safeguarded quadratic interpolation) until the Armijo condition holds. A row whose
    accepted step still descends steeply (weak Wolfe curvature test g(t)·d < c2·g(0)·d fails) then
    tries longer steps while Armijo keeps holding: without this, L-BFGS crawls through the
    piecewise-linear (Huber) regions of the objective with steps far too short.
    """
    x_new = x + t[:, None] * d
    f_new, g_new = objective(x_new, rows)
    ok = _armijo(f_new, g_new, f, t, slope, c1)
    for round_ in range(max_backtracks):
        fail = (~ok).nonzero().squeeze(1)
        if fail.numel() == 0:
            break
        tf, sf, f0, ft = t[fail], slope[fail], f[fail], f_new[fail]
        if round_ == 0:
            # Minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1t, 0.5t].
            quad = -sf * tf * tf / (2 * (ft - f0 - sf * tf))
            quad = torch.where(torch.isfinite(quad), quad, 0.5 * tf)
            t_try = torch.minimum(torch.maximum(quad, 0.1 * tf), 0.5 * tf)[:, None]
        else:
            # The model failed once: try a ladder of shorter steps in one call, keep the longest
            # that passes. One call instead of several halvings per stubborn row.
            t_try = tf[:, None] * BACKTRACK_LADDER.to(tf)
        k, c = t_try.shape
        xt = x[fail, None, :] + t_try[:, :, None] * d[fail, None, :]
        ft_c, gt_c = objective(xt.reshape(k * c, -1), rows[fail].repeat_interleave(c))
        ft_c, gt_c = ft_c.reshape(k, c), gt_c.reshape(k, c, -1)
        passed = _armijo(ft_c, gt_c, f0[:, None], t_try, sf[:, None], c1)
        pick = torch.where(passed.any(1), passed.to(torch.int8).argmax(1), c - 1)  # longest passing, else shortest
        ar = torch.arange(k, device=fail.device)
        t[fail] = t_try[ar, pick]
        x_new[fail], f_new[fail], g_new[fail] = xt[ar, pick], ft_c[ar, pick], gt_c[ar, pick]
        ok[fail] = passed[ar, pick]

    # Expansion for rows that passed on the first try but are still descending steeply.
    grow = ok & ((g_new * d).sum(1) < c2 * slope)
    for _ in range(max_expansions):
        idx = grow.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        t_try = 4.0 * t[idx]
        xt = x[idx] + t_try[:, None] * d[idx]
        ft_new, gt_new = objective(xt, rows[idx])
        better = _armijo(ft_new, gt_new, f[idx], t_try, slope[idx], c1) & (ft_new < f_new[idx])
        take = idx[better]
        t[take] = t_try[better]
        x_new[take], f_new[take], g_new[take] = xt[better], ft_new[better], gt_new[better]
        grow[idx] = better & ((gt_new * d[idx]).sum(1) < c2 * slope[idx])

    # Rows that never passed keep their old point.
    x_new[~ok], f_new[~ok] = x[~ok], f[~ok]
    return x_new, f_new, g_new, ok


def _armijo(f_new, g_new, f0, t, slope, c1):
    """Sufficient decrease f(t) <= f(0) + c1·t·g(0)·d, with finite value and gradient."""
    return torch.isfinite(f_new) & (f_new <= f0 + c1 * t * slope) & torch.isfinite(g_new).all(-1)
