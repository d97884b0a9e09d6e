"""MEDIDA sweeps: cases × noise levels × ensemble sizes × seeds as one job array (`workbench medida sweep`).

The three steps of `jobs.experiment.run_experiment` are plain functions here (this module does not
import `jobs/`; `scaling/medida/cli.py` ties them together)::

    config = load(MedidaSweepConfig, "jobs/configs/medida_sweep.yaml")
    members = [member_batch(*item) for item in items(config)]   # items: (plain-dict configs,) per job
    text, payload = finish(config, [m for batch in members for m in batch], "debug")

`items` validates every member before anything runs and saves the resolved config as
`<root>/<name>/config.yaml`; `finish` writes `<root>/<name>/results.nc` (`assemble`). Each member is
one `scaling.medida.pipeline.run`; `member` and `member_batch` are module-level and return plain
data, so submitit can run them anywhere. The truth trajectory is cached per process, so a batch of
`per_job` members pays for it once (it is the same for every case of a sweep).

Ensemble size 0 stands for "no data assimilation" (`ensemble: None` in MedidaConfig): netCDF
coordinates cannot hold a null. In the sweep config it may be written `none`, `null` or 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from scaling.medida.cases import CASES, case_model
from scaling.medida.library import library_terms, term_name
from scaling.medida.pipeline import MedidaConfig, check_library_covers, equations, run, true_error
from workbench.config import bounds, from_dict, save, to_dict
from workbench.errors import ConfigError, InputError
from workbench.jobspec import SAFE_PATH_NAME, JobSpec, check_name
from workbench.provenance import with_provenance
from workbench.store import atomic_write_netcdf

__all__ = [
    "MedidaSweepConfig",
    "member_configs",
    "member_chunks",
    "member",
    "member_batch",
    "assemble",
    "canonical_case",
    "validate",
    "items",
    "finish",
    "output_dir",
    "job_spec",
    "submitit_folder",
    "describe_batch",
]

NO_DA = 0  # the ensemble coordinate meaning "no data assimilation"
_GENERIC_JOB_NAME = JobSpec().name
_BASE_SET_BY_SWEEP = {
    "case": "cases",
    "lambda_model": "cases",
    "extra_model": "cases",
    "noise": "noise",
    "ensemble": "ensemble",
    "seed": "seeds",
}


def canonical_case(name: str) -> str:
    """The built-in case's spelling (KS2 for ks2); InputError naming the valid cases otherwise."""
    case_model(name)  # raises for an unknown name
    key = name.strip()
    return key if key in CASES else next(c for c in CASES if c.lower() == key.lower())


def validate(config: MedidaConfig) -> MedidaConfig:
    """Checks run() would make only after its truth run: the case exists, the library covers the error."""
    if config.case:
        canonical_case(config.case)
    check_library_covers(true_error(*equations(config)), config.library)
    return config


def _ensemble_size(value: Any) -> int:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "0")):
        return NO_DA
    if isinstance(value, int) and not isinstance(value, bool) and (value == NO_DA or value >= 2):
        return int(value)
    raise ConfigError(
        f"ensemble value {value!r} in the sweep: use an integer ≥ 2, or none / 0 for no data assimilation"
    )


@dataclass(frozen=True)
class MedidaSweepConfig:
    """A sweep over built-in cases × noise levels × ensemble sizes × seeds, each member one MEDIDA run.

    `base` holds every other MedidaConfig field (pairs, dt, library, regression, ...); the swept fields
    (case, noise, ensemble, seed) and the case-given model (lambda_model, extra_model) must stay unset there.
    """

    name: str = "medida_sweep"
    root: str = "runs"
    cases: tuple[str, ...] = ("KS1", "KS2", "KS3")
    noise: tuple[float, ...] = (0.0,)
    ensemble: tuple[int | str | None, ...] = (None,)  # none / 0: no data assimilation
    seeds: int = field(default=1, metadata=bounds(ge=1))
    per_job: int = field(default=4, metadata=bounds(ge=1))  # members run one after another in one job
    base: MedidaConfig = MedidaConfig()
    # Resources of every job of the array. Left at JobSpec's generic name, job.name becomes the
    # sweep's `name` (`job_spec`); job.folder defaults to <root>/<name>/submitit (`submitit_folder`).
    job: JobSpec = field(default_factory=JobSpec)

    def __post_init__(self):
        if not SAFE_PATH_NAME.fullmatch(self.name) or ".." in self.name:
            raise ConfigError(f"name {self.name!r} must be a plain directory name (letters, digits, _ . - + = ,)")
        if self.job.name == _GENERIC_JOB_NAME:
            check_name(self.name, "name (also the job name: job.name is not set)")
        for what, values in (("cases", self.cases), ("noise", self.noise), ("ensemble", self.ensemble)):
            if not values:
                raise ConfigError(f"{what} must list at least one value")
        object.__setattr__(self, "cases", tuple(canonical_case(c) for c in self.cases))
        object.__setattr__(self, "ensemble", tuple(_ensemble_size(e) for e in self.ensemble))
        for what, values in (("cases", self.cases), ("noise", self.noise), ("ensemble", self.ensemble)):
            if len(set(values)) != len(values):
                raise ConfigError(f"{what} = {list(values)} repeats a value")
        for n in self.noise:
            if not (n >= 0 and np.isfinite(n)):
                raise ConfigError(f"noise = {list(self.noise)}: every level must be a fraction ≥ 0 of std(u)")
        default = MedidaConfig()
        for key, owner in _BASE_SET_BY_SWEEP.items():
            if getattr(self.base, key) != getattr(default, key):
                raise ConfigError(f"base.{key} is set by the sweep's `{owner}`; remove it from base")

    def ensemble_members(self, size: int) -> int | None:
        return None if size == NO_DA else int(size)


def member_configs(config: MedidaSweepConfig) -> list[MedidaConfig]:
    """Every member's MedidaConfig, case-major; each validated before anything is submitted."""
    out = []
    for case in config.cases:
        for noise in config.noise:
            for size in config.ensemble:
                for seed in range(config.seeds):
                    try:
                        member_config = dataclasses.replace(
                            config.base,
                            case=case,
                            noise=float(noise),
                            ensemble=config.ensemble_members(size),
                            seed=seed,
                        )
                        out.append(validate(member_config))
                    except InputError as exc:
                        raise type(exc)(
                            f"{exc} (sweep member case {case}, noise {noise:g}, ensemble {size or 'none'}, seed {seed})"
                        ) from None
    return out


def member_chunks(config: MedidaSweepConfig) -> list[list[dict[str, Any]]]:
    """Members as plain-dict configs, `per_job` to a job."""
    plain = [to_dict(c) for c in member_configs(config)]
    return [plain[i : i + config.per_job] for i in range(0, len(plain), config.per_job)]


def member(config: MedidaConfig | dict[str, Any]) -> dict[str, Any]:
    """One MEDIDA run (a job-array member): plain data only."""
    if not isinstance(config, MedidaConfig):
        config = from_dict(MedidaConfig, config, source="sweep member")
    start = time.perf_counter()
    result = run(config)
    wall = time.perf_counter() - start
    return {
        "case": config.case,
        "noise": float(config.noise),
        "ensemble": NO_DA if config.ensemble is None else int(config.ensemble),
        "seed": int(config.seed),
        "true": dict(result.true),
        "discovered": {t: dict(v) for t, v in result.discovered.items()},
        "relative_error": result.relative_errors(),
        "spurious": result.spurious(),
        "max_relative_error": float(result.max_relative_error()),
        "diagnostics": {k: v for k, v in result.diagnostics.items() if isinstance(v, (int, float, type(None)))},
        "wall_s": wall,
    }


def member_batch(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several members in one job (they share the cached truth trajectory)."""
    return [member(c) for c in configs]


def _term_order(config: MedidaSweepConfig, terms: set[str]) -> list[str]:
    lib = config.base.library
    order = [term_name(p, d) for p, d in library_terms(lib.max_power, lib.max_derivative)]
    return [t for t in order if t in terms] + sorted(terms - set(order))


def assemble(config: MedidaSweepConfig, members: list[dict[str, Any]]):
    """Members → Dataset with dims (case, noise, ensemble, seed, term).

    coef/std: discovered coefficient and posterior std (0 where the regression pruned the term);
    true_coef (case, term); relative_error: per true error term (NaN for other terms);
    spurious: number of discovered terms outside the true error; timing: seconds of the run.
    """
    cases, noise, ens, seeds = (
        list(config.cases),
        [float(n) for n in config.noise],
        list(config.ensemble),
        list(range(config.seeds)),
    )
    terms = _term_order(config, {t for m in members for t in (*m["true"], *m["discovered"])})
    shape = (len(cases), len(noise), len(ens), len(seeds))
    coef, std, rel = (np.full((*shape, len(terms)), np.nan) for _ in range(3))
    true = np.zeros((len(cases), len(terms)))
    spurious = np.full(shape, -1, dtype=np.int64)
    scalars = {
        k: np.full(shape, np.nan) for k in ("max_relative_error", "timing", "state_relative_rmse", "residual_std")
    }
    for m in members:
        i = (cases.index(m["case"]), noise.index(m["noise"]), ens.index(m["ensemble"]), seeds.index(m["seed"]))
        for k, t in enumerate(terms):
            found = m["discovered"].get(t, {"coef": 0.0, "std": 0.0})
            coef[i + (k,)], std[i + (k,)] = found["coef"], found["std"]
            if t in m["relative_error"]:
                rel[i + (k,)] = m["relative_error"][t]
            true[i[0], k] = m["true"].get(t, 0.0)
        spurious[i] = len(m["spurious"])
        scalars["max_relative_error"][i] = m["max_relative_error"]
        scalars["timing"][i] = m["wall_s"]
        for key in ("state_relative_rmse", "residual_std"):
            value = m["diagnostics"].get(key)
            scalars[key][i] = np.nan if value is None else value
    dims = ("case", "noise", "ensemble", "seed")
    ds = xr.Dataset(
        coords={
            "case": cases,
            "noise": noise,
            "ensemble": np.asarray(ens, dtype=np.int64),
            "seed": seeds,
            "term": terms,
        }
    )
    ds["coef"] = (dims + ("term",), coef, {"description": "discovered RHS error coefficient (0: pruned)"})
    ds["std"] = (dims + ("term",), std, {"description": "posterior standard deviation (0: pruned)"})
    ds["true_coef"] = (("case", "term"), true, {"description": "true RHS error u_t(truth) - u_t(model)"})
    ds["relative_error"] = (
        dims + ("term",),
        rel,
        {"description": "corrected-model coefficient error per true error term (MedidaResult.relative_errors)"},
    )
    ds["spurious"] = (dims, spurious, {"description": "discovered terms outside the true error (-1: missing)"})
    ds["max_relative_error"] = (dims, scalars["max_relative_error"])
    ds["timing"] = (dims, scalars["timing"], {"units": "s", "description": "wall time of the member's run"})
    ds["state_relative_rmse"] = (dims, scalars["state_relative_rmse"])
    ds["residual_std"] = (dims, scalars["residual_std"])
    ds["ensemble"].attrs["description"] = "EnKF members; 0 = no data assimilation"
    ds["noise"].attrs["description"] = "observation noise std as a fraction of std(u)"
    ds.attrs.update(
        name=config.name,
        description="MEDIDA model-error discovery sweep (KS)",
        base_config=json.dumps(to_dict(config.base)),
    )
    return ds


# --- the steps of `workbench medida sweep` (run by jobs.experiment.run_experiment) -----------------


def output_dir(config: MedidaSweepConfig) -> Path:
    """<root>/<name>: config.yaml, results.nc and (by default) submitit/."""
    return Path(config.root) / config.name


def job_spec(config: MedidaSweepConfig) -> JobSpec:
    """The JobSpec of every job: config.job, named after the sweep unless job.name is set."""
    return dataclasses.replace(config.job, name=config.name) if config.job.name == _GENERIC_JOB_NAME else config.job


def submitit_folder(config: MedidaSweepConfig) -> Path:
    """Where submitit keeps the members' pickles and logs: job.folder, else <root>/<name>/submitit."""
    return config.job.folder if config.job.folder is not None else output_dir(config) / "submitit"


def items(config: MedidaSweepConfig) -> list[tuple[list[dict[str, Any]]]]:
    """The arguments of every job, `(chunk,)` for `member_batch`. Every member is validated before
    anything runs; then <root>/<name>/ is created and the resolved config (with the job's name)
    saved there."""
    chunks = member_chunks(config)
    out = output_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    save(dataclasses.replace(config, job=job_spec(config)), out / "config.yaml")
    return [(chunk,) for chunk in chunks]


def describe_batch(item: tuple, members: list[dict[str, Any]]) -> str:
    """One progress line per finished job (in-process executor)."""
    return "; ".join(
        f"{m['case']} noise {m['noise']:g} ensemble {m['ensemble'] or 'none'} seed {m['seed']}: "
        f"max rel. error {100 * m['max_relative_error']:.3g} %"
        for m in members
    )


def finish(config: MedidaSweepConfig, members: list[dict[str, Any]], executor: str) -> tuple[str, dict[str, Any]]:
    """Members (flattened over jobs) → <root>/<name>/results.nc, and the (text, payload) of the report."""
    ds = assemble(config, members)
    out = output_dir(config)
    atomic_write_netcdf(with_provenance(ds, config), out / "results.nc")
    jobs = math.ceil(len(members) / config.per_job)
    rows, lines = (
        [],
        [
            f"MEDIDA sweep {config.name}: {len(members)} runs in {jobs} jobs, executor "
            f"{executor}; max relative coefficient error (mean over {config.seeds} seed"
            f"{'s' * (config.seeds > 1)}), spurious terms (mean), time"
        ],
    )
    lines.append(f"  {'case':<14} {'noise':>7} {'ensemble':>9} {'max rel. error':>15} {'spurious':>9} {'time':>8}")
    for case in config.cases:
        for noise in config.noise:
            for size in config.ensemble:
                sel = ds.sel(case=case, noise=float(noise), ensemble=size)
                row = {
                    "case": case,
                    "noise": float(noise),
                    "ensemble": int(size),
                    "max_relative_error": float(sel["max_relative_error"].mean()),
                    "spurious": float(sel["spurious"].mean()),
                    "timing_s": float(sel["timing"].mean()),
                }
                rows.append(row)
                lines.append(
                    f"  {case:<14} {noise:>7g} {size or 'none':>9} {100 * row['max_relative_error']:>13.3g} %"
                    f" {row['spurious']:>9.3g} {row['timing_s']:>6.2f} s"
                )
    lines.append(f"wrote {out / 'results.nc'}")
    return "\n".join(lines), {"executor": executor, "results": str(out / "results.nc"), "rows": rows}
