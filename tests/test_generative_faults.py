"""`workbench diffusion schedule | timesteps` on extreme input: finite results or one clear line."""

import json

import mpmath
import numpy as np
import pytest

from tests.conftest import one_line_error, run_cli
from workbench.config import from_dict
from workbench.errors import ConfigError
from workbench.generative import schedules
from workbench.generative.config import DiffusionConfig


def _algorithm_1_in_high_precision(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1 with 60-digit numbers, where no ᾱ_t underflows."""
    mpmath.mp.dps = 60
    s, product = [], mpmath.mpf(1)
    for beta in betas:
        product *= 1 - mpmath.mpf(float(beta))
        s.append(mpmath.sqrt(product))
    first, last = s[0], s[-1]
    s = [(x - last) * first / (first - last) for x in s]
    alphas = [s[0] ** 2] + [(s[t] / s[t - 1]) ** 2 for t in range(1, len(s))]
    return np.array([float(1 - a) for a in alphas])


@pytest.mark.parametrize(
    "args", [("scaled_linear", 1000, 0.5, 0.9), ("linear", 1000, 0.3, 0.6), ("scaled_linear", 1000, 0.00085, 0.012)]
)
def test_zero_terminal_snr_rescale_is_exact_where_alpha_bar_underflows(args):
    betas = schedules.make_betas(*args)
    rescaled = schedules.rescale_zero_terminal_snr(betas)
    # Relative 1e-11: float64 rounding over T = 1000 cumulative products of ratios.
    np.testing.assert_allclose(rescaled, _algorithm_1_in_high_precision(betas), rtol=1e-11, atol=0)
    assert rescaled[-1] == 1.0 and np.all(np.isfinite(rescaled))
    abar = schedules.alphas_cumprod(rescaled)
    assert abar[-1] == 0.0 and abar[0] == pytest.approx(1 - betas[0], rel=1e-15) and np.all(np.diff(abar) <= 0)
    assert np.all(np.isfinite(schedules.betas_from_alphas_cumprod(schedules.alphas_cumprod(betas))))


def test_schedule_cli_never_prints_nan():
    result = run_cli(
        "diffusion", "schedule", "--zero-terminal-snr", "--beta-start", "0.5", "--beta-end", "0.9", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout and "nan" not in result.stdout.lower() and "Warning" not in result.stderr
    payload = json.loads(result.stdout)
    abar = np.array(payload["alphas_cumprod"])
    assert np.all(np.isfinite(abar)) and abar[0] == pytest.approx(0.5) and abar[-1] == 0.0
    assert payload["terminal_snr"] == 0.0


def test_schedule_steps_are_bounded_before_allocating(capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("a 10^8-step schedule was allocated")

    monkeypatch.setattr(schedules, "make_betas", no_work)
    line = one_line_error(capsys, "diffusion", "schedule", "--steps", "100000000")
    assert "--steps 100000000" in line and "1,000,000" in line
    with pytest.raises(ConfigError, match="train_timesteps"):
        from_dict(DiffusionConfig, {"train_timesteps": 10**8})


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--train-steps", "0"], "--train-steps 0"),
        (["--train-steps", "-5", "--steps", "3"], "--train-steps -5"),
        (["--train-steps", "100000000000", "--steps", "3"], "--train-steps 100000000000"),
        (["--train-steps", "5", "--steps", "10"], "--steps 10"),
        (["--steps", "0"], "--steps 0"),
    ],
)
def test_timesteps_message_names_the_flag_that_is_wrong(capsys, flags, fragment):
    line = one_line_error(capsys, "diffusion", "timesteps", "--spacing", "trailing", *flags)
    assert line.startswith(f"workbench: error: {fragment}:"), line
