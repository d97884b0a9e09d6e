# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # PFGM++ robustness across D, and the brightness leak of common diffusion schedules
#
# Two CPU-scale studies (code in `workbench/generative/`):
#
# 1. **PFGM++** (Xu et al. 2023) embeds N-dimensional data in N+D dimensions; D = ∞ is EDM. The paper
#    claims smaller D is more robust to sampling noise, fewer steps and weight quantisation.
# 2. **Lin et al. (2024)**: a schedule with non-zero terminal SNR leaks each image's mean brightness
#    into x_T, so samples drawn from pure noise regress to medium brightness. The fixes are zero
#    terminal SNR, v-prediction and trailing timesteps.
#
# Each part starts with an exact (oracle) denoiser, where the answer is known, then trains small
# models. `WORKBENCH_SMALL=1` (the tests) shrinks everything to seconds; the numbers quoted in
# the README come from the full configs in `jobs/configs/diffusion_*.yaml`.

# %%
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr

from workbench.generative import experiments, pfgmpp, robustness
from workbench.generative.brightness import oracle_brightness
from workbench.generative.config import ARMS, BrightnessConfig, DiffusionConfig, PFGMPPConfig, RobustnessConfig
from workbench.generative.data import brightness_images
from workbench.generative.oracle import pfgmpp_denoiser
from workbench.generative.samplers import edm_sigmas, heun_sample
from workbench.train import TrainConfig

SMALL = os.environ.get("WORKBENCH_SMALL") == "1"
ROOT = tempfile.mkdtemp(prefix="generative_nb_")

# %% [markdown]
# ## 1. The PFGM++ kernel is a Student-t
#
# With r = σ√D the perturbation kernel (‖x−y‖² + r²)^{−(N+D)/2} is a multivariate Student-t with D
# degrees of freedom and scale σ, so its tails thin towards a Gaussian as D grows.

# %%
rng = np.random.default_rng(0)
fig, ax = plt.subplots(figsize=(6, 3.5))
for D in (4, 16, 128, math.inf):
    noise = pfgmpp.sample_kernel(np.full(20_000, 1.0), 8, D, rng)
    norms = np.linalg.norm(noise, axis=1)
    ax.hist(norms, bins=np.linspace(0, 10, 80), histtype="step", density=True, label=f"D = {D}")
    theory = 8 * D / (D - 2) if D > 2 else math.inf
    print(f"D = {D:>5}: E||n||² = {np.mean(norms**2):6.2f} (theory N·D/(D−2) = {theory:.2f})")
ax.set_xlabel("‖n‖ for N = 8, σ = 1")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Oracle sampling: the Heun sampler recovers mixture weights at every D
#
# Two points ±e₁ with weights 0.3 / 0.7, the exact denoiser E[y | x, σ], 18 Heun steps from the
# PFGM++ prior at r_max = 80√D.

# %%
points = np.array([[-1.0, 0.0], [1.0, 0.0]])
for D in (4, 128, 2048, math.inf):
    x = torch.from_numpy(pfgmpp.prior(1000 if SMALL else 4000, 2, D, 80.0, np.random.default_rng(1)))
    out = heun_sample(pfgmpp_denoiser(points, D, weights=[0.3, 0.7]), x, edm_sigmas(18)).numpy()
    print(f"D = {D:>6}: fraction on the 0.7-mode = {np.mean(out[:, 0] > 0):.3f}")

# %% [markdown]
# ## 3. Trained PFGM++ under perturbations
#
# An MLP denoiser on the 8×8 digits (N = 64) per D, at the official code's D values (64, 128, 2048,
# ∞), then three sampling-time errors: noise α·σ_i·ε injected before each Heun step, fewer Heun
# steps (NFE = 2·steps − 1), and k-bit weights (the conditioning layers stay at full precision, as in
# the official generate_quant.py). Quality: sliced W1 on the features of a digits classifier trained
# here (no downloaded Inception weights). Robustness is the degradation, perturbed − clean, paired
# per seed, with a 95 % percentile-bootstrap interval over seeds.
#
# The full study (`jobs/configs/diffusion_robustness.yaml`: 10,000 steps, 8 seeds, one job array) is
# bundled as `notebooks/results/pfgmpp_robustness.nc` and read here; a small version of the same
# study runs below so that the code path is exercised.

# %%
# the repository's notebooks/results (the notebook may run from any folder)
STUDY = Path(robustness.__file__).resolve().parents[2] / "notebooks" / "results" / "pfgmpp_robustness.nc"
if STUDY.is_file():
    study = xr.load_dataset(STUDY)
    print(f"full study: {study.attrs['train_steps']} steps, {study.sizes['seed']} seeds")
    print(robustness.summary_table(study))
    robustness.plot_robustness(study)
    plt.show()
else:
    print(f"{STUDY} is absent: run the full study with jobs/configs/diffusion_robustness.yaml")

# %%
model = PFGMPPConfig(data="digits", net="mlp", width=128 if SMALL else 256, batch_size=128, lr=2e-3, warmup_steps=20,
                     ema_half_life=50 if SMALL else 500)  # fmt: skip
robust = RobustnessConfig(
    root=ROOT, model=model, train=TrainConfig(max_steps=60 if SMALL else 2000, checkpoint_every=1000),
    D=(64.0, math.inf), seeds=2 if SMALL else 3, alphas=(0.3,), steps=(6,) if SMALL else (8, 5), bits=(4,),
    samples=100 if SMALL else 1000, heun_steps=12 if SMALL else 18,
)  # fmt: skip
members = [robustness.robustness_member(robust, D, seed) for D in robust.D for seed in range(robust.seeds)]
small = robustness.assemble_robustness(robust, members)
print(robustness.summary_table(small))
robustness.plot_robustness(small)
plt.show()

# %% [markdown]
# ## 4. Brightness with the exact denoiser
#
# 400 images of 32×32 whose mean brightness is U(−0.8, 0.8); deterministic DDIM from pure noise with
# the Bayes-optimal x̂₀. The spread ratio std(b_generated)/std(b_data) is 1 for a perfect sampler.

# %%
images = brightness_images(200 if SMALL else 400, 32, np.random.default_rng(0))
for arm in ARMS:
    _, metrics = oracle_brightness(images, arm, samples=200 if SMALL else 1000, sample_steps=50)
    print(f"{arm:<22} spread ratio {metrics['spread_ratio']:.3f}   W1 {metrics['w1']:.4f}")

# %% [markdown]
# ## 5. Brightness with trained models
#
# The baseline (Stable Diffusion's schedule, ε-prediction, leading spacing) against all fixes
# (zero terminal SNR, v-prediction, trailing), on 16×16 images, several seeds.

# %%
model = DiffusionConfig(data="brightness", image_size=16, n_data=500 if SMALL else 2000, net="mlp",
                        width=128 if SMALL else 512, batch_size=128, lr=1e-3, warmup_steps=20,
                        ema_half_life=50 if SMALL else 200)  # fmt: skip
bright = BrightnessConfig(
    root=ROOT, model=model, train=TrainConfig(max_steps=60 if SMALL else 3000, checkpoint_every=1000),
    arms=("eps_leading", "v_zero_snr_trailing"), seeds=1 if SMALL else 3, samples=100 if SMALL else 1000,
    sample_steps=20 if SMALL else 50,
)  # fmt: skip
results = [
    m
    for _, arms, seed in experiments.brightness_groups(bright)
    for m in experiments.brightness_member(bright, arms, seed)
]
data = brightness_images(bright.model.n_data, 16, np.random.default_rng(bright.model.data_seed))
bri = experiments.assemble_brightness(bright, results, data)
for arm in bright.arms:
    mean, half = experiments.t_interval(bri["w1"].sel(arm=arm).values, axis=0)
    ratio = float(bri["spread_ratio"].sel(arm=arm).mean())
    print(f"{arm:<22} brightness W1 {float(mean):.4f} ± {float(half):.4f}   spread ratio {ratio:.3f}")
experiments.plot_brightness(bri)
plt.show()
