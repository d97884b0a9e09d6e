"""Dormand–Prince 5(4) for a batch of independent trajectories of one ODE family.

The official PROSE generator (github.com/felix-lyx/prose, `prose_ode/symbolicregression/envs/`)
calls scipy's `solve_ivp` once per trajectory (rtol 1e-5, atol 1e-6, t = linspace(0, 6, 192), keep
only status 0 and max|u| < 1e3): ≈127 ms per trajectory on 2 CPU cores (`workbench bench prose`
times that loop side by side with this one). Here B trajectories (one family, each with its own parameters
and initial state) advance together: every Runge–Kutta stage is ONE call of the family's
lambdified right-hand side on a (dim, B_active) array, so the Python overhead per step is paid
once per batch instead of once per trajectory.

Method (Dormand & Prince 1980, "A family of embedded Runge–Kutta formulae", J. Comput. Appl.
Math. 6; Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.5 Table 5.2 for the tableau and §II.6
for the continuous extension):

- 7 stages, FSAL (the last stage is f at the new point, reused as the next step's first stage),
  5th-order solution propagated (local extrapolation), 4th-order embedded solution for the error.
- Each member has its OWN step size and accept/reject decision (§II.4): the error norm is the
  RMS over components of err_i / (atol + rtol·max(|y_i|, |y_new,i|)), a step is accepted when the
  norm is ≤ 1, and h ← h·clip(0.9·norm^(-1/5), 0.2, 10) (no growth right after a rejection).
- Initial step: the §II.4 "starting step size" algorithm, per member.
- Values on the shared output grid come from the 4th-order continuous extension of §II.6
  (the coefficients of Hairer's DOPRI5 dense output), evaluated for every grid time that falls
  inside an accepted step.

A member fails (ok = False, its row of the output is undefined) on: step size underflow
(h < 10 ulp of t, what scipy's status -1 means for a blow-up), too many steps, a non-finite
state, or a value ≥ `max_abs` at an output time (PROSE's rejection rule). States far beyond `max_abs`
(`BLOWUP_FACTOR`× it) stop the member at once, since such a trajectory is rejected anyway.

None of the 15 PROSE families is stiff at these tolerances over t ∈ [0, 6] (the official code uses
BDF/LSODA for most; an explicit method needs no more steps there), so one explicit method
serves all of them; `tests/test_odes.py` checks every family against a tight reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Dormand–Prince 5(4) Butcher tableau (HNW I, Table II.5.2).
C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),  # = B (FSAL)
)
B5 = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
B4 = np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
E = B5 - B4  # local error estimate y5 - y4 = h * sum_i E_i k_i
# Continuous extension (HNW I §II.6, DOPRI5 dense output): with theta = (t - t_n)/h,
#   y(theta) = y_n + theta (r2 + (1-theta)(r3 + theta (r4 + (1-theta) r5)))
# where r2 = y_{n+1} - y_n, r3 = h k1 - r2, r4 = r2 - h k7 - r3, r5 = h sum_i D_i k_i.
D = np.array(
    [
        -12715105075 / 11282082432,
        0.0,
        87487479700 / 32700410799,
        -10690763975 / 1880347072,
        701980252875 / 199316789632,
        -1453857185 / 822651844,
        69997945 / 29380423,
    ]
)

ORDER = 5  # of the error estimate's exponent: h ~ err^(-1/(4+1))
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
BLOWUP_FACTOR = 1e3  # stop a member once |y| > BLOWUP_FACTOR * max_abs (already rejected)

RHS = Callable[[float, np.ndarray, Sequence[np.ndarray]], np.ndarray]


def _norm(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """RMS over components (axis 0) of x / scale, one value per member."""
    return np.sqrt(np.mean((x / scale) ** 2, axis=0))


def _initial_step(rhs, t0, y0, f0, params, direction_span, rtol, atol):
    """HNW I §II.4 starting step, per member (order p = 4 of the embedded pair + 1)."""
    scale = atol + rtol * np.abs(y0)
    d0, d1 = _norm(y0, scale), _norm(f0, scale)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.maximum(d1, 1e-300))
    h0 = np.minimum(h0, direction_span)
    y1 = y0 + h0 * f0
    with np.errstate(all="ignore"):
        f1 = rhs(t0 + h0, y1, params)
        d2 = _norm(f1 - f0, scale) / h0
        big = np.maximum(d1, d2)
        h1 = np.where(big <= 1e-15, np.maximum(1e-6, h0 * 1e-3), (0.01 / big) ** (1 / ORDER))
    h = np.minimum(100 * h0, h1)
    return np.where(np.isfinite(h) & (h > 0), np.minimum(h, direction_span), 1e-6)


def integrate_batch(
    rhs: RHS,
    params: np.ndarray,
    y0: np.ndarray,
    t_eval: np.ndarray,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    max_abs: float = 1e3,
    max_steps: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate B trajectories of one family on the shared grid `t_eval` (starting at t_eval[0]).

    `rhs(t, y, p)` takes y of shape (dim, n) and p as a sequence of per-member arrays of shape
    (n,) (one per family parameter); it is `ODEFamily.numeric_rhs()` for the PROSE families.
    `params` is (B, P) and `y0` is (B, dim). Returns (u, ok): u of shape (B, T, dim) with the
    values at `t_eval` (rows where ok is False are undefined) and ok of shape (B,).
    """
    t_eval = np.asarray(t_eval, dtype=float)
    params = np.asarray(params, dtype=float)
    y0 = np.asarray(y0, dtype=float)
    n, dim = y0.shape
    t_end = t_eval[-1]
    out = np.full((n, t_eval.size, dim), np.nan)
    out[:, 0] = y0
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return out, ok

    # Working set: only the members still integrating, compacted when some finish or fail.
    ids = np.arange(n)
    p = [params[:, k].copy() for k in range(params.shape[1])]
    y = y0.T.copy()  # (dim, n)
    t = np.full(n, t_eval[0])
    with np.errstate(all="ignore"):
        f = rhs(t[0], y, p)
        h = _initial_step(rhs, t[0], y, f, p, t_end - t_eval[0], rtol, atol)
    just_rejected = np.zeros(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    next_out = np.ones(n, dtype=np.int64)  # index of the next grid time to fill
    k = [None] * 7
    limit = max_abs * BLOWUP_FACTOR

    while ids.size:
        last = h >= t_end - t
        h = np.where(last, t_end - t, h)
        k[0] = f
        with np.errstate(all="ignore"):
            for s in range(1, 7):
                ys = y + h * sum(a * k[j] for j, a in enumerate(A[s]) if a != 0.0)
                k[s] = rhs(t + C[s] * h, ys, p)
            y_new = ys  # stage 7 is evaluated at the 5th-order solution (FSAL)
            err = h * sum(e * k[j] for j, e in enumerate(E) if e != 0.0)
            scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
            err_norm = _norm(err, scale)
        finite = np.isfinite(err_norm)
        accept = finite & (err_norm <= 1.0)
        steps += 1

        # Step-size update (HNW I §II.4), per member.
        with np.errstate(all="ignore"):
            factor = np.where(err_norm == 0, MAX_FACTOR, SAFETY * err_norm ** (-1.0 / ORDER))
        factor = np.clip(np.where(finite, factor, MIN_FACTOR), MIN_FACTOR, MAX_FACTOR)
        factor = np.where(accept & just_rejected, np.minimum(factor, 1.0), factor)
        t_new = np.where(last, t_end, t + h)

        failed = np.zeros(ids.size, dtype=bool)
        if accept.any():
            a = np.flatnonzero(accept)
            failed[a] |= np.any(np.abs(y_new[:, a]) > limit, axis=0)
            failed[a] |= ~_fill_grid(
                out, t_eval, ids[a], next_out, a, t[a], h[a], t_new[a], y[:, a], y_new[:, a], k, a, max_abs
            )
        # Rejected: shrink; underflow means the solver cannot continue (scipy's status -1).
        h_next = h * factor
        underflow = ~accept & (h_next < 10 * np.abs(np.nextafter(t, np.inf) - t))
        failed |= underflow | (steps >= max_steps)

        t = np.where(accept, t_new, t)
        y = np.where(accept, y_new, y)
        f = np.where(accept, k[6], f)
        h = h_next
        just_rejected = ~accept
        finished = accept & last & ~failed
        ok[ids[finished]] = True
        drop = finished | failed
        if drop.any():
            keep = ~drop
            ids, t, h, y, f = ids[keep], t[keep], h[keep], y[:, keep], f[:, keep]
            p = [x[keep] for x in p]
            just_rejected, steps, next_out = just_rejected[keep], steps[keep], next_out[keep]
    return out, ok


def _fill_grid(out, t_eval, members, next_out, local, t0, h, t1, y0, y1, k, cols, max_abs) -> np.ndarray:
    """Write the continuous extension at every grid time in (t0, t1]; False where |u| >= max_abs.

    `members` are the output rows, `local` the working-set positions (next_out is indexed by
    them), `cols` the columns of the stage arrays k for these members.
    """
    hi = np.searchsorted(t_eval, t1, side="right")
    lo = next_out[local]
    count = hi - lo
    good = np.ones(members.size, dtype=bool)
    if not count.any():
        return good
    r2 = y1 - y0
    r3 = h * k[0][:, cols] - r2
    r4 = r2 - h * k[6][:, cols] - r3
    r5 = h * sum((d * k[j][:, cols] for j, d in enumerate(D) if d != 0.0), np.zeros_like(r2))
    for j in range(int(count.max())):
        sel = np.flatnonzero(count > j)
        idx = lo[sel] + j
        theta = (t_eval[idx] - t0[sel]) / h[sel]
        th1 = 1.0 - theta
        val = y0[:, sel] + theta * (r2[:, sel] + th1 * (r3[:, sel] + theta * (r4[:, sel] + th1 * r5[:, sel])))
        # The grid end is the step end exactly: use y1 there, no interpolation rounding.
        val = np.where(idx == t_eval.size - 1, y1[:, sel], val)
        out[members[sel], idx] = val.T
        good[sel] &= np.all(np.abs(val) < max_abs, axis=0)  # also False for NaN
    next_out[local] = hi
    return good
