"""PFGM++ (Xu et al. 2023): the perturbation kernel, its prior and the σ ↔ r transfer.

The reference is the official code, github.com/Newbeeer/pfgmpp (a fork of NVlabs/edm):
`training/loss.py` (the kernel draw), `generate.py` (prior and sampler) and the README's
"Transfer guidance" (r = σ√D).

Data y ∈ R^N is embedded in R^{N+D}; the field only depends on r = ||z|| of the D extra coordinates,
and with r = σ·√D the probability-flow ODE is EDM's dx/dσ = (x − D_θ(x; σ))/σ (the official code
wraps EDM's denoiser unchanged). So PFGM++ differs from EDM only in the noise it trains on and the
prior it samples from:

    p_r(x | y) ∝ (||x − y||² + r²)^{−(N+D)/2}                         (Xu et al. 2023)

which is a multivariate Student-t with D degrees of freedom and scale σ = r/√D:
n = σ·z / sqrt(χ²_D / D), z ~ N(0, I_N). D = ∞ is the Gaussian N(y, σ²I), i.e. exactly EDM.

Random draws take an explicit numpy Generator (the reference draws B from numpy's global RNG,
decoupled from torch's seeds, so its runs are not reproducible from a torch seed) and are float64.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.errors import InputError

__all__ = ["check_D", "kernel_radius_logpdf", "prior", "r_of_sigma", "sample_kernel", "sigma_of_r"]

KERNEL_METHODS = ("beta", "student_t")


def check_D(D: float) -> float:
    """D must be a positive number or inf (EDM)."""
    try:
        D = float(D)
    except (TypeError, ValueError):
        raise InputError(f"D must be a positive number or inf, got {D!r}") from None
    if not D > 0:  # also catches NaN
        raise InputError(f"D must be > 0 (D = inf is EDM), got {D}")
    return D


def r_of_sigma(sigma, D: float):
    """r = σ·√D (the README's transfer rule); only defined for finite D."""
    return np.asarray(sigma, dtype=np.float64) * math.sqrt(check_D(D))


def sigma_of_r(r, D: float):
    return np.asarray(r, dtype=np.float64) / math.sqrt(check_D(D))


def _directions(rng: np.random.Generator, count: int, N: int) -> np.ndarray:
    g = rng.standard_normal((count, N))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def sample_kernel(
    sigma, N: int, D: float, rng: np.random.Generator, *, method: str = "beta", clip: float = 0.0
) -> np.ndarray:
    """Noise n ~ p_r(· | 0) with r = σ√D for each σ in `sigma` (shape (B,)) → (B, N).

    ``beta`` (the reference's `training/loss.py`): B ~ Beta(N/2, D/2), R = r·sqrt(B/(1 − B)), n = R·g/||g||,
    with B/(1 − B) drawn as the ratio of independent Gamma(N/2) and Gamma(D/2) draws (beta-prime), the
    same law without rounding B to 1 (see `_beta_prime`).
    ``clip`` > 0 clips B to [clip, 1 − clip] as the image code does (1e-3); off by default because
    on low-dimensional data it distorts the kernel (N = 2, D = 128: 6 % of draws clipped).
    ``student_t``: n = σ·z / sqrt(χ²_D / D), the same law.
    D = inf gives σ·z for both methods.
    """
    if method not in KERNEL_METHODS:
        raise InputError(f"unknown kernel sampler {method!r}; choose one of {', '.join(KERNEL_METHODS)}")
    if not isinstance(N, (int, np.integer)) or N < 1:
        raise InputError(f"the data dimension N must be a positive integer, got {N!r}")
    D = check_D(D)
    sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    if np.any(sigma <= 0):
        raise InputError("sigma must be > 0")
    count = sigma.shape[0]
    if math.isinf(D):
        return sigma[:, None] * rng.standard_normal((count, N))
    if method == "student_t":
        z = rng.standard_normal((count, N))
        chi2 = rng.chisquare(D, count)
        return (sigma / np.sqrt(chi2 / D))[:, None] * z
    odds = _beta_prime(rng, N / 2.0, D / 2.0, count)  # B/(1 − B)
    if clip > 0:  # B in [clip, 1 − clip]  <=>  B/(1 − B) in [clip/(1 − clip), (1 − clip)/clip]
        odds = np.clip(odds, clip / (1.0 - clip), (1.0 - clip) / clip)
    radius = sigma * math.sqrt(D) * np.sqrt(odds)
    return radius[:, None] * _directions(rng, count, N)


def _beta_prime(rng: np.random.Generator, a: float, b: float, count: int) -> np.ndarray:
    """B/(1 − B) for B ~ Beta(a, b), drawn as G_a/G_b with independent G_a ~ Gamma(a), G_b ~ Gamma(b)
    (B = G_a/(G_a + G_b), so B/(1 − B) = G_a/G_b: the beta-prime law of the PFGM++ radius, Xu et al.
    2023, the perturbation kernel). Forming B first rounds G_a + G_b to G_a when G_b is below G_a's
    last place: B = 1 exactly and an infinite radius, about 6e-8 of Beta(32, 1/2) draws (N = 64, D = 1).
    A G_b of exactly 0 is a rounding too (numpy's uniform was exactly 0, probability 2^-53; or, for
    b far below 1, a power of a small uniform underflowed), not a draw of the continuous law: it is
    drawn again."""
    numerator = rng.standard_gamma(a, count)
    denominator = rng.standard_gamma(b, count)
    while not np.all(denominator > 0):
        zero = ~(denominator > 0)
        denominator[zero] = rng.standard_gamma(b, int(zero.sum()))
    return numerator / denominator


def prior(
    count: int, N: int, D: float, sigma_max: float, rng: np.random.Generator, *, method: str = "beta"
) -> np.ndarray:
    """x at the start of sampling: the kernel centred at 0 with r_max = σ_max·√D (the reference's
    `generate.py`, `rand_beta_prime`), no clip.
    D = inf: σ_max·N(0, I), EDM's prior."""
    return sample_kernel(np.full(count, float(sigma_max)), N, D, rng, method=method)


def kernel_radius_logpdf(R, N: int, D: float, r: float) -> np.ndarray:
    """log of the unnormalised radial density p_r(R) ∝ R^{N−1} / (R² + r²)^{(N+D)/2}."""
    R = np.asarray(R, dtype=np.float64)
    return (N - 1) * np.log(R) - 0.5 * (N + D) * np.log(R**2 + r**2)
