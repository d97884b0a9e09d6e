"""Kaplan et al. 2020's power laws: L(N, D) (Eq. 1.5), L(N) (Eq. 1.1) or L(D) (Eq. 1.2), fitted by
`scaling.kaplan`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scaling.methods.base import progress_bar

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from scaling.kaplan import KaplanFit

FORMS = {  # --form -> what the report calls it
    "ND": "L(N,D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5)",
    "N": "L(N) = (N_c/N)^alpha_N (Eq. 1.1), lowest loss per size",
    "D": "L(D) = (D_c/D)^alpha_D (Eq. 1.2), lowest loss per token count",
}
CONSTANTS = ("N_c", "alpha_N", "D_c", "alpha_D")

NAME = "kaplan"
HELP = "Kaplan et al. 2020's L(N, D), L(N) or L(D)"


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--form",
        choices=tuple(FORMS),
        default="ND",
        help="kaplan: L(N, D) (Eq. 1.5), L(N) (Eq. 1.1, per-size frontier) or L(D) (Eq. 1.2)",
    )


def fit(runs: pd.DataFrame, args: argparse.Namespace) -> KaplanFit:
    from scaling.kaplan import fit_kaplan_D, fit_kaplan_N, fit_kaplan_ND

    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    with progress_bar(None, "starts") as bar:
        if args.form == "ND":
            return fit_kaplan_ND(N, D, loss, progress=bar)
        if args.form == "N":
            return fit_kaplan_N(N, loss, frontier=True, progress=bar)
        return fit_kaplan_D(D, loss, progress=bar)


def payload(fit: KaplanFit, args: argparse.Namespace) -> dict:
    return fit.summary() | {"form": args.form, "convention": args.convention}


def text(fit: KaplanFit, args: argparse.Namespace) -> str:
    shown = {k: v for k, v in payload(fit, args).items() if k in CONSTANTS and v == v}  # NaN: not fitted
    fitted = "runs" if args.form == "ND" else f"distinct {args.form}"  # L(N), L(D): the lowest loss of each
    lines = [
        f"Kaplan {FORMS[args.form]}; {fit.n_points} {fitted}, convention {args.convention}",
        "   ".join(f"{k} = {v:.4g}" for k, v in shown.items()),
    ]
    lines += [f"NOT identified: {problem}" for problem in fit.problems]
    return "\n".join(lines)


def dataset(fit: KaplanFit, args: argparse.Namespace) -> xr.Dataset:
    """Every number of the payload as a scalar."""
    import xarray as xr

    return xr.Dataset({k: ((), float(v)) for k, v in payload(fit, args).items() if isinstance(v, (int, float))})
