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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.entrypoints import TrainJob, TrainJobConfig, job_config_from_dict, load_job_config
from jobs.local import (
    QUEUE_LOCK,
    controller_alive,
    controller_output,
    local_limit,
    own_session,
    queue_holder,
    start_queue,
    tasks_alive,
)
from jobs.submit import make_executor, resolve_executor
from workbench import interrupts
from workbench.atomic import check_writable_dir
from workbench.config import to_dict
from workbench.errors import InputError
from workbench.jobspec import SAFE_PATH_NAME
from workbench.locks import file_lock, holder, writer_lock
from workbench.registry import get_trainable
from workbench.store import WRITER_LOCK, append_manifest, check_run_dir, create_run_dir, read_manifest

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
    queued: bool = False  # waiting in the local queue for a free slot (no job yet)

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

    All members share the first member's JobSpec and experiment. Submissions into one
    experiment take turns (a lock on the experiment directory). Under it, and before anything
    is submitted: a member that is still pending or running, or whose run directory another
    trainer is writing, is refused; then every member's run directory is checked against its
    config (a clash is refused) and created with the resolved config.json.

    On the local executor at most `jobs.local.local_limit` members run at once; the others
    are recorded as queued and started by a queue process as slots free. The debug executor
    runs each member here, in order, before returning.
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
    name = resolve_executor(executor)
    sweep_dir = check_writable_dir(first.sweep_dir, "experiment directory")
    with file_lock(sweep_dir / SUBMIT_LOCK, description="jobs submit"):
        current = _statuses_if_any(sweep_dir)
        _refuse_active(sweep_dir, members, current)
        for member in members:
            check_run_dir(member.config.root, member.config.experiment, member.config.resolved_run_id, member.config)
        for member in members:
            create_run_dir(member.config.root, member.config.experiment, member.config.resolved_run_id, member.config)
        attempts = {m.config.resolved_run_id: (attempts or {}).get(m.config.resolved_run_id, 0) + 1 for m in members}
        running = _jobs_active(current)
        # Every member is recorded before any job exists, so a submission cut short (a kill, a
        # torn line) leaves members that status reports and resubmit can start.
        intents = _queue(members, attempts)
        if name != "local":
            return _submit_now(members, name, attempts)
        free = max(local_limit(first.job) - running, 0)
        records = _submit_now(members[:free], name, attempts) if free else []
        if len(members) > free:
            records += intents[free:]
            if queue_holder(sweep_dir) is None:
                start_queue(sweep_dir)
        return records


SUBMIT_LOCK = ".submit.lock"


def _statuses_if_any(sweep_dir: Path) -> list[MemberStatus]:
    return status(sweep_dir) if (sweep_dir / MANIFEST).is_file() else []


def _jobs_active(current: Sequence[MemberStatus]) -> int:
    """Members with a job that is pending or running (queued ones have no job yet)."""
    return sum(m.state in ("pending", "running") and not m.queued for m in current)


def _refuse_active(
    sweep_dir: Path, members: Sequence[Member], statuses: Sequence[MemberStatus], *, queued_ok: bool = False
) -> None:
    """A second writer into a run directory is refused: its member must have ended first."""
    current = {m.run_id: m for m in statuses}
    for member in members:
        run_id = member.config.resolved_run_id
        known = current.get(run_id)
        if known is not None and known.state in ("pending", "running") and not (queued_ok and known.queued):
            raise InputError(
                f"{sweep_dir.name}/{run_id} is already {known.state} (job {known.job_id}); "
                f"wait for it (workbench jobs status {sweep_dir}) or use another experiment or run id"
            )
        busy = holder(member.config.run_dir.path / WRITER_LOCK)
        if busy:
            raise InputError(f"{member.config.run_dir.path} is being written by {busy}; wait for it to end")


def _submit_now(members: Sequence[Member], name: str, attempts: Mapping[str, int]) -> list[dict[str, Any]]:
    first = members[0].config
    folder = first.job_folder
    ex = make_executor(first.job, name, folder)
    entries = [TrainJob(member.config) for member in members]
    local = name == "local"
    quiet = controller_output(folder.parent / "local_controllers.log") if local else contextlib.nullcontext()
    with quiet, own_session() if local else contextlib.nullcontext(), ex.batch():
        jobs = [ex.submit(entry) for entry in entries]
    records = [_record(member, name, str(job.job_id), str(folder), attempts) for member, job in zip(members, jobs)]
    if name == "debug":
        return _run_debug_members(first.sweep_dir, records, jobs)
    for record in records:
        append_manifest(first.sweep_dir / MANIFEST, record)
    return records


def _record(member: Member, executor: str, job_id: str | None, folder: str, attempts: Mapping[str, int]) -> dict:
    run_id = member.config.resolved_run_id
    return {
        "run_id": run_id,
        "params": member.params,
        "overrides": list(member.overrides),
        "executor": executor,
        "job_id": job_id,
        "folder": folder,
        "attempt": attempts.get(run_id, 1),
        "submitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": to_dict(member.config),
    }


def _queue(members: Sequence[Member], attempts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Record members as queued: submitted by the user, no job yet."""
    records = []
    for member in members:
        record = _record(member, "local", None, str(member.config.job_folder), attempts)
        record["queued"] = True
        append_manifest(member.config.sweep_dir / MANIFEST, record)
        records.append(record)
    return records


def drain_local_queue(sweep_dir: Path, poll_s: float = 1.0) -> None:
    """Start queued local members as slots free; return when none is queued (the queue process).

    The queue lock is held for the process's life and let go under the submit lock, so a
    submission that queues members either sees this process alive or starts a new one.
    """
    sweep_dir = Path(sweep_dir)
    with contextlib.ExitStack() as life:
        life.enter_context(writer_lock(sweep_dir / QUEUE_LOCK, description="local queue"))
        while True:
            with file_lock(sweep_dir / SUBMIT_LOCK, description="local queue"):
                current = status(sweep_dir)
                queued = [m for m in current if m.queued and m.state == "pending"]
                if not queued:
                    life.close()  # let go of the queue lock while submissions still wait
                    return
                records = {r["run_id"]: r for r in latest_records(sweep_dir)}
                members = [_member_from_record(records[m.run_id], sweep_dir) for m in queued]
                free = local_limit(members[0].config.job) - _jobs_active(current)
                if free > 0:
                    chosen = members[:free]
                    _refuse_active(sweep_dir, chosen, current, queued_ok=True)
                    _submit_now(chosen, "local", {m.run_id: m.attempt for m in queued})
            time.sleep(poll_s)


def _member_from_record(record: Mapping[str, Any], sweep_dir: Path) -> Member:
    config = job_config_from_dict(record["config"], source=f"{sweep_dir / MANIFEST} ({record['run_id']})")
    return Member(config, dict(record.get("params", {})), tuple(record.get("overrides", ())))


def _run_debug_members(sweep_dir: Path, records: list[dict[str, Any]], jobs) -> list[dict[str, Any]]:
    """Run debug jobs now, in this process, recording each outcome.

    A Ctrl-C stops the sweep: the interrupted member and those not started are recorded as
    failed (so `resubmit` finishes them) before the interrupt goes on to the caller.
    """
    interrupted = False
    with interrupts.ctrl_c_noted():
        for record, job in zip(records, jobs):
            if interrupted:
                record.update(outcome="failed", detail="not started: the sweep was interrupted (Ctrl-C)")
            else:
                try:
                    record.update(_run_debug(job))
                    # A Ctrl-C whose exception was swallowed (see workbench.interrupts) still stops
                    # the sweep; a member that finished before it is done.
                    interrupted = interrupts.requested()
                except KeyboardInterrupt:
                    interrupted = True
                    record.update(outcome="failed", detail="interrupted (Ctrl-C)")
            append_manifest(sweep_dir / MANIFEST, record)
    if interrupted:
        raise KeyboardInterrupt
    return records


def _run_debug(job) -> dict[str, Any]:
    """Run a debug job now, in this process. DebugJob.result() would open pdb on an error."""
    try:
        job.submission().result()
    except SystemExit as error:
        # Lightning turns a Ctrl-C during fit into SystemExit(1) after its own clean-up.
        if isinstance(error.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        return {"outcome": "failed", "detail": f"exited with status {error.code}"}
    except Exception as error:  # the member failed; its state says so, the sweep goes on
        return {"outcome": "failed", "detail": f"{type(error).__name__}: {error}"}
    return {"outcome": "done"}


# --------------------------------------------------------------------------------------------
# Foreground: one member in this process, inside a user's sbatch script, srun or torchrun
# --------------------------------------------------------------------------------------------

FOREGROUND = "foreground"


def launched_world() -> tuple[int, int, int]:
    """(global rank, processes per node, nodes) of the launch this process is part of: srun's
    SLURM_* step variables, torchrun's RANK / LOCAL_WORLD_SIZE / WORLD_SIZE, else one process."""
    env = os.environ
    if env.get("SLURM_STEP_ID") is not None and env.get("SLURM_NTASKS", "").isdigit():
        tasks, nodes = int(env["SLURM_NTASKS"]), int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or 1)
        return int(env.get("SLURM_PROCID", 0)), max(1, tasks // max(nodes, 1)), nodes
    if env.get("WORLD_SIZE", "").isdigit() and env.get("LOCAL_WORLD_SIZE", "").isdigit():
        world, local = int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])
        return int(env.get("RANK", 0)), local, max(1, world // max(local, 1))
    return 0, 1, 1


def foreground_id() -> str:
    """The id a foreground run is recorded under: the SLURM job (and array task), else host:pid."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    return f"{socket.gethostname()}:{os.getpid()}"


def foreground_script(
    config_path: str, members: Sequence[Member], grid: Sequence[str], overrides: Sequence[str]
) -> str:
    """An sbatch script running `members` as one array, each task `srun ... workbench run` with its
    index from $SLURM_ARRAY_TASK_ID. #SBATCH lines from the first member's JobSpec; output and
    error go to <root>/<experiment>/slurm/ (which must exist before sbatch: SLURM opens them
    first). No --signal line: nothing in a foreground run catches USR2, whose default ends it."""
    import shlex

    from jobs.entrypoints import resolve_config_path
    from jobs.submit import slurm_parameters

    first = members[0].config
    spec = first.job
    logs = first.sweep_dir / "slurm"
    params = slurm_parameters(spec)
    lines = ["#!/bin/bash", f"# workbench jobs sbatch: {len(members)} member(s) of {first.experiment}", ""]
    sbatch = {
        "job-name": params["job_name"],
        "time": params["time"],
        "nodes": params["nodes"],
        "ntasks-per-node": params["ntasks_per_node"],
        "cpus-per-task": params["cpus_per_task"],
        "output": f"{logs}/%A_%a.out" if len(members) > 1 else f"{logs}/%j.out",
        "error": f"{logs}/%A_%a.err" if len(members) > 1 else f"{logs}/%j.err",
    }
    for key in ("partition", "mem"):
        if key in params:
            sbatch[key] = params[key]
    if "gpus_per_node" in params:
        sbatch["gpus-per-node"] = params["gpus_per_node"]
    if len(members) > 1:
        sbatch["array"] = f"0-{len(members) - 1}%{spec.array_parallelism}"
    sbatch.update(params.get("additional_parameters", {}))
    lines += [f"#SBATCH --{key}={value}" for key, value in sbatch.items()]
    lines += ["", *spec.setup, ""] if spec.setup else [""]
    command = [sys.executable, "-m", "workbench.cli", "run", str(resolve_config_path(config_path).absolute())]
    command += [arg for item in grid for arg in ("--grid", item)]
    command += [arg for item in [*overrides, f"root={first.root}"] for arg in ("--set", item)]
    lines.append("srun " + " ".join(shlex.quote(part) for part in command))
    return "\n".join(lines) + "\n"


def run_foreground(member: Member) -> dict[str, Any]:
    """Train `member` in this process and record it in the sweep's manifest (executor
    "foreground"), so `jobs status`, `collect` and `resubmit` see it like a submitted member.

    Processes per node and nodes come from the launch (`launched_world`), not from the config's
    job section: the sbatch script, srun or torchrun decided them. Rank 0 records the member and
    its outcome; every rank trains (DDP ranks from the environment, as Lightning reads them).
    """
    rank, per_node, nodes = launched_world()
    config = dataclasses.replace(
        member.config, job=dataclasses.replace(member.config.job, tasks_per_node=per_node, nodes=nodes)
    )
    member = dataclasses.replace(member, config=config)
    sweep_dir = config.sweep_dir
    record = _record(member, FOREGROUND, foreground_id(), str(config.run_dir.path), {})
    if rank == 0:
        check_writable_dir(sweep_dir, "experiment directory")
        with file_lock(sweep_dir / SUBMIT_LOCK, description="workbench run"):
            _refuse_active(sweep_dir, [member], _statuses_if_any(sweep_dir))
            check_run_dir(config.root, config.experiment, config.resolved_run_id, config)
            create_run_dir(config.root, config.experiment, config.resolved_run_id, config)
            append_manifest(sweep_dir / MANIFEST, record)
    try:
        result = TrainJob(config)()
    except BaseException as error:
        if rank == 0:
            interrupted = isinstance(error, KeyboardInterrupt)
            detail = "interrupted (Ctrl-C)" if interrupted else f"{type(error).__name__}: {error}"
            append_manifest(sweep_dir / MANIFEST, {**record, "outcome": "failed", "detail": detail})
        raise
    if rank == 0:
        append_manifest(sweep_dir / MANIFEST, {**record, "outcome": "done"})
    return result


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
    config = record["config"]
    run_dir = Path(config["root"]) / config["experiment"] / record["run_id"]
    executor = record["executor"]
    log = stdout = None
    if record.get("queued"):
        state, detail = _queued_state(run_dir)
    else:
        paths = _paths(record)
        state, detail = _state(record, paths, queue, run_dir)
        if executor not in ("debug", FOREGROUND):  # a foreground run's output is where its launcher put it
            log, stdout = str(paths.stderr), str(paths.stdout)
    return MemberStatus(
        run_id=record["run_id"],
        params=dict(record.get("params", {})),
        state=state,
        job_id=record["job_id"],
        executor=executor,
        log=log,
        stdout=stdout,
        run_dir=str(run_dir),
        attempt=int(record.get("attempt", 1)),
        detail=detail,
        queued=bool(record.get("queued")),
    )


def _queued_state(run_dir: Path) -> tuple[str, str]:
    """A member recorded without a job: the run directory, then the queue, say where it is."""
    known = _run_dir_state(run_dir)
    if known:
        return known
    if queue_holder(run_dir.parent):
        return "pending", "queued: waits for a free local slot"
    if holder(run_dir.parent / SUBMIT_LOCK):
        return "pending", "being submitted"
    return "failed", "not started: its submission was cut short or the local queue stopped; resubmit it"


def _run_dir_state(run_dir: Path) -> tuple[str, str] | None:
    """What the run directory itself proves: a live trainer (running) or a completed run (done)."""
    busy = holder(run_dir / WRITER_LOCK)
    if busy:
        return "running", f"a trainer writes the run directory ({busy})"
    metrics = run_dir / "metrics.nc"
    if metrics.is_file():
        import xarray as xr

        try:
            with xr.open_dataset(metrics, engine="h5netcdf") as ds:
                if "status" in ds and str(ds["status"].values) == "completed":
                    return "done", ""
        except Exception:  # an unreadable file proves nothing; the job's own state decides
            return None
    return None


def _state(record: Mapping[str, Any], paths, queue: Mapping[str, str], run_dir: Path | None = None) -> tuple[str, str]:
    executor = record["executor"]
    if executor == "debug":
        return record.get("outcome", "failed"), record.get("detail", "")
    if executor == FOREGROUND:  # its process records the outcome; until then its trainer holds the lock
        if "outcome" in record:
            return record["outcome"], record.get("detail", "")
        busy = holder(run_dir / WRITER_LOCK) if run_dir is not None else None
        if busy:
            return "running", ""
        return "failed", "its foreground process ended without a result (killed or lost); see its logs"
    outcome = _result_outcome(paths.result_pickle)
    if outcome:
        return outcome
    if executor == "slurm":
        slurm_state = queue.get(record["job_id"])
        if slurm_state in _SLURM_ACTIVE:
            return _SLURM_ACTIVE[slurm_state], ""
        ended = f"SLURM state {slurm_state}" if slurm_state else "not known to SLURM any more"
    else:
        if controller_alive(record["job_id"], record["folder"]):
            return "running", ""
        if tasks_alive(record["job_id"]):
            return "running", "its controller ended, but its task runs on"
        ended = "the local job process ended"
    # A controller can die (kill -9, a lost node) while its trainer runs on and holds the run
    # directory's writer lock: the member is running, and must not be started a second time.
    busy = holder(run_dir / WRITER_LOCK) if run_dir is not None else None
    if busy:
        return "running", f"{ended}, but its trainer runs on ({busy})"
    # It may have finished between the two looks.
    outcome = _result_outcome(paths.result_pickle)
    if outcome:
        return outcome
    reason = (
        slurm_failure_reason(record["job_id"], paths.stderr, queue.get(record["job_id"]))
        if executor == "slurm"
        else None
    )
    return "failed", reason or f"{ended} without a result (killed or lost); see the log"


# What SLURM calls a job it ended, as a person would say it (sacct's State, or slurmstepd's words
# in the job's stderr where there is no accounting).
_SLURM_ENDINGS = {
    "OUT_OF_MEMORY": "killed for using more memory than it asked for (OUT_OF_MEMORY); raise job.mem_gb",
    "TIMEOUT": "killed at its time limit (TIMEOUT); raise job.timeout_min or let it requeue (job.max_num_timeout)",
    "NODE_FAIL": "its node failed (NODE_FAIL); resubmit it",
    "PREEMPTED": "preempted by the scheduler (PREEMPTED); resubmit it",
    "CANCELLED": "cancelled (CANCELLED, by scancel or an administrator)",
    "BOOT_FAIL": "its node failed to boot (BOOT_FAIL); resubmit it",
    "DEADLINE": "it missed its deadline (DEADLINE)",
}
_STEPD_WORDS = (  # slurmstepd's lines in the job's stderr, most specific first
    ("oom_kill event", "OUT_OF_MEMORY"),
    ("oom-kill", "OUT_OF_MEMORY"),
    ("out of memory", "OUT_OF_MEMORY"),
    ("due to time limit", "TIMEOUT"),
    ("due to node failure", "NODE_FAIL"),
    ("due to preemption", "PREEMPTED"),
    ("cancelled at", "CANCELLED"),
)


def slurm_failure_reason(job_id: str, stderr: Path | None = None, queue_state: str | None = None) -> str | None:
    """Why SLURM ended a job that left no result: sacct's State where accounting answers, else the
    state squeue still lists it with, else slurmstepd's message at the end of the job's stderr;
    None when none says."""
    state = _sacct_state(job_id)
    if state is None and queue_state in _SLURM_ENDINGS:
        state = queue_state
    if state is None and stderr is not None:
        try:
            with open(stderr, "rb") as file:
                file.seek(max(0, os.path.getsize(stderr) - 16384))
                tail = file.read().decode("utf-8", errors="replace").lower()
        except OSError:
            tail = ""
        state = next((name for words, name in _STEPD_WORDS if words in tail), None)
    return _SLURM_ENDINGS.get(state) if state else None


def _sacct_state(job_id: str) -> str | None:
    """The job's State from a real sacct (with accounting); None without one, or for the
    stand-in that jobs/slurm/local_cluster.sh installs (it only echoes squeue)."""
    import shutil

    sacct = shutil.which("sacct")
    stand_in = Path(__file__).resolve().parent / "slurm" / "sacct"
    if sacct is None or Path(sacct).resolve() == stand_in:
        return None
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        jid, _, state = line.partition("|")
        if jid.strip() == job_id and state:
            return state.split()[0].upper()  # "CANCELLED by 0" -> CANCELLED
    return None


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
    if last and "timed-out too many times" in last[-1]:  # submitit's USR2 handler, past max_num_timeout
        return "failed", _SLURM_ENDINGS["TIMEOUT"] + f" ({last[-1].strip()})"
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


def wait(
    sweep: str | os.PathLike[str],
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    run_ids: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[MemberStatus]:
    """Poll until every member (or those in run_ids) is done or failed; returns the last status.
    `progress` gets a one-line summary at every poll (`progress_line`)."""
    start = time.monotonic()
    while True:
        current = status(sweep)
        watched = [m for m in current if run_ids is None or m.run_id in run_ids]
        if progress is not None:
            progress(progress_line(watched, time.monotonic() - start))
        if all(m.state in ("done", "failed") for m in watched):
            return current
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(
                f"sweep {sweep} not finished after {timeout_s:.0f} s: "
                + ", ".join(f"{m.run_id} {m.state}" for m in watched if m.state not in ("done", "failed"))
            )
        time.sleep(poll_s)


def progress_line(members: Sequence[MemberStatus], elapsed_s: float) -> str:
    """``3 members: 1 pending, 1 running, 1 done, 0 failed (42 s)``; one member: its state and,
    while it trains, its step and loss from the run's CSV log."""
    if len(members) == 1:
        m = members[0]
        latest = _latest_logged(Path(m.run_dir)) if m.state == "running" else None
        where = f": step {latest[0]}, loss {latest[1]:.4g}" if latest else ""
        return f"{m.run_id} {m.state}{where} ({elapsed_s:.0f} s)"
    counts = {state: sum(m.state == state for m in members) for state in ("pending", "running", "done", "failed")}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{len(members)} members: {summary} ({elapsed_s:.0f} s)"


def _latest_logged(run_dir: Path) -> tuple[int, float] | None:
    """(step, loss) of the last loss row in <run>/logs/csv/metrics.csv, reading only its tail."""
    path = run_dir / "logs" / "csv" / "metrics.csv"
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            tail = file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        parts = line.split(",")
        if len(parts) == 3 and parts[1] == "loss" and parts[0].isdigit():
            try:
                return int(parts[0]), float(parts[2])
            except ValueError:
                return None
    return None


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

    from workbench.provenance import PREFIX, with_provenance
    from workbench.store import combine_runs, open_dataset, with_sweep_dims

    CONFIG = PREFIX + "config"

    members = status(sweep) if members is None else members
    dims = list(dict.fromkeys(dim for m in members for dim in m.params))
    if any(set(m.params) != set(dims) for m in members):
        raise InputError(f"members of {sweep} have different sweep parameters; cannot make one grid")
    if not dims:  # single submissions: one point per run id
        members = [dataclasses.replace(m, params={"run": m.run_id}) for m in members]
        dims = ["run"]
    grid = {dim: _sorted_unique([m.params[dim] for m in members]) for dim in dims}

    runs, origins, configs = [], {}, {}
    for m in members:
        path = Path(m.run_dir) / "metrics.nc"
        config_path = Path(m.run_dir) / "config.json"
        if config_path.is_file():
            configs[m.run_id] = json.loads(config_path.read_text())
        if m.state == "done" and path.is_file():
            ds = open_dataset(path).drop_vars(["status"], errors="ignore")
            recorded = {k: v for k, v in ds.attrs.items() if k.startswith(PREFIX) and k != CONFIG}
            origins[m.run_id] = {k[len(PREFIX) :]: v for k, v in recorded.items()}
            ds.attrs = {k: v for k, v in ds.attrs.items() if not k.startswith(PREFIX)}
            runs.append(with_sweep_dims(ds, {dim: m.params[dim] for dim in dims}))
    combined = combine_runs(runs) if runs else xr.Dataset()
    combined = combined.reindex(grid) if runs else xr.Dataset(coords=grid)
    # the sweep's own provenance, each member's resolved config, and where each member's run came from
    combined = with_provenance(combined, configs)
    combined.attrs[PREFIX + "runs"] = json.dumps(origins, sort_keys=True)

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
    sweep_dir = manifest_path(sweep).parent
    members = [_member_from_record(records[m.run_id], sweep_dir) for m in rerun]
    # A foreground member is rerun by its own script; submitted again here, it goes to a real executor.
    default = rerun[0].executor if rerun[0].executor != FOREGROUND else "auto"
    return submit(members, executor or default, attempts={m.run_id: m.attempt for m in rerun})


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
    progress: Callable[[str], None] | None = None,
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
    start = time.monotonic()
    if name == "local":
        jobs = _submit_local(ex, fn, items, local_limit(spec), folder, start, timeout_s, poll_s)
    else:
        jobs = ex.map_array(fn, *zip(*items))
    records = [{"executor": name, "job_id": str(job.job_id), "folder": str(folder)} for job in jobs]
    while True:
        queue = _squeue_states([r["job_id"] for r in records]) if name == "slurm" else {}
        states = [_state(r, _paths(r), queue) for r in records]
        if progress is not None:
            counts = {s: sum(state == s for state, _ in states) for s in ("pending", "running", "done", "failed")}
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            progress(f"{len(items)} members: {summary} ({time.monotonic() - start:.0f} s)")
        if all(state in ("done", "failed") for state, _ in states):
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"jobs {', '.join(r['job_id'] for r in records)} not finished after {timeout_s:.0f} s")
        time.sleep(poll_s)
    for record, (state, detail) in zip(records, states):
        if state == "failed":
            raise RuntimeError(f"job {record['job_id']} failed: {detail}; log: {_paths(record).stderr}")
    return name, [job.result() for job in jobs]


def _submit_local(ex, fn, items, limit: int, folder: Path, start: float, timeout_s: float | None, poll_s: float):
    """Start the members as local processes, at most `limit` at once (job.array_parallelism and
    the cores, `jobs.local.local_limit`): a member starts when an earlier one has ended."""
    jobs: list = []
    for item in items:
        while sum(not job.done() for job in jobs) >= limit:
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                started = ", ".join(str(job.job_id) for job in jobs)
                raise TimeoutError(f"jobs {started} not finished after {timeout_s:.0f} s")
            time.sleep(poll_s)
        with controller_output(folder.parent / "local_controllers.log"), own_session():
            jobs.append(ex.submit(fn, *item))
    return jobs
