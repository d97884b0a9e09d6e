"""Plain-NumPy references for the Kuramoto–Sivashinsky solvers of `operators/ks.py`.

Written independently of `operators/ks.py` (nothing is imported from it) so that each can check
the other:

- `NumpyETDRK4`: ETDRK4 (Cox & Matthews 2002) for ONE state with numpy's rfft — the per-member
  loop that `workbench bench medida` compares the batched torch solver against. The Kassam &
  Trefethen (2005; "KT" below) coefficients are written through the φ-functions
      φ1(z) = (eᶻ − 1)/z,  φ2(z) = (eᶻ − 1 − z)/z²,  φ3(z) = (eᶻ − 1 − z − z²/2)/z³,
  Q = (h/2)·φ1(z/2), f1 = h(φ1 − 3φ2 + 4φ3), f2 = h(φ2 − 2φ3), f3 = h(−φ2 + 4φ3) at z = hL(k)
  (algebraically KT eq. (2.5)), each φ a trapezoid mean over a FULL circle of 2M points around
  z (KT §3: Cauchy's integral formula). For real z this equals KT's real part of an M-point
  upper-half-circle mean; for complex z (the u_xxx term) the full circle is required.
- `dop853_reference`: an independent high-accuracy solution of u_t = −uu_x − u_xx − u_xxxx by
  scipy's DOP853 (rtol 1e-12, atol 1e-14) on the Fourier-space ODE, the Kassam–Trefethen setup
  (N = 128, L = 32π, x = 32π(1:N)/N, u0 = cos(x/16)(1 + sin(x/16))).

Conventions shared with the torch solver (so the two agree to round-off): the equation is
u_t + λ0uu_x + λ1u_xx + λ2u_xxxx + λ3u_xxx + c·u²u_x = 0, the nonlinear term is
N(u) = −ik·rfft(λ0u²/2 + cu³/3) with the Nyquist mode of the odd derivative set to zero
(KT's kursiv.m), no dealiasing (as in the public MEDIDA code).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "wavenumbers",
    "linear_symbol",
    "phi_functions",
    "etdrk4_weights",
    "NumpyETDRK4",
    "kassam_trefethen_setup",
    "dop853_reference",
]


def wavenumbers(L: float, N: int) -> np.ndarray:
    """rfft wavenumbers 2π/L·[0, 1, …, N/2]."""
    return 2 * math.pi / L * np.arange(N // 2 + 1)


def linear_symbol(k: np.ndarray, lam1=1.0, lam2=1.0, lam3=0.0) -> np.ndarray:
    """Fourier symbol of −λ1∂x² − λ2∂x⁴ − λ3∂x³: λ1k² − λ2k⁴ + iλ3k³ (since (ik)³ = −ik³)."""
    return lam1 * k**2 - lam2 * k**4 + 1j * lam3 * k**3


def phi_functions(z: np.ndarray, M: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """φ1, φ2, φ3 at each z by a 2M-point trapezoid mean over the unit circle centred on z.

    Direct formulas cancel catastrophically for small |z|; the contour mean does not (KT §3).
    """
    z = np.asarray(z, dtype=complex)
    w = z[:, None] + np.exp(2j * math.pi * (np.arange(2 * M) + 0.5) / (2 * M))[None, :]
    ew = np.exp(w)
    phi1 = np.mean((ew - 1) / w, axis=1)
    phi2 = np.mean((ew - 1 - w) / w**2, axis=1)
    phi3 = np.mean((ew - 1 - w - w**2 / 2) / w**3, axis=1)
    if np.all(z.imag == 0):  # real symbol: the exact φ are real, drop the round-off imaginary part
        phi1, phi2, phi3 = phi1.real, phi2.real, phi3.real
    return phi1, phi2, phi3


def etdrk4_weights(Lk: np.ndarray, h: float, M: int = 16) -> dict[str, np.ndarray]:
    """E = e^{hL}, E2 = e^{hL/2} and KT's Q, f1, f2, f3 written with φ-functions."""
    z = h * np.asarray(Lk, dtype=complex)
    p1, p2, p3 = phi_functions(z, M)
    half1, _, _ = phi_functions(z / 2, M)
    real = np.all(z.imag == 0)
    E, E2 = np.exp(z), np.exp(z / 2)
    if real:
        E, E2 = E.real, E2.real
    return {
        "E": E,
        "E2": E2,
        "Q": 0.5 * h * half1,
        "f1": h * (p1 - 3 * p2 + 4 * p3),
        "f2": h * (p2 - 2 * p3),
        "f3": h * (-p2 + 4 * p3),
    }


class NumpyETDRK4:
    """ETDRK4 for one KS state in numpy: u_t + λ0uu_x + λ1u_xx + λ2u_xxxx + λ3u_xxx + c·u²u_x = 0."""

    def __init__(self, L: float, N: int, h: float, *, lam0=1.0, lam1=1.0, lam2=1.0, lam3=0.0, cubic=0.0, M: int = 16):
        self.N, self.h, self.lam0, self.cubic = int(N), float(h), float(lam0), float(cubic)
        k = wavenumbers(L, N)
        w = etdrk4_weights(linear_symbol(k, lam1, lam2, lam3), h, M)
        self.E, self.E2 = w["E"], w["E2"]
        g = -1j * k
        g[-1] = 0.0  # odd derivative: Nyquist mode zeroed
        # N(u) = g·F̂(u); fold g into the weights once.
        self.Q, self.f1, self.f2, self.f3 = (g * w[name] for name in ("Q", "f1", "f2", "f3"))

    def flux_hat(self, v: np.ndarray) -> np.ndarray:
        """F̂ with N(u) = −ik·F̂: F = λ0u²/2 + c·u³/3 (u·u_x = (u²/2)_x, u²u_x = (u³/3)_x)."""
        u = np.fft.irfft(v, n=self.N)
        f = 0.5 * self.lam0 * u * u
        if self.cubic:
            f = f + (self.cubic / 3.0) * u * u * u
        return np.fft.rfft(f)

    def step_hat(self, v: np.ndarray) -> np.ndarray:
        """One ETDRK4 step in Fourier space (KT eq. (2.5): stages a, b, c, v⁺)."""
        Fv = self.flux_hat(v)
        a = self.E2 * v + self.Q * Fv
        Fa = self.flux_hat(a)
        b = self.E2 * v + self.Q * Fa
        Fb = self.flux_hat(b)
        c = self.E2 * a + self.Q * (2 * Fb - Fv)
        Fc = self.flux_hat(c)
        return self.E * v + self.f1 * Fv + 2 * self.f2 * (Fa + Fb) + self.f3 * Fc

    def run(self, u0: np.ndarray, steps: int) -> np.ndarray:
        """The state after `steps` steps (u0 of shape (N,))."""
        v = np.fft.rfft(np.asarray(u0, dtype=np.float64))
        for _ in range(int(steps)):
            v = self.step_hat(v)
        return np.fft.irfft(v, n=self.N)


def kassam_trefethen_setup(N: int = 128) -> tuple[float, np.ndarray, np.ndarray]:
    """KT's kursiv.m problem: L = 32π, x = 32π(1:N)/N, u0 = cos(x/16)(1 + sin(x/16))."""
    L = 32 * math.pi
    x = L * np.arange(1, N + 1) / N
    return L, x, np.cos(x / 16) * (1 + np.sin(x / 16))


def dop853_reference(
    u0: np.ndarray,
    L: float,
    t_eval,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    lam0=1.0,
    lam1=1.0,
    lam2=1.0,
    lam3=0.0,
    cubic=0.0,
) -> np.ndarray:
    """u(t) for t in `t_eval` (rows) of u_t = −uu_x − u_xx − u_xxxx by DOP853 on the Fourier ODE

        v̂_t = (k² − k⁴)·v̂ − (ik/2)·rfft(u²),  u = irfft(v̂)

    with v̂ split into real and imaginary parts (Nyquist zeroed in the odd derivative, as above);
    the λ and cubic keywords give the general equation of `NumpyETDRK4`. Explicit on a stiff
    problem (|L| ≤ (N/2·2π/L)⁴ = 256 at N = 128), but tolerances this tight keep the steps inside
    DOP853's stability region anyway. Cost on a loaded 2-core machine: ≈8 s to t = 60 (N = 128).
    """
    from scipy.integrate import solve_ivp

    u0 = np.asarray(u0, dtype=np.float64)
    N = u0.shape[-1]
    k = wavenumbers(L, N)
    Lk = linear_symbol(k, lam1, lam2, lam3)
    g = -1j * k
    g[-1] = 0.0
    K = k.size

    def rhs(_t, y):
        v = y[:K] + 1j * y[K:]
        u = np.fft.irfft(v, n=N)
        flux = 0.5 * lam0 * u * u + (cubic / 3.0) * u * u * u if cubic else 0.5 * lam0 * u * u
        dv = Lk * v + g * np.fft.rfft(flux)
        return np.concatenate([dv.real, dv.imag])

    v0 = np.fft.rfft(u0)
    t_eval = np.atleast_1d(np.asarray(t_eval, dtype=np.float64))
    sol = solve_ivp(
        rhs,
        (0.0, float(t_eval[-1])),
        np.concatenate([v0.real, v0.imag]),
        method="DOP853",
        t_eval=t_eval,
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"DOP853 reference failed: {sol.message}")
    v = sol.y[:K].T + 1j * sol.y[K:].T
    return np.fft.irfft(v, n=N, axis=-1)
