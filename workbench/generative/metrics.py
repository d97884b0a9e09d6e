"""Sample-quality metrics that need nothing downloaded (no Inception weights, unlike FID).

- sliced Wasserstein-1: the mean over random unit directions θ of W1(θ·X, θ·Y) between the 1-D
  projections (sorted-sample quantile matching when the sizes agree);
- unbiased MMD² with a mixture of RBF kernels at bandwidths {1/4, 1/2, 1, 2, 4} × the median pairwise
  distance of the pooled sample;
- for images, both on the penultimate features of a small classifier trained here on the digits
  (`workbench.generative.features`), never on downloaded Inception weights.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["mmd2", "sliced_wasserstein"]


def _flat(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def sliced_wasserstein(x, y, projections: int = 256, seed: int = 0) -> float:
    """Mean W1 over `projections` random directions (fixed seed, so a comparison is paired)."""
    x, y = _flat(x), _flat(y)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((x.shape[1], projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px, py = x @ theta, y @ theta
    if len(px) == len(py):
        return float(np.mean(np.abs(np.sort(px, 0) - np.sort(py, 0))))
    return float(np.mean([stats.wasserstein_distance(px[:, k], py[:, k]) for k in range(projections)]))


def mmd2(x, y, scales=(0.25, 0.5, 1.0, 2.0, 4.0), max_points: int = 2000, seed: int = 0) -> float:
    """Unbiased MMD² (diagonals excluded) with Σ_s exp(−||a − b||²/(2(s·h)²)), h = median pooled distance."""
    rng = np.random.default_rng(seed)
    x, y = _flat(x), _flat(y)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    if len(y) > max_points:
        y = y[rng.choice(len(y), max_points, replace=False)]
    z = np.concatenate([x, y])
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] - 2 * z @ z.T + sq[None, :], 0.0)
    h2 = np.median(d2[np.triu_indices(len(z), 1)])
    kernel = sum(np.exp(-d2 / (2 * s * s * h2)) for s in scales)
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )
