"""One JobSpec, four executors: where and with what resources a job runs.

    spec = JobSpec(partition="gpu", gpus_per_node=4, tasks_per_node=4, timeout_min=240)
    executor = make_executor(spec, "auto", folder)     # slurm if a SLURM controller answers, else local
    print(sbatch_script(spec, folder, array_size=8))  # what `sbatch` would receive

Executors (submitit):
  slurm  one sbatch script per job, or one job array per sweep; submitit's USR2 handler
         checkpoints and requeues on timeout or preemption.
  local  a controller process per job on this machine (same pickles, logs and requeue as
         slurm); the embedded default without a cluster.
  debug  runs in the calling process, without pickling: for stepping through a job.
  auto   slurm when `sbatch` is on PATH and `sinfo` reaches a controller, else local.

The spec itself (workbench/jobspec.py) is validated when it is built.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.jobspec import EXECUTORS, JobSpec, check_name

__all__ = [
    "EXECUTORS",
    "JobSpec",
    "check_name",
    "make_executor",
    "resolve_executor",
    "sbatch_script",
    "slurm_parameters",
]

# --------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------


def resolve_executor(name: str) -> str:
    """`auto` -> `slurm` when sbatch is on PATH and a controller answers, else `local`.

    The other names are checked.
    """
    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    if name == "auto":
        # sbatch rather than srun (submitit's own test): submission needs sbatch, and a login
        # node may have one without the other. A machine with SLURM's client installed but no
        # controller running (a stopped one-node cluster) would fail every job, so ask first.
        return "slurm" if shutil.which("sbatch") and _controller_answers() else "local"
    if name == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise InputError(
            "executor 'slurm' needs sbatch and srun on PATH (start a one-node "
            "cluster with `jobs/slurm/local_cluster.sh start`, or use --executor local)"
        )
    return name


def _controller_answers(timeout_s: float = 5.0) -> bool:
    """True when `sinfo` reaches a SLURM controller within the timeout."""
    import subprocess

    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def slurm_parameters(spec: JobSpec) -> dict[str, Any]:
    """The spec as keyword arguments of submitit's SlurmExecutor.update_parameters."""
    params: dict[str, Any] = {
        "job_name": spec.name,
        "time": spec.timeout_min,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.tasks_per_node,
        "cpus_per_task": spec.cpus_per_task,
        "signal_delay_s": spec.signal_delay_s,
        "array_parallelism": spec.array_parallelism,
    }
    if spec.partition:
        params["partition"] = spec.partition
    if spec.gpus_per_node:
        params["gpus_per_node"] = spec.gpus_per_node
    if spec.mem_gb is not None:
        params["mem"] = _slurm_mem(spec.mem_gb)
    if spec.sbatch:
        params["additional_parameters"] = {str(k).replace("_", "-"): v for k, v in spec.sbatch.items()}
    if spec.setup:
        params["setup"] = list(spec.setup)
    return params


def _slurm_mem(mem_gb: float) -> str:
    # Whole gigabytes as G, otherwise megabytes: --mem takes integers only.
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{round(mem_gb * 1024)}M"


def sbatch_script(
    spec: JobSpec, folder: str | Path, *, array_size: int | None = None, command: str | None = None
) -> str:
    """The batch script submitit writes for `spec` (an array of `array_size` jobs if given).

    Made by the same submitit function the SLURM executor uses, so it is exactly what sbatch
    receives, but without needing a cluster.
    """
    import shlex
    import sys

    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder).expanduser().absolute()
    if command is None:
        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    params = slurm_parameters(spec)
    if array_size is not None:
        params["map_count"] = array_size
    return _make_sbatch_string(command=command, folder=folder, **params)


def make_executor(spec: JobSpec, executor: str, folder: str | Path):
    """A submitit executor for `spec`; `folder` may hold %j (one sub-folder per job)."""
    import submitit

    name = resolve_executor(executor)
    if name == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=spec.max_num_timeout)
        ex.update_parameters(**slurm_parameters(spec))
        return ex
    if spec.nodes > 1:
        raise InputError(
            f"the {name} executor runs on this machine only; job.nodes = {spec.nodes} needs --executor slurm"
        )
    if name == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=spec.max_num_timeout)
        ex.update_parameters(
            timeout_min=spec.timeout_min,
            tasks_per_node=spec.tasks_per_node,
            gpus_per_node=spec.gpus_per_node,
            signal_delay_s=spec.signal_delay_s,
        )
        return ex
    if spec.tasks_per_node > 1:
        raise InputError(
            "the debug executor runs one task in this process; use --executor local for job.tasks_per_node > 1"
        )
    return submitit.DebugExecutor(folder=folder)
