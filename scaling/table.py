"""Reading and validating a user's table of training runs.

`load_runs` turns a CSV file, a netCDF file or a DataFrame into canonical columns
`N, D, C, loss` (float), with `seed`, `run`, `budget` when present and every other column kept.
N is always the parameter count *under the chosen convention* (for attention/chinchilla the
effective count N_eff = FLOPs per token / 6), so C = 6·N·D holds in every convention.

Every problem is an InputError naming the source, the column and the row. Rows are numbered as
*data rows*, 1-based, header not counted: "data row 1" is the first run in the table. Column
names from the file are quoted as given ('Model Size', ' loss'), so stray spaces show.

The returned rows are in a canonical order (`canonical_order`), so no fit depends on how the file
happened to be sorted: floating-point sums over runs are not associative, and a shuffled table
would otherwise move results in the last digits and change which starts count as reaching the optimum.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scaling import conventions
from workbench.errors import InputError

CANONICAL_COLUMNS = ("N", "D", "C", "loss", "U", "seed", "run", "budget", "width", "depth", "vocab", "seq_len", "d_ff")
# Sizes and measurements: numeric, finite and > 0. seed, run and budget are labels.
_SIZE_COLUMNS = ("width", "depth", "vocab", "seq_len", "d_ff")
_MEASURED_COLUMNS = ("N", "D", "C", "loss", "U")  # U: unique tokens (data-constrained fits)
_LABEL_COLUMNS = ("seed", "run", "budget")
# C = 6·N·D (Kaplan §2.1) up to what N counts: head, embedding and attention FLOPs move it by a
# few times at most (Porian et al. 2024, §3). A C further than this factor from 6·N·D is a unit
# error (PF-days, Kaplan §2.1: 1 PF-day = 8.64e19 FLOPs) or a wrong column, not a convention.
C_CONSISTENCY_FACTOR = 10.0
_CSV_SUFFIXES = (".csv",)
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def load_runs(
    source, *, convention: str, columns: Mapping[str, str] | None = None, name: str | None = None, ffn: str = "swiglu"
) -> pd.DataFrame:
    """Load and validate a table of runs; see the module docstring for the result.

    source: path to a .csv or .nc file, or a DataFrame (`name` labels it in messages).
    convention: one of `conventions.CONVENTIONS`; required because it changes what N means.
    columns: canonical name -> the table's column name, e.g. {"N": "params", "D": "tokens"}.
    ffn: feed-forward kind used only when N is derived from width and depth.
    """
    conventions.check_convention(convention)
    raw, label = read_table(source, name)
    _check_unique_columns(raw.columns, label)
    if raw.empty:
        raise InputError(f"{label}: the table has no data rows")
    runs = _apply_mapping(raw, columns or {}, label)

    for column in _MEASURED_COLUMNS + _SIZE_COLUMNS:
        if column in runs.columns:
            runs[column] = _positive_numeric(runs[column], column, label)

    # The duplicate key uses the amount of training the user gave (D, else C).
    amount = "D" if "D" in runs.columns else "C"
    given_C = "C" in runs.columns and "D" in runs.columns
    _derive_missing(runs, convention, ffn, label)
    if given_C:
        _check_compute(runs, label)
    _check_duplicates(runs, amount, label)

    canonical = [c for c in _MEASURED_COLUMNS + _LABEL_COLUMNS if c in runs.columns]
    runs = canonical_order(runs[canonical + [c for c in runs.columns if c not in canonical]])
    runs.attrs["convention"] = convention
    runs.attrs["source"] = label
    return runs


def canonical_order(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by N, D, C, loss, U, then the labels seed, run, budget (index reset).

    Rows equal in every one of these are interchangeable for every fit, so the order is total
    for all that a fit reads. A stable sort keeps such rows as they came.
    """
    keys = [runs[c].to_numpy(dtype=float) for c in _MEASURED_COLUMNS if c in runs.columns]
    keys += [np.asarray([str(v) for v in runs[c]], dtype=str) for c in _LABEL_COLUMNS if c in runs.columns]
    if not keys:
        return runs.reset_index(drop=True)
    order = np.lexsort(keys[::-1])  # lexsort sorts by its last key first
    return runs.iloc[order].reset_index(drop=True)


def quote_columns(columns: Iterable) -> str:
    """Column names as given, quoted, so that 'Model Size' and ' loss' read as one name each."""
    return ", ".join(repr(str(c)) for c in columns)


def plain_number(value) -> str:
    """A number as a person writes it (-0.0, 3.5, 12), never a numpy repr like np.float64(-0.0)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return repr(value) if isinstance(value, str) else str(value)


def group_budgets(df: pd.DataFrame, rtol: float = 0.02) -> np.ndarray:
    """Integer budget id per row, 0 for the smallest compute budget.

    Uses the `budget` column when present. Otherwise rows are sorted by C and a new budget starts
    whenever C exceeds the first C of the current group by more than `rtol` (anchoring on the
    group's first value stops a slow drift from chaining distinct budgets together).
    """
    if not rtol >= 0:
        raise InputError(f"rtol must be >= 0, got {rtol!r}")
    if "budget" in df.columns:
        codes, _ = pd.factorize(df["budget"], sort=True)
        return np.asarray(codes, dtype=int)
    if "C" not in df.columns:
        raise InputError(
            f"cannot group budgets: no 'budget' or 'C' column; the table has columns {quote_columns(df.columns)}"
        )
    compute = df["C"].to_numpy(dtype=float)
    order = np.argsort(compute, kind="stable")
    ids = np.empty(len(compute), dtype=int)
    group, anchor = -1, None
    for row in order:
        if anchor is None or compute[row] > anchor * (1.0 + rtol):
            group, anchor = group + 1, compute[row]
        ids[row] = group
    return ids


def read_table(source, name: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a CSV or netCDF file (or copy a DataFrame) as it is; returns the table and its label."""
    if isinstance(source, pd.DataFrame):
        return source.copy(), name or "<DataFrame>"
    path = Path(source).expanduser()
    label = name or str(source)
    suffix = path.suffix.lower()
    if suffix not in _CSV_SUFFIXES + _NETCDF_SUFFIXES:
        raise InputError(
            f"{label}: unknown file type {path.suffix!r}; supported: {', '.join(_CSV_SUFFIXES + _NETCDF_SUFFIXES)}"
        )
    if not path.is_file():
        raise InputError(f"{label}: file not found")
    if suffix in _CSV_SUFFIXES:
        return _read_csv(path, label), label
    return _read_netcdf(path, label), label


def _read_csv(path: Path, label: str) -> pd.DataFrame:
    try:
        # pandas renames a repeated header (loss, loss -> loss, loss.1) and the first one wins,
        # so the header is read as written first.
        _check_unique_columns(_csv_header(path), label)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{label}: the CSV file is empty") from None
    except (pd.errors.ParserError, csv.Error) as error:
        raise InputError(f"{label}: cannot parse CSV: {_one_line(error)}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{label}: not a UTF-8 text file ({error.reason})") from None
    except OSError as error:
        raise InputError(f"{label}: cannot read file: {_one_line(error)}") from None


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def _check_unique_columns(columns: Iterable, label: str) -> None:
    """A column name given twice is ambiguous: refuse it rather than let one copy win."""
    seen: dict[str, int] = {}
    for position, column in enumerate(map(str, columns), start=1):
        if column in seen:
            raise InputError(
                f"{label}: column {column!r} appears twice in the header (columns {seen[column]} and "
                f"{position}); rename one of them"
            )
        seen[column] = position


def _read_netcdf(path: Path, label: str) -> pd.DataFrame:
    import xarray as xr  # imported here: CSV users should not pay for xarray/h5py start-up

    try:
        with xr.open_dataset(path, engine="h5netcdf") as dataset:
            return dataset.load().to_dataframe().reset_index()
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise InputError(f"{label}: cannot read netCDF file: {_one_line(error)}") from None


def _apply_mapping(raw: pd.DataFrame, mapping: Mapping[str, str], label: str) -> pd.DataFrame:
    unknown = [key for key in mapping if key not in CANONICAL_COLUMNS]
    if unknown:
        raise InputError(
            f"{label}: unknown canonical column name(s) {', '.join(map(repr, unknown))} in the "
            f"column mapping; valid: {', '.join(CANONICAL_COLUMNS)}"
        )
    available = quote_columns(raw.columns)
    renames: dict[str, str] = {}
    for canonical, column in mapping.items():
        if column not in raw.columns:
            raise InputError(
                f"{label}: column {column!r} (mapped to {canonical}) not found; the table has columns {available}"
            )
        if column in renames:
            raise InputError(f"{label}: column {column!r} is mapped to both {renames[column]} and {canonical}")
        if canonical in raw.columns and canonical != column:
            raise InputError(
                f"{label}: column {column!r} is mapped to {canonical}, but the table already "
                f"has a column named {canonical!r}; rename or drop one of them"
            )
        renames[column] = canonical
    return raw.rename(columns=renames)


def _positive_numeric(values: pd.Series, column: str, label: str) -> pd.Series:
    """`values` as float, or InputError at the first non-numeric, missing, infinite or <= 0 cell."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(numbers) & (numbers > 0))
    if not bad.any():
        return pd.Series(numbers, index=values.index)
    position = int(np.flatnonzero(bad)[0])
    original, number = values.iloc[position], numbers[position]
    where = f"{label}: data row {position + 1}, column {column}"
    if pd.isna(original):
        raise InputError(f"{where}: missing or NaN value")
    if np.isnan(number):
        raise InputError(f"{where}: {plain_number(original)} is not a number")
    if not np.isfinite(number):
        raise InputError(f"{where}: value is {number} (must be finite)")
    raise InputError(f"{where}: value {plain_number(original)} must be > 0")


def _derive_missing(runs: pd.DataFrame, convention: str, ffn: str, label: str) -> None:
    """Fill N from the model shape and D or C from C = 6·N·D (Kaplan §2.1), in place."""
    if "N" not in runs.columns and {"width", "depth"} <= set(runs.columns):
        needed = conventions.required_arguments(convention)
        missing = [column for column in needed if column not in runs.columns]
        if missing:
            raise InputError(
                f"{label}: deriving N from width and depth under convention {convention!r} needs "
                f"column(s) {', '.join(missing)}; the table has columns {quote_columns(runs.columns)}"
            )
        sizes = {arg: runs[arg].to_numpy() for arg in ("width", "depth", *needed)}
        if "d_ff" in runs.columns:
            sizes["d_ff"] = runs["d_ff"].to_numpy()
        runs["N"] = np.asarray(conventions.param_count(convention, ffn=ffn, **sizes), dtype=float)

    missing = [c for c in ("N", "loss") if c not in runs.columns]
    if "D" not in runs.columns and "C" not in runs.columns:
        missing.append("(D or C)")
    if missing:
        raise InputError(
            f"{label}: missing column(s) {', '.join(missing)}; the table has columns "
            f"{quote_columns(runs.columns)}; map names with --col-N etc."
        )
    if "D" not in runs.columns:
        runs["D"] = runs["C"] / (6.0 * runs["N"])
    elif "C" not in runs.columns:
        runs["C"] = 6.0 * runs["N"] * runs["D"]
    for column in ("N", "D", "C"):
        # Derived values are positive, but can overflow to inf from huge (finite) inputs.
        _positive_numeric(runs[column], column, label)


def _check_compute(runs: pd.DataFrame, label: str) -> None:
    """C given next to N and D must be about 6·N·D (see C_CONSISTENCY_FACTOR)."""
    ratio = runs["C"].to_numpy() / (6.0 * runs["N"].to_numpy() * runs["D"].to_numpy())
    bad = ~((ratio <= C_CONSISTENCY_FACTOR) & (ratio >= 1.0 / C_CONSISTENCY_FACTOR))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{label}: data row {position + 1}, column C: C = {runs['C'].iloc[position]:.4g} is "
            f"{ratio[position]:.3g} times 6·N·D = {6.0 * runs['N'].iloc[position] * runs['D'].iloc[position]:.4g} "
            f"(more than {C_CONSISTENCY_FACTOR:g}x apart); C must be training FLOPs (PF-days x 8.64e19), "
            "or drop the C column to derive it"
        )


def _check_duplicates(runs: pd.DataFrame, amount: str, label: str) -> None:
    """Two runs with the same (N, D or C, seed, run) would be counted twice by every fit."""
    key = ["N", amount] + [c for c in ("seed", "run") if c in runs.columns]
    seen: dict[tuple, int] = {}
    for position, values in enumerate(zip(*(runs[c] for c in key))):
        # NaN != NaN, so map missing labels to None to compare them as equal.
        row_key = tuple(None if pd.isna(v) else v for v in values)
        if row_key in seen:
            raise InputError(
                f"{label}: data rows {seen[row_key] + 1} and {position + 1} are duplicates (same {', '.join(key)})"
            )
        seen[row_key] = position


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
