"""Where and with what resources a job runs: the JobSpec, as pure data.

    spec = JobSpec(partition="gpu", gpus_per_node=4, tasks_per_node=4, timeout_min=240)

A spec is validated when it is built, before anything is submitted: integer minutes (SLURM's
--time has no fractions, and submitit asserts an int), known sbatch keys only, and names without
shell metacharacters (they end up in a bash script and in paths). Experiment configs of every
area hold one (`job:`); `jobs.submit` turns it into a submitit executor.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import bounds
from workbench.errors import ConfigError

__all__ = ["EXECUTORS", "SAFE_PATH_NAME", "JobSpec", "check_name"]

EXECUTORS = ("auto", "slurm", "local", "debug")

# Names that reach a shell script or squeue: letters, digits and . _ - + only. Experiment and
# run names are only paths, which may also hold = and , (``003_lr=0.01,seed=1``).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
SAFE_PATH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]*")
# Extra sbatch values are shell-quoted by submitit, but a newline would still start a new line
# of the script, and quotes/backslashes/$ make the quoting hard to read back; SLURM's own
# syntax (a100&ib, gpu:2, 1-3,5) needs none of them.
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f`$;'\"\\<>]")

# Long options of `sbatch` (Slurm 22.05 man page) that make sense in an #SBATCH line.
SBATCH_OPTIONS = frozenset(
    """
    account acctg-freq batch bb bbf begin chdir cluster-constraint clusters comment constraint
    container contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu delay-boot dependency
    distribution exclude exclusive export export-file extra-node-info get-user-env gid gpu-bind
    gpu-freq gpus gpus-per-socket gpus-per-task gres gres-flags hint hold ignore-pbs input kill-on-invalid-dep
    licenses mail-type mail-user mcs-label mem-bind mem-per-cpu mem-per-gpu mincpus network nice
    no-kill no-requeue nodefile nodelist ntasks ntasks-per-core ntasks-per-gpu ntasks-per-socket
    overcommit oversubscribe power priority profile propagate qos reboot requeue reservation
    sockets-per-node spread-job switches thread-spec threads-per-core time-min tmp uid use-min-nodes
    wait-all-nodes wckey
""".split()
)
# sbatch keys that JobSpec fields (or submitit itself) set: naming one in `sbatch` is an error
# that points at the field, so a spec has one way to say each thing.
_SPEC_KEYS = {
    "job-name": "name",
    "partition": "partition",
    "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node",
    "gpus-per-node": "gpus_per_node",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem_gb",
    "time": "timeout_min",
    "array": "array_parallelism",
    "signal": "signal_delay_s",
    "output": "folder",
    "error": "folder",
    "open-mode": None,
}
# Lightning's SLURMEnvironment treats jobs with these names as interactive and ignores SLURM.
_INTERACTIVE_NAMES = {"bash", "interactive"}


@dataclass(frozen=True)
class JobSpec:
    """Resources and scheduling of a job (or of every member of a sweep).

    timeout_min is whole minutes. signal_delay_s is how long before the time limit the job
    gets USR2 to checkpoint and requeue. sbatch holds extra `#SBATCH --key=value` lines
    (e.g. {"qos": "high", "constraint": "a100"}); setup, shell lines run before the job on
    SLURM. folder is where submitit keeps pickles and
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
    # Shell lines run before the job's command on SLURM (`module load cuda/12.4`, `source env/bin/activate`)
    setup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # from_dict checks types; this also catches specs built directly in Python.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
                raise ConfigError(
                    f"job.{f.name} must be an int, got {value!r} ({type(value).__name__})"
                    + (" (whole minutes: SLURM's --time has no fractions)" if f.name == "timeout_min" else "")
                )
        check_name(self.name, "job.name")
        if self.name in _INTERACTIVE_NAMES:
            raise ConfigError(
                f"job.name {self.name!r} is reserved: Lightning treats jobs named "
                f"{' or '.join(sorted(_INTERACTIVE_NAMES))} as interactive shells"
            )
        if self.partition is not None:
            check_name(self.partition, "job.partition")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ConfigError(
                f"job.signal_delay_s = {self.signal_delay_s} must be shorter than "
                f"the time limit ({self.timeout_min} min = {self.timeout_min * 60} s)"
            )
        for key, value in self.sbatch.items():
            _check_sbatch_item(key, value)
        for line in self.setup:
            if not isinstance(line, str) or "\n" in line or not line.strip():
                raise ConfigError(f"job.setup: each item is one non-empty shell line, got {line!r}")


def check_name(value: Any, what: str, *, path: bool = False) -> str:
    """`value` if it is a safe name (path=True: a path component, which may also hold = ,)."""
    pattern, allowed = (SAFE_PATH_NAME, ". _ - + = ,") if path else (SAFE_NAME, ". _ - +")
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{what} = {value!r} is not a safe name: use letters, digits and {allowed} "
            f"only, starting with a letter, digit or _ (no spaces, path separators "
            f"or shell metacharacters)"
        )
    return value


def _check_sbatch_item(key: Any, value: Any) -> None:
    name = str(key).replace("_", "-")
    if name in _SPEC_KEYS:
        owner = _SPEC_KEYS[name]
        raise ConfigError(
            f"job.sbatch key '{key}' is set by the spec itself"
            + (f"; use job.{owner}" if owner else " (submitit needs it)")
        )
    if name not in SBATCH_OPTIONS:
        close = difflib.get_close_matches(name, sorted(SBATCH_OPTIONS), n=1)
        raise ConfigError(
            f"unknown sbatch key '{key}' in job.sbatch"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + "; see `man sbatch` for the long options"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"job.sbatch.{key} must be a string or an int, got {value!r}")
    if isinstance(value, str) and (not value or _UNSAFE_VALUE.search(value)):
        raise ConfigError(
            f"job.sbatch.{key} = {value!r} is empty or has a character that is unsafe "
            f"in a batch script (newline, quote, backslash, $, `, ;, < or >)"
        )
