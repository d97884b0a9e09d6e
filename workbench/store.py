"""Run directories and xarray results: atomic writes, sweep dimensions, combining runs.

Every run writes ``<root>/<experiment>/<run_id>/{config.json, metrics.nc, checkpoints/, logs/}``
and a sweep keeps ``<root>/<experiment>/manifest.jsonl``. Results are xarray Datasets in
netCDF (h5netcdf engine). Sweep parameters are dimensions and job metadata are data
variables, so a sweep's runs combine into one Dataset indexed by its parameters::

    ds = with_sweep_dims(metrics, {"width": 256, "lr": 1e-3})   # dims width=1, lr=1, step=...
    atomic_write_netcdf(ds, run.metrics_path)
    sweep = combine_runs(paths)   # dims width, lr, step; NaN where a run is missing or shorter

Every write goes to a temporary file in the target's directory and is then moved into place
with `os.replace`, so a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from workbench.atomic import atomic_write, atomic_write_bytes, atomic_write_text, output_error
from workbench.config import to_dict
from workbench.errors import InputError

__all__ = [
    "RunDir",
    "TornRecordWarning",
    "append_manifest",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_netcdf",
    "atomic_write_text",
    "check_run_dir",
    "combine_runs",
    "create_run_dir",
    "open_dataset",
    "read_manifest",
    "with_sweep_dims",
]

PathLike = str | os.PathLike[str]

# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_netcdf(ds: xr.Dataset, path: PathLike) -> None:
    """Write `ds` to netCDF (h5netcdf engine) atomically.

    Attributes netCDF cannot hold are converted on a shallow copy (the caller's Dataset is not
    changed): bool -> int, None -> "", dict and mixed lists -> JSON text.
    """
    ds = _netcdf_safe_attrs(ds)
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def _json_default(value: Any) -> Any:
    """JSON fallback for the values runs record besides plain data."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def _netcdf_safe_attrs(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy(deep=False)  # new Variable objects sharing data, so attrs can be replaced
    out.attrs = _safe_attrs(ds.attrs)
    for name, variable in out.variables.items():
        variable.attrs = _safe_attrs(ds.variables[name].attrs)
    return out


def _safe_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): _safe_attr(value) for key, value in attrs.items()}


def _safe_attr(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if value is None:
        return ""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, numbers.Number):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        if all(isinstance(item, (bool, np.bool_)) for item in items):
            return np.asarray(items, dtype=np.int8)
        if all(isinstance(item, str) for item in items):
            return items
        if all(isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_)) for item in items):
            return np.asarray(items)
        return json.dumps(items, default=str)
    return str(value)


def open_dataset(path: PathLike) -> xr.Dataset:
    """Read a netCDF file fully into memory and close it (so it can be replaced later)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as exc:  # h5py/xarray raise many types for a bad file; all mean "bad input"
        raise InputError(f"cannot read netCDF file {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------------------------

# Letters, digits and a few punctuation marks that are safe unquoted in a shell and in a path.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@,-]*")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"invalid {what} {name!r}: use letters, digits and . _ - + = @ , only, starting with "
            f"a letter, digit or _ (no path separators, '..', whitespace or shell metacharacters)"
        )
    return name


WRITER_LOCK = ".writer.lock"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one run: ``<root>/<experiment>/<run_id>/``."""

    root: Path
    experiment: str
    run_id: str

    @property
    def path(self) -> Path:
        return Path(self.root) / self.experiment / self.run_id

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.nc"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def writer_lock(self) -> Path:
        """Held (flock) by the trainer that writes this run; see workbench.locks."""
        return self.path / WRITER_LOCK

    @property
    def manifest_path(self) -> Path:
        """The sweep's manifest, shared by every run of the experiment."""
        return Path(self.root) / self.experiment / "manifest.jsonl"


def create_run_dir(root: PathLike, experiment: str, run_id: str, config: Any = None) -> RunDir:
    """Make a run's directories and, if `config` (a dataclass) is given, save it as config.json.

    Re-creating an existing run (a resume) is fine with the same config; a different config
    is an InputError rather than a silent overwrite of what the run was started with.
    """
    run = check_run_dir(root, experiment, run_id, config)
    try:
        for directory in (run.checkpoints, run.logs):
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(run.path, error) from None
    if config is not None and not run.config_path.exists():
        atomic_write_json(run.config_path, _resolved(config))
    return run


def check_run_dir(root: PathLike, experiment: str, run_id: str, config: Any = None) -> RunDir:
    """The checks of `create_run_dir` without creating anything: names, and a config clash."""
    run = RunDir(Path(root), _check_name(experiment, "experiment name"), _check_name(run_id, "run id"))
    if config is not None and run.config_path.exists():
        resolved = _resolved(config)
        try:
            existing = json.loads(run.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read existing {run.config_path}: {exc}") from exc
        if existing != resolved:
            changed = _changed_keys(existing, resolved, config)
        if existing != resolved and changed:
            raise InputError(
                f"{run.config_path} already holds a different config (keys differ: "
                f"{', '.join(changed)}); use a new run id or delete the run"
            )
    return run


def _changed_keys(existing: Any, resolved: Any, config: Any) -> list[str]:
    """Top-level keys whose values differ. A field that a later version added, at its default, is
    no difference: a run directory made before the field existed is still the same run."""
    if not (isinstance(existing, dict) and isinstance(resolved, dict)):
        return [] if existing == resolved else ["(value)"]
    changed = []
    for key in sorted(set(existing) | set(resolved)):
        value = getattr(config, key, None) if dataclasses.is_dataclass(config) else None
        if key not in existing:
            if not _is_default(config, key):
                changed.append(key)
        elif key not in resolved or (
            _changed_keys(existing[key], resolved[key], value)
            if isinstance(existing[key], dict)
            else existing[key] != resolved[key]
        ):
            changed.append(key)
    return changed


def _is_default(config: Any, key: str) -> bool:
    if not dataclasses.is_dataclass(config):
        return False
    field = next((f for f in dataclasses.fields(config) if f.name == key), None)
    if field is None:
        return False
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return False
    normal = lambda v: json.loads(json.dumps(to_dict(v) if dataclasses.is_dataclass(v) else v, default=_json_default))
    return normal(getattr(config, key)) == normal(default)


def _resolved(config: Any) -> Any:
    # Normalise through JSON so tuples/lists and key order compare equal.
    return json.loads(json.dumps(to_dict(config), default=_json_default))


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


def with_sweep_dims(ds: xr.Dataset, params: Mapping[str, Any]) -> xr.Dataset:
    """Turn scalar sweep parameters into length-1 dimensions on every data variable.

    ``with_sweep_dims(ds, {"width": 256, "lr": 1e-3})`` adds dims ``width`` and ``lr`` (each of
    length 1, with that value as coordinate) in front of every variable's own dims.
    """
    coords = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"sweep parameter names must be non-empty strings, got {name!r}")
        if name in ds.dims or name in ds.variables:
            raise InputError(
                f"sweep parameter '{name}' clashes with an existing "
                f"{'dimension' if name in ds.dims else 'variable'} of the dataset"
            )
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (bool, numbers.Real, str)):
            raise InputError(
                f"sweep parameter '{name}' must be a number, bool or string, got {value!r} ({type(value).__name__})"
            )
        coords[name] = [value]
    if not coords:
        return ds
    return ds.expand_dims(coords)


def combine_runs(datasets_or_paths: Iterable[xr.Dataset | PathLike]) -> xr.Dataset:
    """Combine runs (each with length-1 sweep dims) into one Dataset over the full sweep grid.

    Sweep dims are the dims that have length 1 and a coordinate in every run. The result spans
    the union of their values (outer join): a grid point with no run is NaN, and a run with
    fewer steps than another is NaN-padded. Two runs at the same sweep point are an error.
    """
    datasets = [item if isinstance(item, xr.Dataset) else open_dataset(item) for item in datasets_or_paths]
    if not datasets:
        raise InputError("no runs to combine")

    all_dims = set().union(*(ds.dims for ds in datasets))
    for i, ds in enumerate(datasets):
        lacking = sorted(str(d) for d in all_dims - set(ds.dims))
        if lacking:
            raise InputError(
                f"run {i} lacks dimension(s) {', '.join(lacking)} that other runs "
                f"have; every run needs the same sweep dimensions"
            )
    first_dims = list(datasets[0].dims)  # keeps the order the runs were written with
    sweep_dims = [d for d in first_dims if all(ds.sizes[d] == 1 and d in ds.indexes for ds in datasets)]
    if not sweep_dims:
        if len(datasets) == 1:
            return datasets[0]
        raise InputError(
            "runs have no length-1 sweep dimensions to tell them apart; "
            "add them with with_sweep_dims(ds, {'width': 256, ...})"
        )

    # Stack each run's sweep point into one "run" entry, concatenate (outer join on the other
    # dims pads short runs with NaN), then unstack onto the grid. Unlike xr.merge, this never
    # materialises a full-grid copy per run.
    run_dim = "__run__"
    try:
        stacked = [ds.stack({run_dim: sweep_dims}) for ds in datasets]
        combined = xr.concat(
            stacked,
            dim=run_dim,
            data_vars="all",
            coords="different",
            compat="equals",
            join="outer",
            combine_attrs="drop_conflicts",
        )
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot combine runs: {exc}") from exc

    index = combined.indexes[run_dim]
    if index.has_duplicates:
        point = index[index.duplicated()][0]
        where = ", ".join(f"{d}={v.item() if isinstance(v, np.generic) else v!r}" for d, v in zip(sweep_dims, point))
        raise InputError(f"two runs have the same sweep point {where}")
    return combined.unstack(run_dim).transpose(*sweep_dims, ...)


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def append_manifest(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append `record` as one JSON line to the manifest at `path`, durably (flush + fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(record), sort_keys=True, default=_json_default) + "\n"
    with open(path, "a+b") as f:
        # If an earlier writer died mid-line, start on a fresh line so this record stays whole.
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        # One write call: O_APPEND makes small appends from concurrent jobs land whole.
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


class TornRecordWarning(UserWarning):
    """A manifest line that is not a whole JSON object (its writer died mid-line); it is skipped."""


def read_manifest(path: PathLike) -> list[dict[str, Any]]:
    """All intact records of a manifest, in order; blank lines are skipped.

    A line that is not a whole JSON object is what a writer killed mid-append leaves. It is
    skipped with a TornRecordWarning, so one torn line never makes the intact records unusable.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest {path}: {exc}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.warn(f"manifest {path} line {number} is torn ({exc.msg}); skipped", TornRecordWarning, 2)
            continue
        if not isinstance(record, dict):
            warnings.warn(
                f"manifest {path} line {number} is not a JSON object ({type(record).__name__}); skipped",
                TornRecordWarning,
                2,
            )
            continue
        records.append(record)
    return records
