"""Stochastic ensemble Kalman filter analysis with perturbed observations (Burgers, van Leeuwen &
Evensen 1998; Evensen 2003), H = I, R = r·I, as MEDIDA uses it (the public code's
`experiments/KS/EnKF.py`, github.com/envfluids/MEDIDA), in torch.

Forecast ensemble X (m members × n state), anomalies A = (X − x̄)/√(m−1) so that B = AᵀA (n×n),
perturbed observations w_i = y + η_i, η_i ~ N(0, R). The analysis is x_i^a = x_i + K(w_i − x_i)
with K = B(B + R)⁻¹. Three algebraically equal forms:

- `explicit` (the public code): build B, invert B + R, form K, apply it — O(n²m + n³);
- `ensemble` (Woodbury): K = Aᵀ(rI_m + AAᵀ)⁻¹A, so the update is X + ((W − X)Aᵀ)(rI + AAᵀ)⁻¹A
  with only an m×m Cholesky solve — O(nm² + m³), the choice when m < n;
- `state`: a Cholesky solve with B + R (n×n) instead of an inverse — O(n²m + n³/3), the choice when
  m ≥ n, and the only one with B-localisation.

Inflation multiplies the anomalies by √ρ (B → ρB, Anderson & Anderson 1999). Two localisations:

- physical: B ∘ GC(d/c), a Gaspari–Cohn (1999) taper of the periodic distance d (Houtekamer &
  Mitchell 2001); it makes B full-rank when m ≤ n (without it, an ensemble of m ≈ n members
  gives a rank-deficient B and K ≠ I in many directions);
- spectral: keep only B's per-wavenumber variances, the limit of spectral localisation (Buehner &
  Charron 2007) for a statistically homogeneous state on a periodic grid. With H = I and R = rI
  the gain is then diagonal in Fourier space, K_k = B_kk/(B_kk + r), so the analysis costs
  O(m·n log n) — no n×n or m×m system at all — and sampling noise in the cross-wavenumber
  covariances (relative size ~√(modes/m)) no longer mixes modes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from workbench.errors import InputError

__all__ = ["EnKFConfig", "gaspari_cohn", "periodic_taper", "analysis", "kalman_gain"]


@dataclasses.dataclass(frozen=True)
class EnKFConfig:
    """Ensemble size and the two standard fixes. `localisation` is the Gaspari–Cohn half-width c
    in length units (the taper reaches zero at 2c); 0 turns it off."""

    members: int = 10240
    inflation: float = 1.0
    localisation: float = 0.0
    form: str = "auto"  # auto, ensemble, state, explicit or spectral (= spectral localisation)

    def __post_init__(self):
        if not (isinstance(self.members, int) and self.members >= 2):
            raise InputError(f"EnKF ensemble size must be an integer ≥ 2, got {self.members!r}")
        if not (math.isfinite(self.inflation) and self.inflation >= 1.0):
            raise InputError(f"EnKF inflation must be ≥ 1 (1 = none), got {self.inflation}")
        if not (math.isfinite(self.localisation) and self.localisation >= 0):
            raise InputError(f"EnKF localisation half-width must be ≥ 0 (0 = none), got {self.localisation}")
        if self.form not in ("auto", "ensemble", "state", "explicit", "spectral"):
            raise InputError(f"EnKF form {self.form!r}: choose auto, ensemble, state, explicit or spectral")
        if self.form == "spectral" and self.localisation > 0:
            raise InputError(
                "EnKF: spectral localisation (form: spectral) and a physical localisation half-width exclude each other"
            )


def gaspari_cohn(z: np.ndarray) -> np.ndarray:
    """Gaspari & Cohn (1999) eq. (4.10): compactly supported 5th-order correlation, z = d/c, zero at z ≥ 2."""
    z = np.abs(np.asarray(z, dtype=np.float64))
    out = np.zeros_like(z)
    a = z <= 1
    za = z[a]
    out[a] = -0.25 * za**5 + 0.5 * za**4 + 0.625 * za**3 - 5 / 3 * za**2 + 1
    b = (z > 1) & (z < 2)
    zb = z[b]
    out[b] = zb**5 / 12 - 0.5 * zb**4 + 0.625 * zb**3 + 5 / 3 * zb**2 - 5 * zb + 4 - 2 / (3 * zb)
    return out


def periodic_taper(n: int, length: float, half_width: float) -> np.ndarray:
    """ρ_ij = GC(d_ij / c) with d the periodic distance between grid points i and j (n×n)."""
    dx = length / n
    i = np.arange(n)
    sep = np.abs(i[:, None] - i[None, :])
    d = np.minimum(sep, n - sep) * dx
    return gaspari_cohn(d / half_width)


def analysis(
    forecast: torch.Tensor,
    obs: torch.Tensor,
    obs_std: float,
    config: EnKFConfig,
    *,
    generator: torch.Generator | None = None,
    length: float | None = None,
) -> torch.Tensor:
    """The analysis ensemble (m, n) from a forecast ensemble (m, n) and one observation (n,).

    `length` (the domain length) is needed for localisation.
    """
    X = torch.as_tensor(forecast)
    m, n = X.shape
    y = torch.as_tensor(obs, dtype=X.dtype, device=X.device)
    X, apply_gain = kalman_gain(X, obs_std, config, length=length)
    eta = torch.randn(m, n, generator=generator, dtype=X.dtype, device="cpu").to(X.device)
    D = (y + float(obs_std) * eta) - X  # innovations w_i − x_i, one row per member
    return X + apply_gain(D)


def kalman_gain(forecast: torch.Tensor, obs_std: float, config: EnKFConfig, *, length: float | None = None):
    """(inflated members, d ↦ K·d for rows d) from a forecast ensemble, in the configured form.

    Split from `analysis` so that a static (climatological) ensemble's gain is factorised once
    and applied to many observations.
    """
    X = torch.as_tensor(forecast)
    m, n = X.shape
    if m < 2:
        raise InputError(f"EnKF ensemble size must be ≥ 2, got {m}")
    r = float(obs_std) ** 2
    if not r > 0:
        raise InputError(f"EnKF observation error must be positive, got std {obs_std}")
    mean = X.mean(dim=0, keepdim=True)
    A = (X - mean) * math.sqrt(config.inflation / (m - 1))
    X = mean + A * math.sqrt(m - 1)  # inflated forecast members
    form = config.form
    if form == "spectral":
        return X, _spectral_gain(A, r)
    if form == "auto":
        form = "state" if (config.localisation > 0 or m >= n) else "ensemble"
    if config.localisation > 0 and form == "ensemble":
        raise InputError("EnKF: B-localisation needs the state-space form (form: state or auto)")
    if form == "ensemble":
        # K·d = Aᵀ(rI + AAᵀ)⁻¹A·d: rows are members, so apply to Dᵀ from the right.
        chol = torch.linalg.cholesky(A @ A.T + r * torch.eye(m, dtype=X.dtype, device=X.device))
        return X, lambda D: (A.T @ torch.cholesky_solve(A @ D.T, chol)).T
    B = A.T @ A
    if config.localisation > 0:
        if length is None:
            raise InputError("EnKF localisation needs the domain length")
        taper = torch.as_tensor(periodic_taper(n, length, config.localisation), dtype=X.dtype, device=X.device)
        B = B * taper
    S = B + r * torch.eye(n, dtype=X.dtype, device=X.device)
    if form == "explicit":
        K = B @ torch.linalg.inv(S)
        return X, lambda D: D @ K.T
    chol = torch.linalg.cholesky(S)
    if m > n:
        # More members than state: form K = B S⁻¹ = (S⁻¹B)ᵀ once by a solve (n³), then K·d for all
        # members (n²m), instead of solving for every member's innovation (2n²m) and applying B (n²m).
        K = torch.cholesky_solve(B, chol).T
        return X, lambda D: D @ K.T
    return X, lambda D: (B @ torch.cholesky_solve(D.T, chol)).T


def _spectral_gain(A: torch.Tensor, r: float):
    """d ↦ K·d with K diagonal in Fourier space: K_k = B_kk/(B_kk + r) (see the module docstring).

    With the unnormalised real FFT, white noise of variance r has E|η̂_k|² = n·r in every mode
    (also the real k = 0 and Nyquist modes), and B_kk = Σ_i |Â_ik|² for anomalies A scaled by
    1/√(m−1), so both sides are on the same scale.
    """
    n = A.shape[1]
    B_kk = (torch.fft.rfft(A, dim=1).abs() ** 2).sum(0)
    gain = B_kk / (B_kk + n * r)
    return lambda D: torch.fft.irfft(gain * torch.fft.rfft(D, dim=1), n=n, dim=1)
