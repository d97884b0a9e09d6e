"""Exactness of the generative building blocks against closed forms, the PFGM++ and EDM formulas
and diffusers' scheduler code: no training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.errors import InputError
from workbench.generative import pfgmpp, prediction, schedules
from workbench.generative.oracle import pfgmpp_denoiser
from workbench.generative.samplers import edm_sigmas, heun_sample


# --- PFGM++ kernel (Xu et al. 2023) ----------------------------------------------------------------
@pytest.mark.parametrize("N,D", [(2, 4), (2, 64), (64, 4), (64, 2048), (3072, 64)])
def test_beta_and_student_t_kernels_agree(N, D):
    rng = np.random.default_rng(0)
    count = 4000 if N > 1000 else 20000
    sigma = np.full(count, 1.3)
    a = (pfgmpp.sample_kernel(sigma, N, D, rng, method="beta") ** 2).sum(1)
    b = (pfgmpp.sample_kernel(sigma, N, D, rng, method="student_t") ** 2).sum(1)
    # Two-sample KS on ||n||² at a fixed seed; then both means against E||n||² = Nσ²D/(D−2) (Student-t form).
    assert stats.ks_2samp(a, b).pvalue > 0.01
    theory = N * 1.3**2 * D / (D - 2)
    if D > 4:  # the variance of ||n||² is infinite for D <= 4, so the mean has no standard error
        for draws in (a, b):
            assert abs(draws.mean() - theory) < 3 * draws.std() / math.sqrt(count)


@pytest.mark.parametrize("N,D", [(2, 1.0), (64, 1.0), (2, 128.0), (64, 2048.0)])
def test_radius_odds_have_the_law_of_the_beta_draw(N, D):
    """R²/(σ²D) = B/(1 − B), B ~ Beta(N/2, D/2), is drawn as a ratio of Gamma draws: the same law
    as the Beta-based draw (two-sample KS) and as the beta-prime(N/2, D/2) CDF (one-sample KS).
    Seeds are fixed, so the p-values are fixed; 1e-3 would reject a correct sampler at 0.1 % of seeds,
    and at 50,000 draws a side KS detects a CDF gap of about 0.012 at that level."""
    count, sigma = 50_000, 1.0
    odds = (pfgmpp.sample_kernel(np.full(count, sigma), N, D, np.random.default_rng(4)) ** 2).sum(1) / (sigma**2 * D)
    b = np.random.default_rng(5).beta(N / 2, D / 2, count)
    assert np.all(b < 1)  # no rounding to 1 in the reference sample at this seed
    assert stats.ks_2samp(odds, b / (1 - b)).pvalue > 1e-3
    assert stats.kstest(odds, stats.betaprime(N / 2, D / 2).cdf).pvalue > 1e-3


class _RoundingExtremes:
    """A seeded Generator whose radius draws sit at float64's rounding extreme for D = 1: every Beta
    draw is exactly 1 (what numpy returns for about 6.5e-8 of Beta(32, 1/2) draws), and every Gamma(1/2)
    draw is exactly 0 on the first call (numpy's uniform exactly 0) and 2^-106 after it (the smallest
    positive Gamma(1/2) draw numpy makes: U² with U = 2^-53). Other draws come from the generator."""

    def __init__(self, seed: int):
        self._rng, self._gamma_calls = np.random.default_rng(seed), 0

    def __getattr__(self, name):
        return getattr(self._rng, name)

    def beta(self, a, b, size=None):
        return np.ones(size)

    def standard_gamma(self, shape, size=None):
        if shape != 0.5:
            return self._rng.standard_gamma(shape, size)
        self._gamma_calls += 1
        return np.full(size, 0.0 if self._gamma_calls == 1 else 2.0**-106)


def test_training_noise_at_D_1_is_finite_at_the_rounding_extreme():
    """Xu et al. 2023's kernel at D = 1 (N = 64, the digits): the radius r·sqrt(B/(1 − B)) is finite
    however close to 1 the Beta variable falls; forming B = 1 first made it infinite."""
    from workbench.generative.losses import pfgmpp_noise

    sigma, noise = pfgmpp_noise(_RoundingExtremes(6), 4096, 64, 1.0)
    radius = np.linalg.norm(noise, axis=1)
    assert np.all(np.isfinite(noise)) and np.all(np.isfinite(radius)) and np.all(radius > 0)
    # G(32)/2^-106 under the square root: radii of order σ·2^55, far out in the tail but finite
    assert np.all(radius / sigma > 2.0**50)


def test_kernel_radius_matches_its_density():
    """The histogram of R = ||n|| matches R^{N−1}(R² + r²)^{−(N+D)/2}, normalised numerically."""
    N, D, sigma = 2, 4.0, 0.7
    rng = np.random.default_rng(1)
    radius = np.linalg.norm(pfgmpp.sample_kernel(np.full(100_000, sigma), N, D, rng), axis=1)
    r = sigma * math.sqrt(D)
    grid = np.linspace(1e-6, 200.0, 400_001)
    density = np.exp(pfgmpp.kernel_radius_logpdf(grid, N, D, r))
    cdf = np.cumsum(density) / density.sum()
    expected = np.interp(radius, grid, cdf)  # probability integral transform: uniform if the law is right
    assert stats.kstest(expected, "uniform").pvalue > 0.01


def test_kernel_tends_to_gaussian_as_D_grows():
    """D = 1e7 with r = σ√D is N(0, σ²I) (excess kurtosis 6/(D−4) → 0); D = 8 is heavy-tailed."""
    rng = np.random.default_rng(2)
    sigma = 0.5
    coords = pfgmpp.sample_kernel(np.full(50_000, sigma), 4, 1e7, rng).ravel()
    assert stats.kstest(coords / sigma, "norm").pvalue > 0.01
    heavy = pfgmpp.sample_kernel(np.full(50_000, sigma), 4, 8.0, rng).ravel()
    assert stats.kurtosis(heavy) > 0.5  # theory 6/(D−4) = 1.5
    assert stats.kstest(heavy / sigma, "norm").pvalue < 1e-6


def test_clip_is_off_by_default_and_distorts_low_dimensional_kernels():
    """With N = 2, D = 2048 the official PFGM++ image code's clip(B, 1e-3, 1 − 1e-3) moves most draws."""
    rng = np.random.default_rng(3)
    free = np.linalg.norm(pfgmpp.sample_kernel(np.full(20_000, 1.0), 2, 2048, rng), axis=1)
    clipped = np.linalg.norm(pfgmpp.sample_kernel(np.full(20_000, 1.0), 2, 2048, rng, clip=1e-3), axis=1)
    floor = math.sqrt(2048 * 1e-3 / (1 - 1e-3))  # R at B = 1e-3, σ = 1
    # B ~ Beta(1, 1024): P(B < 1e-3) = 1 − 0.999^1024 = 0.641 of draws are moved up to the floor.
    assert np.mean(np.isclose(clipped, floor)) == pytest.approx(1 - 0.999**1024, abs=0.015)
    assert np.mean(free < floor) == pytest.approx(0.641, abs=0.015)


def test_prior_radius_and_sigma_grid():
    """Prior r_max = 80√D (pfgmpp generate.py); EDM grid of 18 steps → NFE 35, from 80 to 0.002, then 0."""
    assert pfgmpp.r_of_sigma(80.0, 64) == pytest.approx(640.0)
    assert pfgmpp.r_of_sigma(80.0, 2048) == pytest.approx(3620.39, abs=0.01)
    grid = edm_sigmas(18)
    assert grid.shape == (19,) and grid[0] == pytest.approx(80.0) and grid[-2] == pytest.approx(0.002)
    assert grid[-1] == 0 and np.all(np.diff(grid) < 0)
    calls = []
    heun_sample(lambda x, s: calls.append(1) or x * 0, torch.zeros(2, 2), grid)
    assert len(calls) == 35


@pytest.mark.parametrize("N", [2, 64])
@pytest.mark.parametrize("D", [4, 16, 128, 2048, math.inf])
def test_oracle_heun_sampler_reproduces_mixture_weights(N, D):
    """Two points ±e₁ with weights (0.3, 0.7); the exact denoiser and 18 Heun steps from the
    PFGM++ prior give the 0.7-mode within ±0.03, and samples land on the data."""
    points = np.zeros((2, N))
    points[0, 0], points[1, 0] = -1.0, 1.0
    denoise = pfgmpp_denoiser(points, D, weights=[0.3, 0.7])
    rng = np.random.default_rng(4)
    x = torch.from_numpy(pfgmpp.prior(4000, N, D, 80.0, rng))
    samples = heun_sample(denoise, x, edm_sigmas(18)).numpy()
    fraction = np.mean(samples[:, 0] > 0)
    assert abs(fraction - 0.7) <= 0.03, fraction
    nearest = np.min(np.linalg.norm(samples[:, None, :] - points[None], axis=2), axis=1)
    assert np.max(nearest) < 1e-3


def test_bad_D_is_refused():
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(InputError, match="D must be"):
            pfgmpp.check_D(bad)


# --- Lin et al. 2024 schedules, v-prediction, CFG rescale -------------------------------------------
def test_stable_diffusion_terminal_snr_and_zero_snr_rescale():
    betas = schedules.make_betas("scaled_linear", 1000, 0.00085, 0.012)
    abar = schedules.alphas_cumprod(betas)
    assert math.sqrt(abar[-1]) == pytest.approx(0.068265, abs=2e-6)
    assert schedules.snr(abar)[-1] == pytest.approx(0.004682, abs=2e-6)
    assert math.sqrt(schedules.alphas_cumprod(schedules.make_betas("linear", 1000, 1e-4, 0.02))[-1]) == pytest.approx(
        0.006353, abs=2e-6
    )
    rescaled = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(betas))
    assert rescaled[-1] == 0.0
    assert rescaled[0] == pytest.approx(abar[0], rel=1e-12) and rescaled[0] == pytest.approx(0.999150, abs=1e-6)
    assert np.all(np.diff(rescaled) < 0)
    assert rescaled[-2] == pytest.approx(1.97e-7, rel=0.01)


def test_timestep_spacings_match_diffusers():
    assert schedules.timesteps("linspace", 1000, 10).tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert schedules.timesteps("leading", 1000, 10, steps_offset=1).tolist() == [
        901,
        801,
        701,
        601,
        501,
        401,
        301,
        201,
        101,
        1,
    ]
    assert schedules.timesteps("trailing", 1000, 10).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    for s in (7, 30):
        assert schedules.timesteps("trailing", 1000, s)[0] == 999
    with pytest.raises(InputError, match="unknown timestep spacing 'middle'"):
        schedules.timesteps("middle", 1000, 10)


def test_trailing_timesteps_for_every_step_count_match_diffusers_where_it_is_valid():
    """Trailing spacing (Lin et al. 2024, Table 2) for T = 1000 and every S = 1..T: S strictly decreasing
    timesteps in [0, T−1] starting at T−1, equal to diffusers' DDIM formula wherever that formula gives S
    values, all >= 0. Its float arange gives S + 1 values ending in −1 for some S (61 is the first)."""
    T = 1000
    overshoots = 0
    for S in range(1, T + 1):
        steps = schedules.timesteps("trailing", T, S)
        assert len(steps) == S and steps[0] == T - 1 and steps[-1] >= 0, S
        assert np.all(np.diff(steps) < 0), S
        diffusers = np.round(np.arange(T, 0, -T / S)).astype(np.int64) - 1
        if len(diffusers) == S and diffusers.min() >= 0:
            np.testing.assert_array_equal(steps, diffusers, err_msg=f"S = {S}")
        else:
            overshoots += 1
            np.testing.assert_array_equal(steps, diffusers[:S], err_msg=f"S = {S}")  # the same spacing, cut at S
    assert overshoots == 62  # the cases the formula itself gets wrong are exercised

    from tests.conftest import run_cli

    result = run_cli("diffusion", "timesteps", "--spacing", "trailing", "--train-steps", "1000", "--steps", "61",
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    timesteps = json.loads(result.stdout)["timesteps"]
    assert len(timesteps) == 61 and timesteps[0] == 999 and timesteps[-1] == 15  # round(1000/61) − 1


def test_prediction_conversions_are_exact_inverses():
    gen = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64),
        torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64),
    )
    abar = torch.tensor([0.999, 0.7, 0.3, 0.01, 0.0], dtype=torch.float64)
    a = abar.sqrt().reshape(-1, 1, 1, 1)
    x_t = a * x0 + (1 - abar).sqrt().reshape(-1, 1, 1, 1) * eps
    v = prediction.velocity(x0, eps, abar)
    for kind, out in (("v_prediction", v), ("sample", x0)):
        torch.testing.assert_close(prediction.to_sample(out, x_t, abar, kind), x0, atol=1e-12, rtol=0)
        torch.testing.assert_close(prediction.to_epsilon(out, x_t, abar, kind)[:4], eps[:4], atol=1e-10, rtol=0)
        torch.testing.assert_close(prediction.to_velocity(out, x_t, abar, kind)[:4], v[:4], atol=1e-10, rtol=0)
    torch.testing.assert_close(prediction.to_sample(eps[:4], x_t[:4], abar[:4], "epsilon"), x0[:4], atol=1e-10, rtol=0)
    torch.testing.assert_close(prediction.to_sample(v[4:], x_t[4:], abar[4:], "v_prediction"), -v[4:])  # ᾱ = 0


def test_epsilon_with_zero_terminal_snr_is_refused():
    with pytest.raises(InputError, match="epsilon prediction cannot be used with a zero-terminal-SNR"):
        prediction.check_prediction("epsilon", 0.0)
    with pytest.raises(InputError, match="unknown prediction type 'x0'"):
        prediction.check_prediction("x0", 0.5)
    prediction.check_prediction("v_prediction", 0.0)


def test_guidance_rescale_matches_its_formula():
    gen = torch.Generator().manual_seed(1)
    neg, pos = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen) * 2
    w, phi = 7.5, 0.7
    cfg = neg + w * (pos - neg)
    std_pos, std_cfg = pos.std(dim=(1, 2, 3), keepdim=True), cfg.std(dim=(1, 2, 3), keepdim=True)
    expected = phi * cfg * std_pos / std_cfg + (1 - phi) * cfg
    torch.testing.assert_close(prediction.classifier_free_guidance(neg, pos, w, phi), expected)
    torch.testing.assert_close(prediction.classifier_free_guidance(neg, pos, w, 0.0), cfg)
    full = prediction.classifier_free_guidance(neg, pos, w, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), pos.std(dim=(1, 2, 3)))
    torch.testing.assert_close(prediction.classifier_free_guidance(neg, pos, 1.0, 0.7), pos)


# --- brightness with the exact denoiser ------------------------------------------------------------
def test_oracle_brightness_spread_fixed_vs_flawed():
    """400 images of 32×32 (P = 1024), offsets U(−0.8, 0.8); deterministic DDIM, 50 steps, 1,000 samples.
    Measured: flawed (SD schedule, ε, leading) 0.75, fixed (zero SNR, v, trailing) 0.97;
    an independent re-implementation gave 0.78 / 0.94."""
    from workbench.generative.brightness import oracle_brightness
    from workbench.generative.data import brightness_images

    images = brightness_images(400, 32, np.random.default_rng(0))
    _, fixed = oracle_brightness(images, "v_zero_snr_trailing", samples=1000, sample_steps=50)
    _, flawed = oracle_brightness(images, "eps_leading", samples=1000, sample_steps=50)
    assert fixed["spread_ratio"] >= 0.95
    assert flawed["spread_ratio"] <= 0.85
    assert fixed["w1"] < flawed["w1"] / 3
