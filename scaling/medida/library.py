"""MEDIDA's candidate library and sparse regression (Mojgani, Chattopadhyay & Hassanzadeh 2022;
the public code github.com/envfluids/MEDIDA, `util/PDE_FIND_edit.py` and `util/rvm.py`).

The library holds the PDE-FIND (Rudy et al. 2017) terms u^p·∂xᵈu for p, d = 0..4 without the
constant: 24 columns, named `u`, `u^2`, …, `u_x`, `u_xx`, …, `u*u_x`, `u^2*u_xxx`, … . Derivatives
are spectral by default (the data are periodic); `fd` reproduces the public code's second-order
PDE-FIND stencils with their non-periodic one-sided ends (wrong on periodic data) so its numbers
can be matched.

Regression: sparse Bayesian regression (the RVM of Tipping 2001 that the public code's `rvm.py`
implements, run here through scikit-learn's `ARDRegression`, which applies the same MacKay
fixed-point updates with vanishing Gamma hyperpriors) with the pruning threshold exposed, and
sequentially thresholded least squares (STLSQ, Brunton et al. 2016) as the plain baseline.
Optional column standardisation is honoured (in the public code the `fit(..., standardise=False)`
default silently overrides the constructor's `standardise=True`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from workbench.errors import InputError

__all__ = [
    "term_name",
    "library_terms",
    "derivative_stack",
    "build_library",
    "RegressionConfig",
    "Fit",
    "sparse_regression",
    "term_powers",
]


def term_name(p: int, d: int) -> str:
    """`u^p·∂xᵈu` as a name: d = 0 gives u^(p+1); p = 1 is `u*`, higher `u^p*`."""
    if d == 0:
        return "u" if p == 0 else f"u^{p + 1}"
    deriv = "u_" + "x" * d
    return deriv if p == 0 else ("u*" if p == 1 else f"u^{p}*") + deriv


def term_powers(name: str) -> tuple[int, int]:
    """Inverse of `term_name`: (p, d), so that the term is u^p·∂xᵈu."""
    for p in range(0, 9):
        for d in range(0, 9):
            if term_name(p, d) == name:
                return p, d
    raise InputError(f"unknown library term {name!r}; terms look like u, u^2, u_x, u*u_x, u^2*u_xxx")


def library_terms(max_power: int = 4, max_derivative: int = 4) -> list[tuple[int, int]]:
    """(p, d) of every column, in the library's order (24 for P = D = 4)."""
    # PDE-FIND's columns are u^p·∂ᵈu for p = 0..P, d = 0..D, minus the constant (p = d = 0 gives
    # u^0·u = u, so the constant is the separate "1" column it drops). Here (p, d) means u^p·∂ᵈu:
    # d = 0 terms are u^(p+1), i.e. u … u^(P) for p = 0..P−1, plus derivative terms.
    out = [(p, 0) for p in range(max_power)]  # u, u^2, …, u^P
    out += [(p, d) for d in range(1, max_derivative + 1) for p in range(max_power + 1)]
    return out


def _fd_first(f: np.ndarray, dx: float) -> np.ndarray:
    out = np.empty_like(f)
    out[..., 1:-1] = (f[..., 2:] - f[..., :-2]) / (2 * dx)
    out[..., 0] = (-1.5 * f[..., 0] + 2 * f[..., 1] - 0.5 * f[..., 2]) / dx
    out[..., -1] = (1.5 * f[..., -1] - 2 * f[..., -2] + 0.5 * f[..., -3]) / dx
    return out


def _fd_second(f: np.ndarray, dx: float) -> np.ndarray:
    out = np.empty_like(f)
    out[..., 1:-1] = (f[..., 2:] - 2 * f[..., 1:-1] + f[..., :-2]) / dx**2
    out[..., 0] = (2 * f[..., 0] - 5 * f[..., 1] + 4 * f[..., 2] - f[..., 3]) / dx**2
    out[..., -1] = (2 * f[..., -1] - 5 * f[..., -2] + 4 * f[..., -3] - f[..., -4]) / dx**2
    return out


def _fd_third(f: np.ndarray, dx: float) -> np.ndarray:
    out = np.empty_like(f)
    out[..., 2:-2] = (f[..., 4:] / 2 - f[..., 3:-1] + f[..., 1:-3] - f[..., :-4] / 2) / dx**3
    for i in (0, 1):
        out[..., i] = (
            -2.5 * f[..., i] + 9 * f[..., i + 1] - 12 * f[..., i + 2] + 7 * f[..., i + 3] - 1.5 * f[..., i + 4]
        ) / dx**3
    n = f.shape[-1]
    for i in (n - 1, n - 2):
        out[..., i] = (
            2.5 * f[..., i] - 9 * f[..., i - 1] + 12 * f[..., i - 2] - 7 * f[..., i - 3] + 1.5 * f[..., i - 4]
        ) / dx**3
    return out


def fd_derivative(f: np.ndarray, order: int, dx: float) -> np.ndarray:
    """PDE-FIND's `FiniteDiff`: 2nd-order stencils, one-sided at the two ends; d > 3 is FD(FD(f, 3), d−3)."""
    if order == 0:
        return f
    if order == 1:
        return _fd_first(f, dx)
    if order == 2:
        return _fd_second(f, dx)
    if order == 3:
        return _fd_third(f, dx)
    return fd_derivative(_fd_third(f, dx), order - 3, dx)


def derivative_stack(u: np.ndarray, max_derivative: int, L: float, method: str = "spectral") -> list[np.ndarray]:
    """[u, u_x, …, ∂ᵈu] for states u of shape (..., N) on a periodic grid of length L."""
    u = np.asarray(u, dtype=np.float64)
    n = u.shape[-1]
    if method == "spectral":
        k = 2 * np.pi / L * np.arange(n // 2 + 1)
        uh = np.fft.rfft(u, axis=-1)
        out = [u]
        for d in range(1, max_derivative + 1):
            sym = (1j * k) ** d
            if d % 2:
                sym = sym.copy()
                sym[-1] = 0.0  # odd derivative of a real signal at the Nyquist mode
            out.append(np.fft.irfft(sym * uh, n=n, axis=-1))
        return out
    if method == "fd":
        dx = L / n
        return [fd_derivative(u, d, dx) for d in range(max_derivative + 1)]
    raise InputError(f"unknown derivative method {method!r}; choose spectral or fd")


def build_library(
    u: np.ndarray, L: float, *, max_power: int = 4, max_derivative: int = 4, method: str = "spectral"
) -> tuple[np.ndarray, list[str]]:
    """Θ(u): one row per grid point of every state in u (..., N), one column per term."""
    derivs = derivative_stack(u, max_derivative, L, method)
    u = derivs[0]
    powers = [np.ones_like(u)]
    for _ in range(max_power):
        powers.append(powers[-1] * u)
    cols, names = [], []
    for p, d in library_terms(max_power, max_derivative):
        cols.append((powers[p] * derivs[d]).reshape(-1))
        names.append(term_name(p, d))
    return np.stack(cols, axis=1), names


@dataclasses.dataclass(frozen=True)
class RegressionConfig:
    """Sparse regression settings. `threshold` is ARD's pruning precision (threshold_lambda; the
    public code's threshold_alpha = 1e2 in `experiments/KS/main.py`) or STLSQ's coefficient cut-off."""

    method: str = "ard"  # ard (sparse Bayesian / RVM) or stlsq
    threshold: float = 1e2
    standardise: bool = False  # divide each column by its RMS before fitting
    tol: float = 1e-3
    max_iter: int = 3000
    ridge: float = 0.0  # STLSQ's ridge penalty (0: plain least squares)

    def __post_init__(self):
        if self.method not in ("ard", "stlsq"):
            raise InputError(f"regression method {self.method!r}: choose ard or stlsq")
        if not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise InputError(f"regression threshold must be positive, got {self.threshold}")


@dataclasses.dataclass
class Fit:
    coef: np.ndarray  # (terms,), zero where pruned, in the units of the unscaled library
    std: np.ndarray  # posterior standard deviations (ARD) or OLS standard errors (STLSQ); 0 if pruned
    active: np.ndarray  # bool (terms,)
    noise_std: float  # fitted residual noise standard deviation
    iterations: int


def sparse_regression(theta: np.ndarray, y: np.ndarray, config: RegressionConfig = RegressionConfig()) -> Fit:
    """Fit y ≈ Θ·ξ with a sparse ξ; see the module docstring."""
    theta = np.asarray(theta, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(y))):
        raise InputError(
            "MEDIDA regression: the library or the target has non-finite values "
            "(a model forecast blew up? check the CN pole warning and the step Δt)"
        )
    scale = np.sqrt(np.mean(theta**2, axis=0)) if config.standardise else np.ones(theta.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    X = theta / scale
    if config.method == "ard":
        coef, cov, active, noise, iters = _ard(X, y, config)
    else:
        coef, cov, active, noise, iters = _stlsq(X, y, config)
    std = np.zeros_like(coef)
    std[active] = np.sqrt(np.clip(np.diag(cov), 0, None))
    return Fit(coef=coef / scale, std=std / scale, active=active, noise_std=noise, iterations=iters)


def _ard(X, y, config):
    # Imported here, not at the top: scikit-learn takes about a second to import, and the library,
    # STLSQ and `workbench medida cases` do not need it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ARDRegression

    model = ARDRegression(
        fit_intercept=False, threshold_lambda=config.threshold, tol=config.tol, max_iter=config.max_iter
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    active = model.lambda_ < config.threshold
    coef = np.where(active, model.coef_, 0.0)
    cov = model.sigma_ if active.any() else np.zeros((0, 0))
    return coef, cov, active, float(1 / math.sqrt(model.alpha_)), int(model.n_iter_)


def _stlsq(X, y, config):
    """Sequentially thresholded least squares: fit, zero |ξ| < threshold, refit the rest, repeat."""
    n_terms = X.shape[1]
    active = np.ones(n_terms, dtype=bool)
    coef = np.zeros(n_terms)
    iters = 0
    for iters in range(1, config.max_iter + 1):  # noqa: B007 - the count is reported after the loop
        coef = np.zeros(n_terms)
        if active.any():
            A = X[:, active]
            coef[active] = np.linalg.solve(A.T @ A + config.ridge * np.eye(A.shape[1]), A.T @ y)
        keep = np.abs(coef) >= config.threshold
        if np.array_equal(keep, active):
            break
        active = keep & active
    resid = y - X @ coef
    dof = max(len(y) - int(active.sum()), 1)
    s2 = float(resid @ resid) / dof
    if active.any():
        A = X[:, active]
        cov = s2 * np.linalg.inv(A.T @ A + config.ridge * np.eye(A.shape[1]))
    else:
        cov = np.zeros((0, 0))
    return coef, cov, active, math.sqrt(s2), iters
