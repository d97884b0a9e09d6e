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

A spec is validated before anything is submitted: integer minutes (SLURM's --time has no
fractions, and submitit asserts an int), known sbatch keys only, and names without shell
metacharacters (they end up in a bash script and in paths).
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import bounds
from workbench.errors import ConfigError, InputError

__all__ = [
    "EXECUTORS",
    "JobSpec",
    "make_executor",
    "resolve_executor",
    "sbatch_script",
    "slurm_parameters",
]

EXECUTORS = ("auto", "slurm", "local", "debug")

# Names that reach a shell script or squeue: letters, digits and . _ - + only. Experiment and
# run names are only paths, which may also hold = and , (``003_lr=0.01,seed=1``).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_SAFE_PATH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]*")
# Extra sbatch values are shell-quoted by submitit, but a newline would still start a new line
# of the script, and quotes/backslashes/$ make the quoting hard to read back; SLURM's own
# syntax (a100&ib, gpu:2, 1-3,5) needs none of them.
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f`$;'\"\\<>]")

# Long options of `sbatch` (Slurm 22.05 man page) that make sense in an #SBATCH line.
SBATCH_OPTIONS = frozenset("""
    account acctg-freq batch bb bbf begin chdir cluster-constraint clusters comment constraint
    container contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu delay-boot dependency
    distribution exclude exclusive export export-file extra-node-info get-user-env gid gpu-bind
    gpu-freq gpus gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs input kill-on-invalid-dep
    licenses mail-type mail-user mcs-label mem-bind mem-per-cpu mem-per-gpu mincpus network nice
    no-kill no-requeue nodefile nodelist ntasks ntasks-per-core ntasks-per-gpu ntasks-per-socket
    overcommit oversubscribe power priority profile propagate qos reboot requeue reservation
    sockets-per-node spread-job switches thread-spec threads-per-core time-min tmp uid use-min-nodes
    wait-all-nodes wckey
""".split())
# sbatch keys that JobSpec fields (or submitit itself) set: naming one in `sbatch` is an error
# that points at the field, so a spec has one way to say each thing.
_SPEC_KEYS = {
    "job-name": "name", "partition": "partition", "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node", "gpus-per-node": "gpus_per_node",
    "cpus-per-task": "cpus_per_task", "mem": "mem_gb", "time": "timeout_min",
    "array": "array_parallelism", "signal": "signal_delay_s",
    "output": "folder", "error": "folder", "open-mode": None,
}
# Lightning's SLURMEnvironment treats jobs with these names as interactive and ignores SLURM.
_INTERACTIVE_NAMES = {"bash", "interactive"}


@dataclass(frozen=True)
class JobSpec:
    """Resources and scheduling of a job (or of every member of a sweep).

    timeout_min is whole minutes. signal_delay_s is how long before the time limit the job
    gets USR2 to checkpoint and requeue. sbatch holds extra `#SBATCH --key=value` lines
    (e.g. {"qos": "high", "constraint": "a100"}). folder is where submitit keeps pickles and
    logs (default: <root>/<experiment>/submitit); on a cluster it must be on a filesystem
    the nodes share.
    """

    name: str = "workbench"
    partition: str | None = None
    nodes: int = field(default=1, metadata=bounds(ge=1))
    tasks_per_node: int = field(default=1, metadata=bounds(ge=1))
    gpus_per_node: int = field(default=0, metadata=bounds(ge=0))
    cpus_per_task: int = field(default=1, metadata=bounds(ge=1))
    mem_gb: float | None = field(default=None, metadata=bounds(gt=0))
    timeout_min: int = field(default=60, metadata=bounds(ge=1))
    array_parallelism: int = field(default=16, metadata=bounds(ge=1))
    signal_delay_s: int = field(default=90, metadata=bounds(ge=1))
    max_num_timeout: int = field(default=3, metadata=bounds(ge=0))
    sbatch: dict[str, str | int] = field(default_factory=dict)
    folder: Path | None = None

    def __post_init__(self) -> None:
        # from_dict checks types; this also catches specs built directly in Python.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
                raise ConfigError(f"job.{f.name} must be an int, got {value!r} ({type(value).__name__})"
                                  + (" (whole minutes: SLURM's --time has no fractions)"
                                     if f.name == "timeout_min" else ""))
        check_name(self.name, "job.name")
        if self.name in _INTERACTIVE_NAMES:
            raise ConfigError(f"job.name {self.name!r} is reserved: Lightning treats jobs named "
                              f"{' or '.join(sorted(_INTERACTIVE_NAMES))} as interactive shells")
        if self.partition is not None:
            check_name(self.partition, "job.partition")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ConfigError(f"job.signal_delay_s = {self.signal_delay_s} must be shorter than "
                              f"the time limit ({self.timeout_min} min = {self.timeout_min * 60} s)")
        for key, value in self.sbatch.items():
            _check_sbatch_item(key, value)


def check_name(value: Any, what: str, *, path: bool = False) -> str:
    """`value` if it is a safe name (path=True: a path component, which may also hold = ,)."""
    pattern, allowed = (_SAFE_PATH_NAME, ". _ - + = ,") if path else (_SAFE_NAME, ". _ - +")
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise ConfigError(f"{what} = {value!r} is not a safe name: use letters, digits and {allowed} "
                          f"only, starting with a letter, digit or _ (no spaces, path separators "
                          f"or shell metacharacters)")
    return value


def _check_sbatch_item(key: Any, value: Any) -> None:
    name = str(key).replace("_", "-")
    if name in _SPEC_KEYS:
        owner = _SPEC_KEYS[name]
        raise ConfigError(f"job.sbatch key '{key}' is set by the spec itself"
                          + (f"; use job.{owner}" if owner else " (submitit needs it)"))
    if name not in SBATCH_OPTIONS:
        close = difflib.get_close_matches(name, sorted(SBATCH_OPTIONS), n=1)
        raise ConfigError(f"unknown sbatch key '{key}' in job.sbatch"
                          + (f" (did you mean '{close[0]}'?)" if close else "")
                          + "; see `man sbatch` for the long options")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"job.sbatch.{key} must be a string or an int, got {value!r}")
    if isinstance(value, str) and (not value or _UNSAFE_VALUE.search(value)):
        raise ConfigError(f"job.sbatch.{key} = {value!r} is empty or has a character that is unsafe "
                          f"in a batch script (newline, quote, backslash, $, `, ;, < or >)")


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
        raise InputError("executor 'slurm' needs sbatch and srun on PATH (start a one-node "
                         "cluster with `jobs/slurm/local_cluster.sh start`, or use --executor local)")
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
    return params


def _slurm_mem(mem_gb: float) -> str:
    # Whole gigabytes as G, otherwise megabytes: --mem takes integers only.
    return f"{int(mem_gb)}G" if float(mem_gb).is_integer() else f"{round(mem_gb * 1024)}M"


def sbatch_script(spec: JobSpec, folder: str | Path, *, array_size: int | None = None,
                  command: str | None = None) -> str:
    """The batch script submitit writes for `spec` (an array of `array_size` jobs if given).

    Made by the same submitit function the SLURM executor uses, so it is exactly what sbatch
    receives, but without needing a cluster.
    """
    import shlex
    import sys

    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder).expanduser().absolute()
    if command is None:
        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                            shlex.quote(str(folder))])
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
        raise InputError(f"the {name} executor runs on this machine only; job.nodes = "
                         f"{spec.nodes} needs --executor slurm")
    if name == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=spec.max_num_timeout)
        ex.update_parameters(timeout_min=spec.timeout_min, tasks_per_node=spec.tasks_per_node,
                             gpus_per_node=spec.gpus_per_node, signal_delay_s=spec.signal_delay_s)
        return ex
    if spec.tasks_per_node > 1:
        raise InputError("the debug executor runs one task in this process; use --executor local "
                         "for job.tasks_per_node > 1")
    return submitit.DebugExecutor(folder=folder)
