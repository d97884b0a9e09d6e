"""Approach 1 (Hoffmann et al. 2022, §3.1): the envelope of minimum loss against compute, and
N*(C) ∝ C^a, D*(C) ∝ C^b through the runs on it, fitted by `scaling.isoflop.fit_envelope`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scaling import report

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from scaling.isoflop import EnvelopeFit

NAME = "envelope"
HELP = "Approach 1, the envelope of minimum loss vs compute (Hoffmann et al. 2022)"


def add_flags(p: argparse.ArgumentParser) -> None:
    """Approach 1 has no options of its own."""


def fit(runs: pd.DataFrame, args: argparse.Namespace) -> EnvelopeFit:
    from scaling.isoflop import fit_envelope

    return fit_envelope(runs)


def payload(fit: EnvelopeFit, args: argparse.Namespace) -> dict:
    return fit.summary() | {"convention": args.convention, "points": fit.points.to_dict("records")}


def text(fit: EnvelopeFit, args: argparse.Namespace) -> str:
    return "\n".join(
        [
            "Approach 1, envelope of minimum loss vs compute (runs better than every cheaper run)",
            report.format_table(fit.points.to_dict("records"), [(k, k) for k in ("C", "N", "D", "loss")]),
            f"a = {fit.a:.4f} (N ∝ C^a), b = {fit.b:.4f} (D ∝ C^b), R² {fit.N_law.r2:.4f}",
        ]
    )


def dataset(fit: EnvelopeFit, args: argparse.Namespace) -> xr.Dataset:
    """The frontier runs along dimension `C`, the exponents as scalars."""
    import xarray as xr

    pts = fit.points
    return xr.Dataset(
        {
            "N": (("C",), pts["N"].to_numpy()),
            "D": (("C",), pts["D"].to_numpy()),
            "loss": (("C",), pts["loss"].to_numpy()),
            "a": ((), fit.a),
            "b": ((), fit.b),
            "N_coef": ((), fit.N_law.coef),
            "r2": ((), fit.N_law.r2),
        },
        coords={"C": pts["C"].to_numpy()},
    )
