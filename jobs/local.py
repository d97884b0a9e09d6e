"""The local executor's machinery: controller processes, their output, and the local queue.

submitit's LocalExecutor starts one controller process per job, at once, in the caller's
process group. Three consequences are handled here:
- the controllers inherit our stdout and stderr (`controller_output` points them at a log),
- a Ctrl-C at the terminal reaches every process of the foreground group, so a user who stops
  `--wait` would also kill the jobs (`own_session` starts controllers in a session of their own),
- nothing bounds how many run at once (the queue: at most `local_limit` members of a sweep
  train together; the others wait in the manifest as queued records until a slot frees).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
import types
from pathlib import Path

from workbench.jobspec import JobSpec
from workbench.locks import holder

__all__ = [
    "QUEUE_LOCK",
    "controller_alive",
    "controller_output",
    "local_limit",
    "own_session",
    "queue_holder",
    "start_queue",
    "tasks_alive",
]

QUEUE_LOCK = ".local_queue.lock"


def local_limit(spec: JobSpec) -> int:
    """How many members of a sweep may run at once here: job.array_parallelism, and no more
    than this machine's cores allow for the job's tasks × cpus_per_task."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(spec.array_parallelism, cores // (spec.cpus_per_task * spec.tasks_per_node)))


@contextlib.contextmanager
def controller_output(path: Path):
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


@contextlib.contextmanager
def own_session():
    """Start submitit's local controllers in a new session (setsid), outside our process group.

    submitit offers no option for it, so its module's view of `subprocess` is swapped, for the
    duration of the submission only, for one whose Popen passes start_new_session=True.
    """
    from submitit.local import local

    shim = types.SimpleNamespace(**vars(subprocess))
    shim.Popen = functools.partial(subprocess.Popen, start_new_session=True)
    saved = local.subprocess
    local.subprocess = shim
    try:
        yield
    finally:
        local.subprocess = saved


def controller_alive(job_id: str, folder: str) -> bool:
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


def tasks_alive(job_id: str) -> bool:
    """Does a task process of local job `job_id` still run, though its controller may be gone?

    submitit's controller gives each task SUBMITIT_LOCAL_JOB_ID (its own pid) in the
    environment; a task outlives a controller killed with SIGKILL. Linux only (reads /proc).
    """
    wanted = f"SUBMITIT_LOCAL_JOB_ID={job_id}".encode()
    for proc in Path("/proc").iterdir() if Path("/proc/self").exists() else ():
        if not proc.name.isdigit():
            continue
        try:
            if b"submitit.core._submit" not in (proc / "cmdline").read_bytes():
                continue
            if wanted in (proc / "environ").read_bytes().split(b"\0"):
                return True
        except OSError:  # ended meanwhile, or another user's process
            continue
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def queue_holder(sweep_dir: Path) -> str | None:
    """The live queue process of this sweep ("pid 12 on node1 (...)"), or None."""
    return holder(Path(sweep_dir) / QUEUE_LOCK)


def start_queue(sweep_dir: Path, timeout_s: float = 30.0) -> None:
    """Start the queue process of a sweep (`python -m jobs.local_queue`) in its own session.

    Returns once it holds its lock, so that a status taken right after submission already
    sees the queued members as pending.
    """
    sweep_dir = Path(sweep_dir)
    with open(sweep_dir / "local_queue.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs.local_queue", str(sweep_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    deadline = time.monotonic() + timeout_s
    while queue_holder(sweep_dir) is None:
        if process.poll() is not None:
            raise RuntimeError(f"the local queue of {sweep_dir} exited at once; see {sweep_dir / 'local_queue.log'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local queue of {sweep_dir} did not start within {timeout_s:.0f} s")
        time.sleep(0.02)
