"""Stochastic EnKF analysis (`scaling/medida/enkf.py`; Burgers et al. 1998): its three algebraically equal forms,
localisation, the Kalman limit, input checks, and the `workbench bench medida` smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scaling.medida.enkf import EnKFConfig, analysis, gaspari_cohn, periodic_taper
from workbench.errors import InputError

N_STATE, LENGTH, OBS_STD = 32, 10.0, 0.1


def smooth_truth(n: int = N_STATE) -> np.ndarray:
    x = LENGTH * np.arange(n) / n
    return np.sin(2 * np.pi * x / LENGTH) + 0.5 * np.cos(6 * np.pi * x / LENGTH)


def forecast_ensemble(members: int, n: int = N_STATE, seed: int = 0, spread: float = 0.25) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(smooth_truth(n) + 0.3 + spread * rng.standard_normal((members, n)))


def run_form(forecast, form: str, seed: int = 7, **config) -> torch.Tensor:
    cfg = EnKFConfig(members=forecast.shape[0], form=form, **config)
    obs = torch.as_tensor(smooth_truth(forecast.shape[1]))
    return analysis(forecast, obs, OBS_STD, cfg, generator=torch.Generator().manual_seed(seed), length=LENGTH)


@pytest.mark.parametrize("members,inflation", [(16, 1.0), (64, 1.0), (16, 1.3), (64, 1.3)])
def test_three_forms_agree(members, inflation):
    # Same generator seed → same perturbed observations; the forms differ only in round-off.
    # Measured max |Δ| ≤ 2.5e-15 here; 1e-10 leaves room for other BLAS builds.
    X = forecast_ensemble(members)
    explicit = run_form(X, "explicit", inflation=inflation)
    for form in ("ensemble", "state", "auto"):
        assert torch.max(torch.abs(run_form(X, form, inflation=inflation) - explicit)).item() < 1e-10, form


def test_inflation_changes_the_analysis():
    X = forecast_ensemble(16)
    assert torch.max(torch.abs(run_form(X, "state", inflation=1.5) - run_form(X, "state"))).item() > 1e-3


def test_wide_localisation_is_no_localisation():
    # GC(z) = 1 − (5/3)z² + O(z³): with c = 1e4·L every taper entry is within 1e-8 of 1.
    X = forecast_ensemble(16)
    wide = run_form(X, "state", localisation=1e4 * LENGTH)
    assert torch.max(torch.abs(wide - run_form(X, "state"))).item() < 1e-6
    narrow = run_form(X, "state", localisation=0.5)
    assert torch.max(torch.abs(narrow - run_form(X, "state"))).item() > 1e-3


def test_gaspari_cohn_values():
    assert gaspari_cohn(np.array([0.0]))[0] == 1.0
    np.testing.assert_array_equal(gaspari_cohn(np.array([2.0, 2.5, 10.0, -3.0])), 0.0)
    eps = 1e-9
    for z in (1.0, 2.0):  # continuous where the pieces meet (value 5/24 at z = 1)
        below, above = gaspari_cohn(np.array([z - eps, z + eps]))
        assert abs(below - above) < 1e-7
    assert abs(gaspari_cohn(np.array([1.0]))[0] - 5 / 24) < 1e-12
    z = np.linspace(0, 2, 201)
    values = gaspari_cohn(z)
    assert np.all(np.diff(values) <= 1e-15) and np.all(values >= -1e-15)  # monotone, non-negative
    taper = periodic_taper(8, 8.0, 1.5)
    np.testing.assert_allclose(taper, taper.T)
    np.testing.assert_allclose(np.diag(taper), 1.0)


def test_huge_ensemble_mean_is_the_kalman_update():
    """m = 200,000 members drawn from N(x_b, B): the analysis mean → x_b + B(B + R)⁻¹(y − x_b).

    Monte Carlo error ~ σ/√m ≈ 0.5/450 ≈ 1e-3 per component; measured max 1.1e-3, tolerance 1e-2
    (the update y − x_b itself is O(1)).
    """
    n, m, r = 8, 200_000, 0.04
    rng = np.random.default_rng(3)
    x = np.arange(n)
    B = 0.25 * 0.6 ** np.abs(x[:, None] - x[None, :])  # AR(1) correlation: positive definite
    xb, y = np.zeros(n), np.sin(2 * np.pi * x / n)
    X = xb + rng.standard_normal((m, n)) @ np.linalg.cholesky(B).T
    cfg = EnKFConfig(members=m)
    out = (
        analysis(torch.as_tensor(X), torch.as_tensor(y), math.sqrt(r), cfg, generator=torch.Generator().manual_seed(0))
        .mean(dim=0)
        .numpy()
    )
    kalman = xb + B @ np.linalg.solve(B + r * np.eye(n), y - xb)
    assert np.max(np.abs(out - kalman)) < 1e-2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"members": 1},
        {"members": 2.5},
        {"inflation": 0.9},
        {"inflation": float("nan")},
        {"localisation": -1.0},
        {"form": "woodbury"},
    ],
)
def test_bad_config_is_input_error(kwargs):
    with pytest.raises(InputError):
        EnKFConfig(**kwargs)


def test_bad_analysis_inputs_are_input_errors():
    X = forecast_ensemble(16)
    obs = torch.as_tensor(smooth_truth())
    with pytest.raises(InputError):
        analysis(X[:1], obs, OBS_STD, EnKFConfig(members=16))
    with pytest.raises(InputError):
        analysis(X, obs, 0.0, EnKFConfig(members=16))
    with pytest.raises(InputError):  # localisation needs the state-space form
        analysis(X, obs, OBS_STD, EnKFConfig(members=16, localisation=1.0, form="ensemble"), length=LENGTH)
    with pytest.raises(InputError):  # and the domain length
        analysis(X, obs, OBS_STD, EnKFConfig(members=16, localisation=1.0))


def test_medida_bench_quick_runs_and_agrees():
    """`workbench bench medida --quick`: keys and agreement only; speed is never asserted: shared machines are noisy."""
    from scaling.medida.bench import format_result, run

    result = run(quick=True)
    assert result["same_optimum"] is True
    ks = result["etdrk4"]
    assert set(ks["member_steps_per_s"]) == {"numpy_loop", "torch_batched"} and ks["ratio"] > 0
    assert ks["max_abs_diff"] < 1e-9
    runs = result["enkf"]["runs"]
    assert [r["members"] for r in runs] == [128, 1024] and [r["form"] for r in runs] == ["ensemble", "state"]
    assert all(r["max_abs_mean_diff"] < 1e-8 and r["auto_s"] > 0 and r["explicit_s"] > 0 for r in runs)
    text = format_result(result)
    assert "member-steps/s" in text and "explicit" in text
