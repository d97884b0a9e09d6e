"""What a scaling method is: the record `workbench scaling fit` is built from, and the flags and
helpers that several methods share.

Method modules are imported when `workbench` builds its parser, so they import numpy at most at
module level; the fitting code (torch, scipy, pandas, xarray, matplotlib) is imported inside the
functions that run a fit, as in the CLI modules.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from scaling.laws import CHINCHILLA_BUDGET

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = [
    "MAX_REPLICATES",
    "Method",
    "add_seed_flag",
    "add_target_compute_flag",
    "bootstrap_count",
    "non_negative_int",
    "positive_float",
    "progress_bar",
    "replicate_count",
    "whole_number",
]

# Bootstrap replicates per budget: Porian et al. use 1000; 100 times that is far past any gain in
# the interval's precision, and keeps a noise draw of (sizes × replicates) under ~100 MB.
MAX_REPLICATES = 100_000


@dataclass(frozen=True)
class Method:
    """One estimator behind `workbench scaling fit --method NAME`.

    `fit` gets the validated run table (`scaling.table.load_runs`: columns N, D, C, loss, ...) and
    the parsed arguments and returns a fit object that only this method's other functions read:
    `text` (the terminal report), `payload` (the `--json` object), `dataset` (the `--out` netCDF;
    the CLI adds the attributes method, convention and source) and `plot` (the `--plot` PNG; a
    method without a figure leaves it None, one that draws only for some options says which in
    `plots(args)`, so that `--plot` is refused before the fit instead of writing nothing).
    """

    name: str
    help: str  # one line, shown in `workbench scaling fit --help`
    add_flags: Callable[[argparse.ArgumentParser], None]  # this method's own flags
    fit: Callable[[pd.DataFrame, argparse.Namespace], Any]
    text: Callable[[Any, argparse.Namespace], str]
    payload: Callable[[Any, argparse.Namespace], dict]
    dataset: Callable[[Any, argparse.Namespace], xr.Dataset]
    plot: Callable[[Any, argparse.Namespace, pd.DataFrame, Path], None] | None = None
    plots: Callable[[argparse.Namespace], bool] | None = None  # whether `plot` draws with these options

    @classmethod
    def from_module(cls, module: ModuleType) -> Method:
        """The method a module defines: NAME, HELP and functions named as the fields above."""
        functions = {name: getattr(module, name) for name in ("add_flags", "fit", "text", "payload", "dataset")}
        optional = {name: getattr(module, name, None) for name in ("plot", "plots")}
        return cls(module.NAME, module.HELP, **functions, **optional)

    def draws_figure(self, args: argparse.Namespace) -> bool:
        """Whether `--plot` would write a figure for a fit with these arguments."""
        return self.plot is not None and (self.plots is None or self.plots(args))


# ---------------------------------------------------------------------------------- shared flags


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a bad value is exit 2 with the flag named)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (a bad value is exit 2 with the flag named)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    parse.__name__ = f"whole number {low}..{high}"
    return parse


# Noise-bootstrap replicates (intervals need at least one draw), and parametric bootstrap
# resamples (0: none).
replicate_count = whole_number(1, MAX_REPLICATES)
bootstrap_count = whole_number(0, MAX_REPLICATES)


def _add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add a flag that several methods read; declaring it again (by the same function) is a no-op."""
    try:
        parser.add_argument(flag, **kwargs)
    except argparse.ArgumentError:  # an earlier method declared it
        pass


def add_seed_flag(parser: argparse.ArgumentParser) -> None:
    _add_once(parser, "--seed", type=int, default=0, help="random seed for bootstrap resampling and noise")


def add_target_compute_flag(parser: argparse.ArgumentParser) -> None:
    _add_once(
        parser,
        "--target-compute",
        type=positive_float,
        default=CHINCHILLA_BUDGET,
        metavar="C",
        help="report the compute-optimal N*, D* at this budget (FLOPs)",
    )


# -------------------------------------------------------------------------------------- progress


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str):
    """tqdm on stderr (hidden when stderr is not a terminal); yields a callback(n_done).

    With `total` None the bar counts without an end (the number of items is known only later)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="fit", disable=None, leave=False)
    state = {"n": 0}

    def update(done: int) -> None:
        bar.update(done - state["n"])
        state["n"] = done

    try:
        yield update
    finally:
        bar.close()
