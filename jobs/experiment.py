"""The one experiment runner: a config becomes a job array, and its results one report.

Every experiment that is not a single training run (PROSE's make-data shards, the generative
robustness and brightness studies, MEDIDA sweeps, the demo's ladder) has the same shape, written
once here::

    config = load_experiment_config(RobustnessConfig, args.config, args.overrides)
    text, payload = run_experiment(ROBUSTNESS, config, args.executor)
    emit(args, text, payload)

An `Experiment` names three plain functions of the area's own modules, which never import `jobs/`:

- ``items(config)``: the arguments of every member (it may look at what is already on disk, so a
  rerun builds only what is missing);
- ``member(*item)``: what one job runs; module-level and light to import, returning plain data;
- ``finish(config, results, executor)``: turns the members' results into files (results.nc,
  figures, a manifest) and returns ``(text, payload)`` for `workbench.cli.emit`.

The members run as one job array on SLURM, as local processes, or in this process (``debug``),
through `jobs.sweep.run_array`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from jobs.entrypoints import resolve_config_path, with_runs_dir
from jobs.submit import resolve_executor
from jobs.sweep import run_array
from workbench.config import apply_overrides, load
from workbench.errors import ConfigError, InputError
from workbench.jobspec import JobSpec

__all__ = ["Experiment", "load_experiment_config", "run_experiment", "run_members", "say"]

C = TypeVar("C")


@dataclass(frozen=True)
class Experiment:
    """How one kind of experiment runs (see the module docstring)."""

    items: Callable[[Any], Sequence[tuple]]
    member: Callable[..., Any]
    finish: Callable[[Any, list, str], tuple[str, Any]]
    # Where submitit keeps the members' pickles and logs, and their JobSpec (both from the config).
    folder: Callable[[Any], Path]
    job: Callable[[Any], JobSpec] = lambda config: config.job
    # Members that return a list each (a batch of runs) are flattened into one list of results.
    flatten: bool = False
    # A line per finished member in this process (debug executor), e.g. a shard's sample count.
    describe: Callable[[tuple, Any], str] | None = None


def load_experiment_config(
    cls: type[C],
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    base_dir: Path | None = None,
    absolute: Sequence[str] = (),
) -> C:
    """Read `cls` from a YAML/JSON file and apply ``--set key=value`` overrides.

    Every problem names the file (or the override). The path fields named in `absolute` (and
    ``job.folder``) are made absolute against `base_dir` (default: the current directory), so the
    members find them wherever they run.
    """
    path = resolve_config_path(path)
    try:
        config = apply_overrides(load(cls, path), with_runs_dir(cls, overrides))
    except ConfigError:
        raise
    except InputError as error:  # a domain check in __post_init__ that does not know the file
        raise InputError(f"{error} (in {path})") from None
    base = Path.cwd() if base_dir is None else Path(base_dir)
    changes: dict[str, Any] = {}
    for name in absolute:
        value = Path(getattr(config, name))
        if not value.is_absolute():
            changes[name] = type(getattr(config, name))(base / value)
    job = getattr(config, "job", None)
    if isinstance(job, JobSpec) and job.folder is not None and not job.folder.is_absolute():
        changes["job"] = dataclasses.replace(job, folder=base / job.folder)
    return dataclasses.replace(config, **changes) if changes else config


def run_members(
    fn: Callable[..., Any],
    items: Sequence[tuple],
    spec: JobSpec,
    executor: str,
    folder: str | os.PathLike[str],
    *,
    describe: Callable[[tuple, Any], str] | None = None,
    progress: Callable[[str], None] | None = None,
    waiting: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> tuple[str, list[Any]]:
    """Run ``fn(*item)`` for every item as one job array; (executor used, results in item order).

    Under the debug executor the members run here, one after another, and `describe` (if given)
    reports each through `progress`. Otherwise `waiting` (a `workbench.cli.Progress`) gets the
    array's pending/running/done/failed counts while this waits. `timeout_s` bounds the wait
    (TimeoutError).
    """
    name = resolve_executor(executor)
    if not items:
        return name, []
    if name == "debug" and describe is not None and progress is not None:
        results = []
        for k, item in enumerate(items):
            results.append(fn(*item))
            progress(f"  {describe(item, results[-1])} ({k + 1}/{len(items)})")
        return name, results
    return run_array(fn, list(items), spec, name, Path(folder) / "%j", timeout_s=timeout_s, progress=waiting)


def run_experiment(
    experiment: Experiment,
    config: Any,
    executor: str = "auto",
    *,
    progress: Callable[[str], None] | None = None,
    waiting: Callable[[str], None] | None = None,
) -> tuple[str, Any]:
    """Run every member of `config`'s experiment as one job array, then finish it."""
    items = list(experiment.items(config))
    name, results = run_members(
        experiment.member,
        items,
        experiment.job(config),
        executor,
        experiment.folder(config),
        describe=experiment.describe,
        progress=progress,
        waiting=waiting,
    )
    if experiment.flatten:
        results = [result for group in results for result in group]
    return experiment.finish(config, results, name)


def say(text: str) -> None:
    """Progress on stderr (stdout stays for the result and --json)."""
    print(text, file=sys.stderr, flush=True)
