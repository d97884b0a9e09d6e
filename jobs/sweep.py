"""Sweeps: a grid of config overrides becomes one job array; status, collect, resubmit.

    members = expand_grid("cfg.yaml", {"model.lr": ["1e-3", "1e-2"], "train.seed": ["0", "1"]})
    records = submit(members, "auto")                # one array: a sbatch --array, or 4 local jobs
    status(sweep_dir)                                # pending / running / done / failed + log path
    ds = collect(sweep_dir)                          # dims lr, seed, step; NaN where a member is missing
    resubmit(sweep_dir)                              # only the failed or missing members

Everything about a sweep is in ``<root>/<experiment>/manifest.jsonl``: one line per submitted
member (its params, full resolved config, executor, job id and submitit folder), appended again
on every resubmission; the last line of a run id wins. A single `jobs submit` is a sweep of one.

A member's state comes from submitit's result pickle when there is one ("success" -> done,
"error" -> failed), otherwise from the scheduler: squeue for SLURM (no accounting database is
needed), the controller process for the local executor. A job that ended without a result
(killed, lost) is failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.entrypoints import TrainJob, TrainJobConfig, job_config_from_dict, load_job_config
from jobs.submit import make_executor, resolve_executor
from workbench.config import to_dict
from workbench.errors import InputError
from workbench.jobspec import SAFE_PATH_NAME
from workbench.registry import get_trainable
from workbench.store import append_manifest, create_run_dir, read_manifest

__all__ = [
    "Member",
    "MemberStatus",
    "collect",
    "expand_grid",
    "parse_grid",
    "resubmit",
    "run_array",
    "status",
    "submit",
    "wait",
]

STATES = ("pending", "running", "done", "failed")
MANIFEST = "manifest.jsonl"

# squeue states (man squeue, "JOB STATE CODES") -> ours, when no result pickle exists yet.
_SLURM_ACTIVE = {
    "PENDING": "pending",
    "CONFIGURING": "pending",
    "REQUEUED": "pending",
    "REQUEUE_FED": "pending",
    "REQUEUE_HOLD": "pending",
    "RESV_DEL_HOLD": "pending",
    "SUSPENDED": "pending",
    "STOPPED": "pending",
    "SIGNALING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "STAGE_OUT": "running",
    "RESIZING": "running",
}


@dataclass(frozen=True)
class Member:
    """One job of a sweep: its config and the sweep parameters that tell it apart."""

    config: TrainJobConfig
    params: dict[str, Any]
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemberStatus:
    run_id: str
    params: dict[str, Any]
    state: str  # pending | running | done | failed
    job_id: str | None
    executor: str
    log: str | None  # the job's stderr (where tracebacks go)
    stdout: str | None
    run_dir: str
    attempt: int
    detail: str = ""  # why it failed, when known

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["model.lr=1e-3,1e-2", "train.seed=0,1"]`` -> {"model.lr": ["1e-3", "1e-2"], ...}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise InputError(f"--grid '{item}' must look like key=v1,v2,... (e.g. model.lr=1e-3,1e-2)")
        if key in grid:
            raise InputError(f"--grid names '{key}' twice")
        parts = [value.strip() for value in values.split(",")]
        if any(not part for part in parts):
            raise InputError(f"--grid '{item}' has an empty value")
        if len(set(parts)) != len(parts):
            raise InputError(f"--grid '{item}' repeats a value")
        grid[key] = parts
    return grid


def expand_grid(
    config_path: str | os.PathLike[str],
    grid: Mapping[str, Sequence[str]],
    overrides: Sequence[str] = (),
    *,
    base_dir: Path | None = None,
) -> list[Member]:
    """Every combination of the grid's values, as members built from the config file.

    Each member is loaded like `jobs submit CONFIG --set ...` with the base `overrides` then
    its own, so a bad grid value fails (ConfigError, naming it) before anything is submitted.
    Run ids are ``<index>_<dim>=<value>,...``, readable in a directory listing.
    """
    if not grid:
        return [Member(load_job_config(config_path, overrides, base_dir=base_dir), {}, ())]
    dims = _dim_names(list(grid))
    members = []
    for index, values in enumerate(itertools.product(*grid.values())):
        own = tuple(f"{key}={value}" for key, value in zip(grid, values))
        config = load_job_config(config_path, [*overrides, *own], base_dir=base_dir)
        params = {dim: _get_dotted(config, key) for dim, key in zip(dims, grid)}
        for dim, value in params.items():
            if not isinstance(value, (bool, int, float, str)):
                raise InputError(f"--grid {dim}: sweep values must be numbers, bools or strings, got {value!r}")
        run_id = _member_run_id(index, params)
        members.append(Member(dataclasses.replace(config, run_id=run_id), params, own))
    return members


def _dim_names(keys: list[str]) -> list[str]:
    """Sweep dimension names: the last part of each key (``model.lr`` -> ``lr``) when unique."""
    short = [key.rsplit(".", 1)[-1] for key in keys]
    if len(set(short)) == len(short):
        return short
    return [key.replace(".", "_") for key in keys]


def _get_dotted(config: Any, key: str) -> Any:
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value.item() if hasattr(value, "item") else value


def _member_run_id(index: int, params: Mapping[str, Any]) -> str:
    run_id = f"{index:03d}_" + ",".join(f"{k}={v}" for k, v in params.items())
    # Fall back to the index alone when a value would make an unsafe or unwieldy name.
    if len(run_id) > 80 or not SAFE_PATH_NAME.fullmatch(run_id) or ".." in run_id:
        run_id = f"{index:03d}"
    return run_id


# --------------------------------------------------------------------------------------------
# Submitting
# --------------------------------------------------------------------------------------------


def submit(
    members: Sequence[Member], executor: str = "auto", *, attempts: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Submit the members as one array and append their manifest records; returns the records.

    All members share the first member's JobSpec and experiment. Run directories (with the
    resolved config.json) are created first, so a config clash fails before anything runs.
    The debug executor runs each member here, in order, before returning.
    """
    if not members:
        raise InputError("nothing to submit")
    first = members[0].config
    for member in members:
        if member.config.sweep_dir != first.sweep_dir:
            raise InputError("all members of a sweep must share root and experiment")
    trainable = get_trainable(first.kind)
    if trainable.preflight is not None:  # data files and base shapes, before any run directory exists
        for model in {
            json.dumps(to_dict(m.config.model), sort_keys=True, default=str): m.config.model for m in members
        }.values():
            trainable.check(model)
        create_run_dir(member.config.root, member.config.experiment, member.config.resolved_run_id, member.config)
    name = resolve_executor(executor)
    folder = first.job_folder
    ex = make_executor(first.job, name, folder)
    entries = [TrainJob(member.config) for member in members]
    quiet = _controller_output(folder.parent / "local_controllers.log") if name == "local" else contextlib.nullcontext()
    with quiet, ex.batch():
        jobs = [ex.submit(entry) for entry in entries]

    records = []
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for member, job in zip(members, jobs):
        run_id = member.config.resolved_run_id
        record = {
            "run_id": run_id,
            "params": member.params,
            "overrides": list(member.overrides),
            "executor": name,
            "job_id": str(job.job_id),
            "folder": str(folder),
            "attempt": (attempts or {}).get(run_id, 0) + 1,
            "submitted_at": now,
            "config": to_dict(member.config),
        }
        if name == "debug":
            record.update(_run_debug(job))
        append_manifest(first.sweep_dir / MANIFEST, record)
        records.append(record)
    return records


@contextlib.contextmanager
def _controller_output(path: Path):
    """Point this process's stdout/stderr at `path` while local controllers are started.

    submitit starts each local job's controller with our stdout and stderr. Left so, a caller
    that reads our output through a pipe (a script, a test) would wait for the jobs to end,
    since the pipe stays open while they run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _run_debug(job) -> dict[str, Any]:
    """Run a debug job now, in this process. DebugJob.result() would open pdb on an error."""
    try:
        job.submission().result()
    except Exception as error:  # the member failed; its state says so, the sweep goes on
        return {"outcome": "failed", "detail": f"{type(error).__name__}: {error}"}
    return {"outcome": "done"}


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


def manifest_path(sweep: str | os.PathLike[str]) -> Path:
    """The manifest of a sweep given its directory (<root>/<experiment>) or the file itself."""
    path = Path(sweep)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise InputError(f"no sweep at {sweep}: {path} not found (give <root>/<experiment>)")
    return path


def latest_records(sweep: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The newest manifest record of each run id, in first-submission order."""
    latest: dict[str, dict[str, Any]] = {}
    path = manifest_path(sweep)
    for number, record in enumerate(read_manifest(path), start=1):
        missing = {"run_id", "executor", "job_id", "folder", "config"} - set(record)
        if missing:
            raise InputError(f"manifest {path} line {number} lacks {', '.join(sorted(missing))}")
        latest[record["run_id"]] = record
    return list(latest.values())


def status(sweep: str | os.PathLike[str]) -> list[MemberStatus]:
    """The state of every member of the sweep, with the paths of its logs."""
    records = latest_records(sweep)
    slurm_ids = [r["job_id"] for r in records if r["executor"] == "slurm"]
    queue = _squeue_states(slurm_ids) if slurm_ids else {}
    return [_member_status(record, queue) for record in records]


def _paths(record: Mapping[str, Any]):
    from submitit.core.utils import JobPaths

    return JobPaths(record["folder"], job_id=record["job_id"], task_id=0)


def _member_status(record: Mapping[str, Any], queue: Mapping[str, str]) -> MemberStatus:
    paths = _paths(record)
    config = record["config"]
    run_dir = str(Path(config["root"]) / config["experiment"] / record["run_id"])
    executor = record["executor"]
    state, detail = _state(record, paths, queue)
    log = stdout = None
    if executor != "debug":
        log, stdout = str(paths.stderr), str(paths.stdout)
    return MemberStatus(
        run_id=record["run_id"],
        params=dict(record.get("params", {})),
        state=state,
        job_id=record["job_id"],
        executor=executor,
        log=log,
        stdout=stdout,
        run_dir=run_dir,
        attempt=int(record.get("attempt", 1)),
        detail=detail,
    )


def _state(record: Mapping[str, Any], paths, queue: Mapping[str, str]) -> tuple[str, str]:
    executor = record["executor"]
    if executor == "debug":
        return record.get("outcome", "failed"), record.get("detail", "")
    outcome = _result_outcome(paths.result_pickle)
    if outcome:
        return outcome
    if executor == "slurm":
        slurm_state = queue.get(record["job_id"])
        if slurm_state in _SLURM_ACTIVE:
            return _SLURM_ACTIVE[slurm_state], ""
        ended = f"SLURM state {slurm_state}" if slurm_state else "not known to SLURM any more"
    else:
        if _local_controller_alive(record["job_id"], record["folder"]):
            return "running", ""
        ended = "the local job process ended"
    # It may have finished between the two looks.
    outcome = _result_outcome(paths.result_pickle)
    return outcome or ("failed", f"{ended} without a result (killed or lost); see the log")


def _result_outcome(path: Path) -> tuple[str, str] | None:
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            kind, value = pickle.load(f)
    except Exception as error:  # a torn or foreign file: report, don't crash the status table
        return "failed", f"unreadable result {path}: {error}"
    if kind == "success":
        return "done", ""
    last = [line for line in str(value).strip().splitlines() if line.strip()]
    return "failed", last[-1].strip() if last else "raised an error"


def _squeue_states(job_ids: Sequence[str]) -> dict[str, str]:
    """{job id: SLURM state} from one squeue call; finished jobs stay listed for MinJobAge."""
    mains = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(mains), "-o", "%i|%T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(f"cannot ask SLURM for job states (squeue): {error}") from None
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            states[job_id] = state
    return states


def _local_controller_alive(job_id: str, folder: str) -> bool:
    """Is the local executor's controller (its pid is the job id) still running this job?"""
    try:
        pid = int(job_id)
    except ValueError:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        try:
            os.kill(pid, 0)  # no /proc (not Linux): existence is the best we can check
        except OSError:
            return False
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    if state == "Z":  # exited, not yet reaped by its parent (this process, if it submitted)
        _reap(pid)
        return False
    # A recycled pid belongs to another program.
    return "submitit.local._local" in cmdline and str(Path(folder).parent) in cmdline


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait(
    sweep: str | os.PathLike[str],
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    run_ids: Sequence[str] | None = None,
) -> list[MemberStatus]:
    """Poll until every member (or those in run_ids) is done or failed; returns the last status."""
    start = time.monotonic()
    while True:
        current = status(sweep)
        watched = [m for m in current if run_ids is None or m.run_id in run_ids]
        if all(m.state in ("done", "failed") for m in watched):
            return current
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(
                f"sweep {sweep} not finished after {timeout_s:.0f} s: "
                + ", ".join(f"{m.run_id} {m.state}" for m in watched if m.state not in ("done", "failed"))
            )
        time.sleep(poll_s)


# --------------------------------------------------------------------------------------------
# Collect and resubmit
# --------------------------------------------------------------------------------------------


def collect(sweep: str | os.PathLike[str], *, members: Sequence[MemberStatus] | None = None):
    """The done members' metrics.nc combined over the sweep grid (an xarray Dataset).

    Sweep parameters are dimensions spanning every submitted value; a member that is not done
    is NaN. Job metadata (state, job_id, log) are data variables over the sweep dims.
    """
    import numpy as np
    import xarray as xr

    from workbench.store import combine_runs, open_dataset, with_sweep_dims

    members = status(sweep) if members is None else members
    dims = list(dict.fromkeys(dim for m in members for dim in m.params))
    if any(set(m.params) != set(dims) for m in members):
        raise InputError(f"members of {sweep} have different sweep parameters; cannot make one grid")
    if not dims:  # single submissions: one point per run id
        members = [dataclasses.replace(m, params={"run": m.run_id}) for m in members]
        dims = ["run"]
    grid = {dim: _sorted_unique([m.params[dim] for m in members]) for dim in dims}

    runs = []
    for m in members:
        path = Path(m.run_dir) / "metrics.nc"
        if m.state == "done" and path.is_file():
            ds = open_dataset(path).drop_vars(["status"], errors="ignore")
            runs.append(with_sweep_dims(ds, {dim: m.params[dim] for dim in dims}))
    combined = combine_runs(runs) if runs else xr.Dataset()
    combined = combined.reindex(grid) if runs else xr.Dataset(coords=grid)

    shape = tuple(len(values) for values in grid.values())
    meta = {name: np.full(shape, "", dtype=object) for name in ("state", "job_id", "log", "run_id")}
    for m in members:
        index = tuple(grid[dim].index(m.params[dim]) for dim in dims)
        meta["state"][index] = m.state
        meta["job_id"][index] = m.job_id or ""
        meta["log"][index] = m.log or ""
        meta["run_id"][index] = m.run_id
    for name, values in meta.items():
        combined[name] = (dims, values.astype(str))
    combined["state"].attrs["description"] = "pending | running | done | failed; not done is NaN"
    return combined


def _sorted_unique(values: list[Any]) -> list[Any]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique)
    except TypeError:
        return unique


def resubmit(sweep: str | os.PathLike[str], executor: str | None = None) -> list[dict[str, Any]]:
    """Submit again, as one array, the members that failed or are done without metrics.nc.

    Pending, running and done members are left alone. Each rerun resumes from its own
    last.ckpt. Returns the new manifest records (empty when nothing needed a rerun).
    """
    current = status(sweep)
    records = {r["run_id"]: r for r in latest_records(sweep)}
    rerun = [
        m
        for m in current
        if m.state == "failed" or (m.state == "done" and not (Path(m.run_dir) / "metrics.nc").is_file())
    ]
    if not rerun:
        return []
    members = []
    for m in rerun:
        record = records[m.run_id]
        config = job_config_from_dict(record["config"], source=f"{manifest_path(sweep)} ({m.run_id})")
        members.append(Member(config, dict(record.get("params", {})), tuple(record.get("overrides", ()))))
    return submit(members, executor or rerun[0].executor, attempts={m.run_id: m.attempt for m in rerun})


# --------------------------------------------------------------------------------------------
# Plain function arrays
# --------------------------------------------------------------------------------------------


def run_array(
    fn,
    items: Sequence[tuple],
    spec,
    executor: str,
    folder: str | os.PathLike[str],
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.2,
) -> tuple[str, list[Any]]:
    """Run ``fn(*item)`` for every item as one job array, wait, return (executor, results).

    For pipelines whose steps are plain functions (the demo's ladder steps) rather than
    training runs: no manifest or run directories, results come back through submitit's
    pickles. `fn` must be importable (a module-level function) and its module light to import.
    A member that fails raises RuntimeError naming its job id and log.
    """
    name = resolve_executor(executor)
    folder = Path(folder).absolute()
    ex = make_executor(spec, name, folder)
    if name == "debug":
        return name, [fn(*item) for item in items]
    quiet = _controller_output(folder.parent / "local_controllers.log") if name == "local" else contextlib.nullcontext()
    with quiet:
        jobs = ex.map_array(fn, *zip(*items))
    records = [{"executor": name, "job_id": str(job.job_id), "folder": str(folder)} for job in jobs]
    start = time.monotonic()
    while True:
        queue = _squeue_states([r["job_id"] for r in records]) if name == "slurm" else {}
        states = [_state(r, _paths(r), queue) for r in records]
        if all(state in ("done", "failed") for state, _ in states):
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"jobs {', '.join(r['job_id'] for r in records)} not finished after {timeout_s:.0f} s")
        time.sleep(poll_s)
    for record, (state, detail) in zip(records, states):
        if state == "failed":
            raise RuntimeError(f"job {record['job_id']} failed: {detail}; log: {_paths(record).stderr}")
    return name, [job.result() for job in jobs]
