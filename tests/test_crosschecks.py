"""Cross-checks against the libraries researchers trust: diffusers (schedules, spacings, the DDIM
step), POT (sliced Wasserstein) and pysindy (finite differences). Each runs where the library is
installed (the dev extras install all three, so CI runs them) and skips with the reason otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.generative import schedules
from workbench.generative.metrics import sliced_wasserstein
from workbench.generative.samplers import ddim_sample

SD = ("scaled_linear", 1000, 0.00085, 0.012)  # Stable Diffusion's betas


def test_zero_terminal_snr_rescale_equals_diffusers():
    pytest.importorskip("diffusers")
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = schedules.make_betas(*SD)
    ours = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(betas))
    theirs = torch.cumprod(1 - rescale_zero_terminal_snr(torch.from_numpy(betas)), 0).numpy()
    assert np.max(np.abs(ours - theirs)) < 1e-14 and ours[-1] == 0.0


def test_timesteps_equal_diffusers_for_every_step_count():
    """Leading (offset 0 and 1), trailing and linspace, S = 1..1000 at T = 1000: identical wherever
    diffusers' own result is valid (S values, all in 0..T−1)."""
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler

    compared = 0
    for spacing, offset in (("leading", 1), ("leading", 0), ("trailing", 0), ("linspace", 0)):
        scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=offset)
        for steps in range(1, 1001):
            scheduler.set_timesteps(steps)
            theirs = scheduler.timesteps.numpy()
            if len(theirs) != steps or theirs.min() < 0 or theirs.max() > 999:
                continue  # diffusers' overshoot or offset past T: refused here, not compared
            ours = schedules.timesteps(spacing, 1000, steps, steps_offset=offset)
            assert np.array_equal(ours, theirs), (spacing, steps)
            compared += 1
    assert compared > 3900


def _network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Any fixed smooth function of (x, t) stands in for a trained model."""
    t = t.to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))
    return 0.3 * torch.tanh(x) * torch.cos(t / 150) + 0.1 * torch.sin(t / 300)


@pytest.mark.parametrize(
    "zero_snr, prediction, spacing, offset",
    [(False, "epsilon", "leading", 1), (False, "epsilon", "trailing", 0), (True, "v_prediction", "trailing", 0)],
)
def test_ddim_sampling_equals_diffusers_step_by_step(zero_snr, prediction, spacing, offset):
    """50 deterministic DDIM steps (η = 0, no clipping, ᾱ = 1 after the last) from the same x_T:
    equal up to diffusers' float32 ᾱ (about 4e-7 relative)."""
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        timestep_spacing=spacing, steps_offset=offset, rescale_betas_zero_snr=zero_snr, prediction_type=prediction,
        clip_sample=False, set_alpha_to_one=True,
    )  # fmt: skip
    scheduler.set_timesteps(50)
    x_T = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = x_T.clone()
    for t in scheduler.timesteps:
        theirs = scheduler.step(_network(theirs, torch.full((4,), int(t))), t, theirs, eta=0.0).prev_sample
    betas = schedules.make_betas(*SD)
    if zero_snr:
        betas = schedules.rescale_zero_terminal_snr(betas)
    steps = schedules.timesteps(spacing, 1000, 50, steps_offset=offset)
    ours = ddim_sample(_network, x_T.clone(), schedules.alphas_cumprod(betas), steps, prediction)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_cfg_rescale_equals_diffusers():
    pytest.importorskip("diffusers")
    # the Stable Diffusion pipeline's function, importable without transformers
    from diffusers.guiders.guider_utils import rescale_noise_cfg

    from workbench.generative.prediction import classifier_free_guidance

    g = torch.Generator().manual_seed(1)
    negative, positive = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    for scale, phi in ((7.5, 0.7), (3.0, 1.0), (1.0, 0.7)):
        guided = negative + scale * (positive - negative)
        theirs = rescale_noise_cfg(guided, positive, guidance_rescale=phi)
        torch.testing.assert_close(classifier_free_guidance(negative, positive, scale, phi), theirs)


def test_sliced_wasserstein_equals_pot_on_the_same_directions():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(0)
    for n_x, n_y in ((400, 400), (300, 500)):  # sorted-quantile path and scipy's path
        x, y = rng.standard_normal((n_x, 16)), rng.standard_normal((n_y, 16)) * 1.3 + 0.4
        directions = np.random.default_rng(7).standard_normal((16, 300))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)  # what sliced_wasserstein(seed=7) draws
        ours = sliced_wasserstein(x, y, projections=300, seed=7)
        theirs = ot.sliced_wasserstein_distance(x, y, projections=directions, p=1)
        assert ours == pytest.approx(float(theirs), rel=1e-10)


def test_medida_fd_derivatives_equal_pysindy():
    """PDE-FIND's second-order stencils: identical to pysindy's FiniteDifference(order=2) for the
    first and second derivative everywhere, and for the third inside (pysindy's one-sided end
    stencils for d = 3 differ from PDE-FIND's FiniteDiff, which MEDIDA's public code uses)."""
    ps = pytest.importorskip("pysindy")
    from scaling.medida.library import fd_derivative

    x = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    f = np.sin(x) + 0.3 * np.cos(3 * x)
    for d, inside in ((1, slice(None)), (2, slice(None)), (3, slice(2, -2))):
        theirs = ps.FiniteDifference(order=2, d=d)._differentiate(f, x)
        np.testing.assert_allclose(fd_derivative(f, d, x[1] - x[0])[inside], theirs[inside], rtol=0, atol=1e-9)
