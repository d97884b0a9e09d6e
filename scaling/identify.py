"""Can the runs determine a law at all? Checked before a fit, and on the optimum it returns.

Before: L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2) and Kaplan et al.'s
L(N, D) (Eq. 1.5) tell the effect of N from that of D only when the runs vary them independently.
At one compute budget D = C/(6N), so log D = const - log N and any split between the two terms fits
equally well: Hoffmann's Approach 3 uses runs from many budgets (§3.3). A power law in one
variable also needs three distinct values of it (two free constants beside the offset), and a
constant loss has no trend to fit.

After: an optimum the data do not pin down is flat along some direction of the parameters. The
Hessian of the objective there has an eigenvalue that is zero or negative relative to the largest
(on Epoch's 240 Chinchilla points the ratio is 1e-7; at one budget it is 1e-18), so the constants
printed are one arbitrary point of a valley, and the fit is reported as not identified.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.errors import InputError

# Runs within 2 % of one line in (log N, log D) are one budget, as `scaling.table.group_budgets`.
LINE_RTOL = 0.02
# Smallest Hessian eigenvalue relative to the largest below which the optimum is a valley.
FLAT_RATIO = 1e-10


def check_varies(values: np.ndarray, name: str, *, need: int = 3) -> None:
    """InputError unless `values` holds at least `need` distinct numbers."""
    distinct = np.unique(values)
    if distinct.size < need:
        shown = ", ".join(f"{v:.4g}" for v in distinct)
        raise InputError(
            f"the runs have {distinct.size} distinct {name} value(s) ({shown}); a power law in {name} "
            f"with an offset needs at least {need}"
        )


def check_loss_varies(loss: np.ndarray) -> None:
    """A constant loss has no trend: every law fits it with its exponents at zero or infinity."""
    if np.ptp(np.log(loss)) == 0:
        raise InputError(f"the loss is {loss[0]:.6g} in every run: there is no trend to fit a law to")


def check_independent(N: np.ndarray, D: np.ndarray) -> None:
    """InputError when log D is (within LINE_RTOL) a straight line in log N across the runs."""
    x, y = np.log(N), np.log(D)
    slope, intercept = np.polyfit(x, y, 1)
    spread = np.sqrt(np.mean((y - (intercept + slope * x)) ** 2))
    if spread > np.log1p(LINE_RTOL):
        return
    if abs(slope + 1) <= LINE_RTOL:
        C = 6.0 * np.exp(np.mean(x + y))
        raise InputError(
            f"all {N.size} runs lie on one compute budget (6·N·D within {LINE_RTOL:.0%} of {C:.3g}): "
            "D falls as N rises, so the N and D terms of the law cannot be told apart; "
            "fit runs from several compute budgets"
        )
    raise InputError(
        f"log D is a straight line in log N across all {N.size} runs (D ∝ N^{slope:.3g}, within "
        f"{LINE_RTOL:.0%}): the N and D terms of the law cannot be told apart; vary N and D independently"
    )


def check_law_inputs(N: np.ndarray, D: np.ndarray, loss: np.ndarray) -> None:
    """All the checks for a law in both N and D (Hoffmann Eq. 2, Kaplan Eq. 1.5)."""
    check_loss_varies(loss)
    check_varies(N, "N")
    check_varies(D, "D")
    check_independent(N, D)


# Central-difference step for the Hessian. The Huber loss changes curvature where |residual| = delta;
# a step of 1e-5 straddles that for runs near it and can show a negative eigenvalue at a true
# minimum (Porian et al.'s optimizer_tuning_no_decay runs: -1.5e-6 of the largest at 1e-5, 1.9e-7 at
# every step from 1e-6 to 1e-8). The gradient is analytic, so a small step costs no accuracy.
HESSIAN_STEP = 1e-7


def hessian_eigenvalues(objective, x: torch.Tensor, step: float = HESSIAN_STEP) -> np.ndarray:
    """Eigenvalues of the objective's Hessian at x (central differences of its gradient)."""
    P = x.numel()
    eye = torch.eye(P, dtype=x.dtype, device=x.device)
    probes = torch.cat([x + step * eye, x - step * eye])
    _, g = objective(probes, torch.zeros(2 * P, dtype=torch.long, device=x.device))
    H = (g[:P] - g[P:]) / (2 * step)
    return torch.linalg.eigvalsh(0.5 * (H + H.T)).cpu().numpy()


def flatness_problem(eigenvalues: np.ndarray) -> str | None:
    """Why the optimum is not a point (see the module docstring), or None."""
    top = float(np.max(np.abs(eigenvalues)))
    low = float(np.min(eigenvalues))
    if not np.isfinite(top) or not np.isfinite(low):
        return "the objective's curvature at the optimum is not finite"
    if top == 0 or low <= FLAT_RATIO * top:
        return (
            f"the objective is flat along a direction of the parameters at the optimum (Hessian "
            f"eigenvalues {low:.3g} to {top:.3g}): the data do not determine all the constants"
        )
    return None


def value_problems(values: dict[str, float]) -> list[str]:
    """Constants that are not finite numbers."""
    return [f"{name} = {value} is not finite" for name, value in values.items() if not np.isfinite(value)]
