"""Mu-scaling loss prediction (scaling/mup_predict.py) and `workbench lm predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from scaling.mup_predict import bootstrap_band, fit_power_law, predict_sweep
from tests.conftest import assert_clean_error, run_cli
from workbench.errors import InputError

A, B, C = 30.0, -0.35, 1.85
N = np.array([2e4, 5e4, 1e5, 2e5, 4e5, 1.6e6])  # the last is 4x the largest fitted
TRUE = A * N**B + C


def test_noise_free_data_are_recovered_exactly():
    fit = fit_power_law(N[:5], TRUE[:5])
    assert (fit.a, fit.b, fit.c) == pytest.approx((A, B, C), rel=1e-6)
    assert fit(N[5]) == pytest.approx(TRUE[5], rel=1e-9)
    low, high = bootstrap_band(N[:5], TRUE[:5], fit, N[5:])
    assert low[0] == pytest.approx(TRUE[5], rel=1e-6) and high[0] == pytest.approx(TRUE[5], rel=1e-6)


def test_exactly_three_sizes_interpolate_and_have_no_band():
    fit = fit_power_law(N[:3], TRUE[:3])
    assert (fit.a, fit.b, fit.c) == pytest.approx((A, B, C), rel=1e-5)
    low, high = bootstrap_band(N[:3], TRUE[:3], fit, N[5:])
    assert np.isnan(low).all() and np.isnan(high).all()


def test_noisy_data_band_covers_the_true_loss():
    inside = 0
    for seed in range(10):
        noisy = TRUE * (1 + 0.003 * np.random.default_rng(seed).standard_normal(N.size))
        fit = fit_power_law(N[:5], noisy[:5])
        low, high = bootstrap_band(N[:5], noisy[:5], fit, N[5:], n_boot=60, seed=seed)
        assert low[0] < fit(N[5]) < high[0]
        inside += bool(low[0] <= TRUE[5] <= high[0])
    assert inside >= 8, inside  # nominal 95 %


@pytest.mark.parametrize(
    "params, loss, fragment",
    [
        ([1e4, 2e4], [3.0, 2.9], "at least 3 distinct sizes"),
        ([1e4, 1e4, 2e4, 2e4], [3.0, 3.1, 2.9, 2.8], "at least 3 distinct sizes"),
        ([1e4, 2e4, 4e4], [3.0, 0.0, 2.8], "losses must be positive"),
        ([1e4, 2e4, 4e4], [3.0, -1.0, 2.8], "losses must be positive"),
        ([0, 2e4, 4e4], [3.0, 2.9, 2.8], "parameter counts must be positive"),
        ([1e4, 2e4, 4e4], [3.0, np.nan, 2.8], "finite"),
        ([1e4, 2e4, 4e4], [3.0, 2.9], "differ in length"),
    ],
)
def test_bad_input_is_an_input_error(params, loss, fragment):
    with pytest.raises(InputError, match=fragment):
        fit_power_law(params, loss)


def _sweep(seeds=(0, 1)) -> xr.Dataset:
    widths = [16, 24, 32, 48, 64, 128]
    rng = np.random.default_rng(0)
    loss = TRUE[:, None] * (1 + 0.001 * rng.standard_normal((len(widths), len(seeds))))
    return xr.Dataset(
        {
            "final_val_loss": (("width", "seed"), loss),
            "params": (("width", "seed"), np.repeat(N[:, None], len(seeds), axis=1)),
            "params_total": (("width", "seed"), np.repeat(N[:, None] + 1e4, len(seeds), axis=1)),
        },
        coords={"width": widths, "seed": list(seeds)},
    )


def test_predict_sweep_fits_the_small_widths_and_predicts_the_held_out_ones():
    result = predict_sweep(_sweep(), holdout=2, n_boot=50)
    assert set(result["fit"]) == {"a", "b", "c"} and result["fit"]["b"] < 0
    rows = result["predictions"]
    assert [r["width"] for r in rows] == [64, 128] and [r["params"] for r in rows] == [int(N[4]), int(N[5])]
    for row in rows:
        assert abs(row["predicted"] / row["actual"] - 1) < 0.01
        assert row["low"] <= row["predicted"] <= row["high"]


def test_predict_sweep_refuses_too_few_widths_and_unselected_dims():
    with pytest.raises(InputError, match="at least 3 smaller widths"):
        predict_sweep(_sweep().isel(width=slice(0, 3)), holdout=1)
    two_lr = xr.concat([_sweep(), _sweep()], dim=xr.DataArray([1e-3, 1e-2], dims="lr", name="lr"))
    with pytest.raises(InputError, match="'lr' has 2 values"):
        predict_sweep(two_lr)
    with pytest.raises(InputError, match="no 'width' dimension"):
        predict_sweep(_sweep().rename(width="w"))


def test_cli_predict_json_and_bad_input(tmp_path):
    path = tmp_path / "sweep.nc"
    _sweep().to_netcdf(path, engine="h5netcdf")
    result = run_cli("lm", "predict", str(path), "--holdout", "1", "--boot", "30", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload["fit"]) == {"a", "b", "c"}
    (row,) = payload["predictions"]
    assert {"width", "params", "predicted", "actual"} <= set(row) and row["width"] == 128
    bad = tmp_path / "bad.nc"
    _sweep().isel(width=slice(0, 3)).to_netcdf(bad, engine="h5netcdf")
    assert_clean_error(run_cli("lm", "predict", str(bad), "--json"), "at least 3 smaller widths")
    assert_clean_error(run_cli("lm", "predict", str(tmp_path / "missing")), "sweep not found")
