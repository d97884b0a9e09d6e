"""Kuramoto–Sivashinsky solvers, batched over an ensemble dimension, in torch with an FFT.

The equation in the "λ form" of MEDIDA (Mojgani, Chattopadhyay & Hassanzadeh 2022, Chaos 32,
061105; the public code github.com/envfluids/MEDIDA, `experiments/KS/case_select.py`), with two
optional extra LHS terms:

    u_t + λ0·u·u_x + λ1·u_xx + λ2·u_xxxx + λ3·u_xxx + c·u²·u_x = 0     on a periodic [−L/2, L/2).

In Fourier space (û = rfft(u), wavenumbers k = 2π/L·[0, 1, …, N/2]) this splits into a diagonal
linear part and a conservative nonlinear part,

    û_t = L(k)·û + N(u),   L(k) = λ1·k² − λ2·k⁴ + i·λ3·k³,
    N(u) = −i·k·rfft(λ0·u²/2 + c·u³/3)                    (u·u_x = (u²/2)_x, u²·u_x = (u³/3)_x),

so (u_xxx → (ik)³ = −ik³, moved to the RHS: +iλ3k³). Two integrators:

- `ETDRK4`: exponential time differencing RK4 of Cox & Matthews with the contour-integral
  coefficients of Kassam & Trefethen (2005, SIAM J. Sci. Comput. 26, 1214, "KT"; eq. (2.5)) —
  the truth.
- `cnab2_step`: one Crank–Nicolson (linear) / Adams–Bashforth 2 (nonlinear) step from u(t−Δt)
  and u(t−2Δt) — the imperfect model of the public MEDIDA protocol (`CNAB2intKS_onestep` in the
  public code's `code/canonicalPDEs/canonicalPDEs.py`).

Every function takes states of shape (..., N): any leading dimensions are an ensemble (batch) and
are advanced together with one batched FFT per stage. Float64 throughout by default: the
one-step model-error target (u_obs − u_model)/Δt divides round-off by Δt.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math

import numpy as np
import torch

from workbench.errors import InputError

__all__ = [
    "KSGrid",
    "KSEquation",
    "ETDRK4",
    "cnab2_step",
    "etdrk4_coefficients",
    "spectral_derivative",
    "initial_condition",
    "cn_pole_wavenumber",
]


@dataclasses.dataclass(frozen=True)
class KSGrid:
    """A periodic grid: N points on [x0, x0 + L), spacing L/N (MEDIDA's preset: L = 100, N = 1024)."""

    L: float = 100.0
    N: int = 1024
    x0: float | None = None  # default −L/2 (MEDIDA); Kassam–Trefethen's grid starts at L/N

    def __post_init__(self):
        if not (self.N >= 8 and self.N % 2 == 0):
            raise InputError(f"KS grid: N must be an even number ≥ 8, got {self.N}")
        if not (math.isfinite(self.L) and self.L > 0):
            raise InputError(f"KS grid: L must be a positive length, got {self.L}")

    @property
    def dx(self) -> float:
        return self.L / self.N

    @property
    def x(self) -> np.ndarray:
        start = -self.L / 2 if self.x0 is None else self.x0
        return start + self.dx * np.arange(self.N)

    @property
    def k(self) -> np.ndarray:
        """Real-FFT wavenumbers 2π/L·[0, …, N/2] (the Nyquist mode last)."""
        return 2 * np.pi / self.L * np.arange(self.N // 2 + 1)


@dataclasses.dataclass(frozen=True)
class KSEquation:
    """Coefficients of u_t + λ0 uu_x + λ1 u_xx + λ2 u_xxxx + λ3 u_xxx + c u²u_x = 0 (all on the LHS)."""

    lam0: float = 1.0
    lam1: float = 1.0
    lam2: float = 1.0
    lam3: float = 0.0  # the KSpu3x extra term u_xxx
    cubic: float = 0.0  # the KSpu3x_Du3 extra term u²u_x (flux ½λ0(u² + λ3u³) gives c = 3/2·λ0·λ3)

    def linear_symbol(self, k: np.ndarray) -> np.ndarray:
        """L(k) = λ1k² − λ2k⁴ + iλ3k³ (complex when λ3 ≠ 0)."""
        return self.lam1 * k**2 - self.lam2 * k**4 + 1j * self.lam3 * k**3

    def flux(self, u: torch.Tensor) -> torch.Tensor:
        """F(u) with N(u) = −ik·F̂: λ0u²/2 + c·u³/3."""
        f = (0.5 * self.lam0) * u * u
        if self.cubic:
            f = f + (self.cubic / 3.0) * u * u * u
        return f

    def rhs_terms(self) -> dict[str, float]:
        """The equation's RHS u_t = Σ coef·term, named like the discovery library (`u*u_x`, `u_xx`)."""
        terms = {
            "u*u_x": -self.lam0,
            "u_xx": -self.lam1,
            "u_xxxx": -self.lam2,
            "u_xxx": -self.lam3,
            "u^2*u_x": -self.cubic,
        }
        return {t: float(c) for t, c in terms.items() if c != 0.0}


def _odd_derivative_mask(grid: KSGrid) -> np.ndarray:
    """1 except at the Nyquist mode, where an odd derivative of a real signal is zero (KT's kursiv.m)."""
    m = np.ones(grid.N // 2 + 1)
    m[-1] = 0.0
    return m


def etdrk4_coefficients(Lk: np.ndarray, h: float, M: int = 16) -> dict[str, np.ndarray]:
    """E, E2, Q, f1, f2, f3 of Kassam & Trefethen (2005) eq. (2.5) via M-point contour means.

    The φ-functions are evaluated as means over points r_j = exp(iπ(j−½)/M) on the upper half
    of a unit circle around each h·L(k) (real L: the real part of the mean is the full-circle
    mean). For complex L (the u_xxx term) the contour must be the full circle, so the points
    are r_j = exp(2πi(j−½)/M) and the mean is taken without the real part.
    """
    hL = h * np.asarray(Lk, dtype=complex)
    real = bool(np.all(np.imag(hL) == 0))
    j = np.arange(1, M + 1)
    r = np.exp(1j * np.pi * (j - 0.5) / M) if real else np.exp(2j * np.pi * (j - 0.5) / M)
    LR = hL[:, None] + r[None, :]
    mean = (lambda z: np.real(np.mean(z, axis=1))) if real else (lambda z: np.mean(z, axis=1))
    eLR = np.exp(LR)
    return {
        "E": np.exp(hL),
        "E2": np.exp(hL / 2),
        "Q": h * mean((np.exp(LR / 2) - 1) / LR),
        "f1": h * mean((-4 - LR + eLR * (4 - 3 * LR + LR**2)) / LR**3),
        "f2": h * mean((2 + LR + eLR * (LR - 2)) / LR**3),
        "f3": h * mean((-4 - 3 * LR - LR**2 + eLR * (4 - LR)) / LR**3),
    }


class ETDRK4:
    """ETDRK4 for the KS equation on `grid`, step h, batched over leading dimensions.

    >>> solver = ETDRK4(KSEquation(), KSGrid(32 * math.pi, 128), h=0.25)
    >>> u = solver.run(u0, steps=120)            # (..., N) after 120 steps
    >>> traj = solver.run(u0, steps=600, every=4)  # (..., 151, N), snapshot every 4 steps

    Speed (CPU): a step is 4 irfft/rfft pairs and ~11 elementwise complex ops. On a whole ensemble
    each op would stream the full (members × N/2+1) complex arrays through memory (8 MB at
    1,024 × 1,024), so `run` instead advances `chunk` members at a time through ALL steps with
    in-place ops: the working set (a few arrays of chunk × N) stays in cache.
    Members are independent, so chunking changes nothing but the order of work. (The in-place
    ops make `run`/`step_hat` a forward solver only: autograd through them is not supported.)
    """

    def __init__(
        self,
        equation: KSEquation,
        grid: KSGrid,
        h: float,
        *,
        M: int = 16,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ):
        if not (math.isfinite(h) and h > 0):
            raise InputError(f"ETDRK4: the step h must be positive, got {h}")
        self.equation, self.grid, self.h, self.dtype = equation, grid, float(h), dtype
        self.device = torch.device(device)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        k = grid.k
        coef = etdrk4_coefficients(equation.linear_symbol(k), self.h, M)
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=complex), dtype=cdtype, device=self.device)
        self.E, self.E2 = as_t(coef["E"]), as_t(coef["E2"])
        # Fold the −ik of N(u) into the coefficients once: N(u) = −ik·F̂(u) (Nyquist zeroed).
        g = -1j * k * _odd_derivative_mask(grid)
        self.Qg, self.f1g, self.f2g, self.f3g = (as_t(coef[name] * g) for name in ("Q", "f1", "f2", "f3"))
        # For the in-place step: without the cubic term F = (λ0/2)·u², so λ0/2 is folded into the
        # weights of F̂ too and the flux is just u² (one op); 2·f2 of KT eq. (2.5) is folded likewise.
        s = 1.0 if equation.cubic else 0.5 * equation.lam0
        self._Qs, self._f1s, self._f2s2, self._f3s = (
            as_t(coef[name] * g * w) for name, w in (("Q", s), ("f1", s), ("f2", 2 * s), ("f3", s))
        )
        # Members per pass on the CPU (32–64 measured equally fast at N = 1,024: larger chunks leave
        # the cache, smaller ones pay the per-op call overhead); None, on a GPU: all at once.
        self.chunk = 64 if self.device.type == "cpu" else None

    def _flux_hat(self, v: torch.Tensor) -> torch.Tensor:
        """F̂(u) for û = v, up to the factor folded into the weights (the flux computed in place)."""
        u = torch.fft.irfft(v, n=self.grid.N)
        if self.equation.cubic:  # F = u²·(λ0/2 + (c/3)·u) = λ0u²/2 + c·u³/3
            u = u.square() * (u * (self.equation.cubic / 3.0) + 0.5 * self.equation.lam0)
        else:
            u.square_()  # (λ0/2)·u² with λ0/2 in the weights
        # No preallocated `out=`: for the FFTs it only adds a copy (measured slower).
        return torch.fft.rfft(u)

    def _step_(self, v: torch.Tensor) -> torch.Tensor:
        """One step in place on v (Kassam & Trefethen 2005, eq. (2.5): stages a, b, c, v⁺):

            a = E2·v + Q·N(v),   b = E2·v + Q·N(a),   c = E2·a + Q·(2N(b) − N(v)),
            v⁺ = E·v + f1·N(v) + 2f2·(N(a) + N(b)) + f3·N(c),

        with v⁺ accumulated in v's storage as each N(·) becomes available and the other stages
        updated in place (E2·v becomes b, a becomes c), so each elementwise op is one pass.
        """
        Fv = self._flux_hat(v)
        e2v = self.E2 * v
        a = torch.addcmul(e2v, self._Qs, Fv)  # a
        v.mul_(self.E).addcmul_(self._f1s, Fv)  # v⁺ ← E·v + f1·N(v)
        Fx = self._flux_hat(a)  # N(a)
        v.addcmul_(self._f2s2, Fx)
        b = e2v.addcmul_(self._Qs, Fx)  # b (E2·v no longer needed)
        Fx = self._flux_hat(b)  # N(b)
        v.addcmul_(self._f2s2, Fx)
        Fv.sub_(Fx, alpha=2)  # N(v) − 2N(b)
        c = a.mul_(self.E2).addcmul_(self._Qs, Fv, value=-1)  # c = E2·a + Q·(2N(b) − N(v))
        return v.addcmul_(self._f3s, self._flux_hat(c))

    def step_hat(self, v: torch.Tensor) -> torch.Tensor:
        """One step in Fourier space (Kassam & Trefethen 2005, eq. (2.5): stages a, b, c, v⁺)."""
        return self._step_(v.clone())

    def run(self, u0, steps: int, *, every: int | None = None) -> torch.Tensor:
        """Advance `steps` steps; return the final state, or snapshots every `every` steps (t=0 first)."""
        u0 = torch.as_tensor(u0, dtype=self.dtype, device=self.device)
        n = self.grid.N
        if u0.shape[-1] != n:
            raise InputError(f"ETDRK4: state has {u0.shape[-1]} points, the grid has {n}")
        steps, lead = int(steps), u0.shape[:-1]
        flat = u0.reshape(-1, n)
        members = flat.shape[0]
        n_snap = steps // every + 1 if every else 1
        out = torch.empty((members, n_snap, n), dtype=self.dtype, device=self.device)
        # CPU: chunks of at most `chunk` members, spread over as many Python threads as torch may
        # use (torch ops release the GIL), at least one chunk per thread.
        threads = torch.get_num_threads() if self.chunk else 1
        size = max(1, min(self.chunk or members, -(-members // threads)))
        chunks = [(lo, min(lo + size, members)) for lo in range(0, members, size)]
        workers = min(threads, len(chunks))

        def advance(lo: int, hi: int) -> None:  # members lo:hi through all steps, into out
            v = torch.fft.rfft(flat[lo:hi])
            if every:
                out[lo:hi, 0] = flat[lo:hi]
            for i in range(1, steps + 1):
                self._step_(v)
                if every and i % every == 0:
                    out[lo:hi, i // every] = torch.fft.irfft(v, n=n)
            if not every:
                out[lo:hi, 0] = torch.fft.irfft(v, n=n)

        def worker(mine) -> None:
            # Each worker runs its chunks with ONE intra-op thread: on a small chunk torch's own
            # threading pays an OpenMP fork/join per op, which collapses when another process
            # shares the cores (measured: 2 intra-op threads slower than 1 under load).
            # torch.set_num_threads acts on the calling thread, and also sets the default for
            # threads started later, so the worker restores it before it ends.
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for lo, hi in mine:
                    advance(lo, hi)
            finally:
                torch.set_num_threads(before)

        if not members:
            pass
        elif not self.chunk:  # GPU: one pass over all members
            advance(0, members)
        elif workers == 1:
            worker(chunks)
        else:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for job in [pool.submit(worker, chunks[w::workers]) for w in range(workers)]:
                    job.result()  # re-raises a worker's exception
        return out.reshape(*lead, n_snap, n) if every else out.reshape(*lead, n)


def cnab2_step(
    u_prev: torch.Tensor, u_prev2: torch.Tensor, equation: KSEquation, grid: KSGrid, dt: float
) -> torch.Tensor:
    """One CNAB2 step of the imperfect model (the public MEDIDA code's `CNAB2intKS_onestep`),
    batched over leading dimensions:

        û(t) = (1 − ΔtL/2)⁻¹ [(1 + ΔtL/2)·û(t−Δt) + (3Δt/2)·N(u(t−Δt)) − (Δt/2)·N(u(t−2Δt))].

    For an anti-diffusive model (λ2 = 0, λ1 > 0) the factor has a pole near k = √(2/(λ1Δt)):
    k = 20 at Δt = 5e-3, inside the grid's k ≤ 32.2 at L = 100, N = 1024, where the one-step
    amplification reaches ~1000 (MEDIDA cases 3, 4, 5, 11); `cn_pole_wavenumber` reports it.
    """
    u_prev = torch.as_tensor(u_prev, dtype=torch.float64)
    u_prev2 = torch.as_tensor(u_prev2, dtype=u_prev.dtype, device=u_prev.device)
    k = grid.k
    hl = 0.5 * dt * equation.linear_symbol(k)
    cd = torch.complex128 if u_prev.dtype == torch.float64 else torch.complex64
    plus = torch.as_tensor(1 + hl, dtype=cd, device=u_prev.device)
    inv_minus = torch.as_tensor(1 / (1 - hl), dtype=cd, device=u_prev.device)
    g = torch.as_tensor(-1j * k * _odd_derivative_mask(grid), dtype=cd, device=u_prev.device)
    n1 = g * torch.fft.rfft(equation.flux(u_prev))
    n2 = g * torch.fft.rfft(equation.flux(u_prev2))
    v = inv_minus * (plus * torch.fft.rfft(u_prev) + (1.5 * dt) * n1 - (0.5 * dt) * n2)
    return torch.fft.irfft(v, n=grid.N)


def cn_pole_wavenumber(equation: KSEquation, grid: KSGrid, dt: float) -> float | None:
    """The grid wavenumber where |(1 + ΔtL/2)/(1 − ΔtL/2)| peaks above 10, or None (see `cnab2_step`)."""
    k = grid.k
    hl = 0.5 * dt * equation.linear_symbol(k)
    amp = np.abs((1 + hl) / (1 - hl))
    i = int(np.argmax(amp))
    return float(k[i]) if amp[i] > 10 else None


def spectral_derivative(u: torch.Tensor, order: int, grid: KSGrid) -> torch.Tensor:
    """∂xᵈu by multiplying û by (ik)ᵈ (Nyquist zeroed for odd d), batched over leading dims."""
    if order == 0:
        return u
    k = grid.k
    sym = (1j * k) ** order
    if order % 2:
        sym = sym * _odd_derivative_mask(grid)
    cd = torch.complex128 if u.dtype == torch.float64 else torch.complex64
    return torch.fft.irfft(torch.as_tensor(sym, dtype=cd, device=u.device) * torch.fft.rfft(u), n=grid.N)


def initial_condition(grid: KSGrid, kind: str = "medida") -> np.ndarray:
    """MEDIDA's u0 = −cos(2πx/L)(1 + sin(−2πx/L)) or Kassam–Trefethen's cos(x/16)(1 + sin(x/16))."""
    x = grid.x
    if kind == "medida":
        return -np.cos(2 * np.pi * x / grid.L) * (1 + np.sin(-2 * np.pi * x / grid.L))
    if kind == "kassam_trefethen":
        return np.cos(x / 16) * (1 + np.sin(x / 16))
    raise InputError(f"unknown KS initial condition {kind!r}; choose medida or kassam_trefethen")
