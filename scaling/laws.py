"""Scaling-law functional forms and the compute-optimal allocation they imply.

Kaplan et al. 2020 (arXiv:2001.08361) and Hoffmann et al. 2022 (arXiv:2203.15556). Everything here
is plain numpy on already-fitted constants; fitting lives in `scaling.fit` and `scaling.kaplan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHINCHILLA_BUDGET = 5.88e23  # 6 · 70e9 · 1.4e12, the Chinchilla training budget (Hoffmann §3)
PF_DAY = 8.64e19  # FLOPs in one petaflop/s-day (Kaplan §2.1)


@dataclass(frozen=True)
class PowerLaw:
    """y = coef · x^exponent + offset, one power law in one variable.

    Without an offset it is a compute-optimal frontier N*(C) ∝ C^a or D*(C) ∝ C^b (Hoffmann et
    al. 2022, Approaches 1 and 2; fitted by `scaling.isoflop.weighted_power_law`). With one it is
    the loss law L(N) = a·N^b + c that Mu-scaling (Yao & Wang 2023, arXiv:2304.06875) fits across
    the widths of a muP sweep (`scaling.mup_predict.fit_power_law`); `a`, `b`, `c` are that
    paper's names for coef, exponent and offset. A fit records the statistic its estimator
    reports: `r2` (weighted R² in log-log space) or `rmse` (of the residuals in y); the other is NaN.
    """

    coef: float
    exponent: float
    offset: float = 0.0
    r2: float = float("nan")
    rmse: float = float("nan")

    def __call__(self, x):
        return self.coef * np.asarray(x, float) ** self.exponent + self.offset

    @property
    def a(self) -> float:
        return self.coef

    @property
    def b(self) -> float:
        return self.exponent

    @property
    def c(self) -> float:
        return self.offset

    def as_dict(self) -> dict[str, float]:
        """{"a", "b", "c"}: the Mu-scaling names, as the loss-prediction reports print them."""
        return {"a": self.coef, "b": self.exponent, "c": self.offset}


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann Eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def a(self) -> float:
        """Exponent of N*(C) ∝ C^a: beta / (alpha + beta) (Hoffmann Eq. 4)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D*(C) ∝ C^b: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """G = (alpha·A / (beta·B))^(1/(alpha+beta)) (Hoffmann Eq. 4)."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal_allocation(self, C):
        """N*(C) = G·(C/6)^a and D*(C) = G^-1·(C/6)^b under C = 6ND (Hoffmann Eq. 4)."""
        C = np.asarray(C, float)
        N = self.G * (C / 6.0) ** self.a
        D = (C / 6.0) ** self.b / self.G
        return N, D

    def allocation_table(self, C: float = CHINCHILLA_BUDGET) -> dict[str, float]:
        N, D = self.optimal_allocation(C)
        return {
            "C": float(C),
            "a": self.a,
            "b": self.b,
            "G": self.G,
            "N_star": float(N),
            "D_star": float(D),
            "tokens_per_param": float(D / N),
            "L_star": float(self.loss(N, D)),
            "L_70B_1.4T": float(self.loss(70e9, 1.4e12)),
        }

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta, "a": self.a, "b": self.b}


# Published constant sets: Hoffmann et al. 2022 §3.3 as printed, and unrounded (from the paper's
# arXiv TeX source, as the kyo-takano/chinchilla package uses them); Besiroglu et al. 2024 (Epoch,
# "Chinchilla Scaling: A replication attempt"), their fit to the 240 digitised runs.
HOFFMANN_PRINTED = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
HOFFMANN_UNROUNDED = ChinchillaLaw(E=1.69337368, A=406.401018, B=410.722827, alpha=0.33917084, beta=0.2849083)
EPOCH_2024 = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
# Muennighoff et al. 2023 C4 fit (huggingface/datablations README), given in log space with alpha = beta.
MUENNIGHOFF_C4 = ChinchillaLaw(
    E=float(np.exp(0.6254804)), A=float(np.exp(6.255414)), B=float(np.exp(7.3049974)), alpha=0.3526596, beta=0.3526596
)
MUENNIGHOFF_R_D_STAR = 15.387756
MUENNIGHOFF_R_N_STAR = 5.309743


def effective_data(D, U, r_d_star: float):
    """Data-constrained effective tokens D' (Muennighoff et al. 2023, Eq. 5).

    D' = U + U·R*_D·(1 - exp(-R_D / R*_D)), with R_D = D/U - 1 repetitions beyond the first epoch:
    repeated tokens are worth exponentially less, saturating at (1 + R*_D)·U.
    """
    D, U = np.asarray(D, float), np.asarray(U, float)
    repeats = np.maximum(D / U - 1.0, 0.0)
    return U + U * r_d_star * (1.0 - np.exp(-repeats / r_d_star))


@dataclass(frozen=True)
class KaplanLaws:
    """Kaplan's power laws (Eqs. 1.1, 1.2, 1.5). N is non-embedding parameters."""

    N_c: float
    alpha_N: float
    D_c: float
    alpha_D: float

    def loss_N(self, N):
        """L(N) = (N_c / N)^alpha_N: data-unlimited, trained to convergence (Eq. 1.1)."""
        return (self.N_c / np.asarray(N, float)) ** self.alpha_N

    def loss_D(self, D):
        """L(D) = (D_c / D)^alpha_D: large model, early stopped (Eq. 1.2)."""
        return (self.D_c / np.asarray(D, float)) ** self.alpha_D

    def loss_ND(self, N, D):
        """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5)."""
        N, D = np.asarray(N, float), np.asarray(D, float)
        return ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D


# Kaplan Table 2 (the L(N, D) fit) and Eqs. 1.1/1.2 (the separate fits).
KAPLAN_TABLE2 = KaplanLaws(N_c=6.4e13, alpha_N=0.076, D_c=1.8e13, alpha_D=0.103)
KAPLAN_EQ1 = KaplanLaws(N_c=8.8e13, alpha_N=0.076, D_c=5.4e13, alpha_D=0.095)
