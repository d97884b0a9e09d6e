"""Batched L-BFGS: each row behaves like an independent minimisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, rosen, rosen_der

from scaling.lbfgs import STATUS_NONFINITE, minimize_batched


def rosenbrock(x, rows):
    """Batched 4-D Rosenbrock function and its gradient."""
    a, b = x[:, :-1], x[:, 1:]
    f = (100 * (b - a**2) ** 2 + (1 - a) ** 2).sum(1)
    g = torch.zeros_like(x)
    g[:, :-1] += -400 * a * (b - a**2) - 2 * (1 - a)
    g[:, 1:] += 200 * (b - a**2)
    return f, g


def test_rows_reach_the_same_minimum_as_scipy():
    starts = np.random.default_rng(0).uniform(-2, 2, size=(64, 4))
    result = minimize_batched(rosenbrock, torch.as_tensor(starts))
    assert result.success.all()
    for i in range(0, 64, 8):
        ref = minimize(rosen, starts[i], jac=rosen_der, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15})
        # Rosenbrock in 4-D has a global minimum at 1 and a local one near (-1, 1, 1, 1): a row may
        # end in either, but then it must agree with scipy's point from the same start, or be better.
        assert float(result.f[i]) <= ref.fun + 1e-10
    assert torch.allclose(result.x[result.f < 1e-12], torch.tensor(1.0, dtype=torch.float64), atol=1e-5)


def test_rows_are_independent_of_the_batch():
    starts = torch.as_tensor(np.random.default_rng(1).uniform(-2, 2, size=(16, 4)))
    together = minimize_batched(rosenbrock, starts)
    alone = minimize_batched(rosenbrock, starts[5:6])
    assert torch.equal(together.x[5], alone.x[0])
    assert together.n_iter[5] == alone.n_iter[0]


def test_stopping_is_scale_free():
    # Scaling the objective by 1e-6 (a mean instead of a sum) must not change where it stops.
    starts = torch.as_tensor(np.random.default_rng(2).uniform(-2, 2, size=(8, 4)))

    def scaled(x, rows):
        f, g = rosenbrock(x, rows)
        return 1e-6 * f, 1e-6 * g

    a = minimize_batched(rosenbrock, starts, gtol=0.0)
    b = minimize_batched(scaled, starts, gtol=0.0)
    assert torch.allclose(a.x, b.x, atol=1e-6)


def test_nonfinite_start_is_flagged_not_fatal():
    starts = torch.tensor([[0.0, 0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0, 0.0]], dtype=torch.float64)
    result = minimize_batched(rosenbrock, starts)
    assert bool(result.success[0]) and int(result.status[1]) == STATUS_NONFINITE
    assert result.f[0] == pytest.approx(0.0, abs=1e-12)
