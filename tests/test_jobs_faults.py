"""The jobs layer under faults and bad input, one test per failure a fault probe found.

Most use the debug executor (training runs in the test process: no controllers, no sleeps);
the local-executor ones are marked slow. The randomised suite is tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error, run_cli
from tests.test_faults import with_ctrl_c
from tests.test_jobs import write_config
from workbench.errors import InputError


def manifest_lines(sweep_dir: Path) -> list[str]:
    return (sweep_dir / "manifest.jsonl").read_text().splitlines()


def debug_sweep(tmp_path: Path, *overrides: str, experiment: str = "exp", steps: int = 6):
    from jobs import sweep

    config = write_config(tmp_path, experiment, steps=steps)
    members = sweep.expand_grid(config, {"model.lr": ["1e-2", "3e-2"]}, list(overrides))
    return sweep, members, sweep.submit(members, "debug")


def test_every_run_dir_is_created_and_a_clashing_second_sweep_is_refused_before_submission(tmp_path):
    sweep, members, records = debug_sweep(tmp_path)
    sweep_dir = tmp_path / "runs" / "exp"
    for member in members:  # every member's config, not only the last one's
        assert json.loads((member.config.run_dir.config_path).read_text())["model"]["lr"] == member.config.model.lr
    before = manifest_lines(sweep_dir)
    other = sweep.expand_grid(write_config(tmp_path, "exp", steps=6), {"model.lr": ["1e-2", "3e-2"]}, ["model.width=8"])
    with pytest.raises(InputError, match="already holds a different config"):
        sweep.submit(other, "debug")
    assert manifest_lines(sweep_dir) == before  # nothing submitted, nothing recorded
    assert [m.state for m in sweep.status(sweep_dir)] == ["done", "done"]


def test_a_member_still_running_is_not_started_a_second_time(tmp_path):
    from jobs import sweep
    from workbench.locks import writer_lock

    config = write_config(tmp_path, "busy", steps=6)
    members = sweep.expand_grid(config, {"model.lr": ["1e-2"]})
    run = members[0].config.run_dir
    run.path.mkdir(parents=True)
    with (
        writer_lock(run.writer_lock, description="a trainer that outlived its controller"),
        pytest.raises(InputError, match="being written by .*outlived its controller"),
    ):
        sweep.submit(members, "debug")
    assert not (tmp_path / "runs" / "busy" / "manifest.jsonl").exists()


def test_a_torn_manifest_line_is_skipped_and_every_command_still_works(tmp_path):
    sweep, members, records = debug_sweep(tmp_path, experiment="torn")
    sweep_dir = tmp_path / "runs" / "torn"
    with open(sweep_dir / "manifest.jsonl", "a") as f:
        f.write('{"run_id": "000_lr=0.01", "executor": "lo')  # a writer killed mid-line
    status = run_cli("jobs", "status", str(sweep_dir), "--json")
    assert status.returncode == 0, status.stderr
    assert "line 5 is torn" in status.stderr and "Traceback" not in status.stderr
    assert [row["state"] for row in json.loads(status.stdout)] == ["done", "done"]
    resubmit = run_cli("jobs", "resubmit", str(sweep_dir), "--executor", "debug")
    assert resubmit.returncode == 0 and "nothing to resubmit" in resubmit.stdout, resubmit.stderr
    collect = run_cli("jobs", "collect", str(sweep_dir), "--json")
    assert collect.returncode == 0 and json.loads(collect.stdout)["done"] == 2, collect.stderr
    # A new record after the torn one starts on a line of its own and is read.
    sweep.submit(sweep.expand_grid(write_config(tmp_path, "torn", steps=6), {"model.lr": ["5e-2"]}), "debug")
    assert len(sweep.status(sweep_dir)) == 3


def test_a_member_whose_job_record_was_lost_is_known_from_its_run_directory(tmp_path):
    """The job record of the last member torn away: its intent record and run directory remain."""
    sweep, members, records = debug_sweep(tmp_path, experiment="lost")
    sweep_dir = tmp_path / "runs" / "lost"
    path = sweep_dir / "manifest.jsonl"
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    path.write_text(text[: len(text) - len(last) // 2 - 1])  # cut the last line in half
    with pytest.warns(UserWarning, match="torn"):
        states = {m.run_id: (m.state, m.queued) for m in sweep.status(sweep_dir)}
    assert states == {"000_lr=0.01": ("done", False), "001_lr=0.03": ("done", True)}


def test_dead_writers_temporaries_are_removed_and_live_ones_kept(tmp_path):
    from workbench.atomic import _HOST, atomic_write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".metrics.nc.{_HOST}.{dead.pid}.abc.tmp"
    live = tmp_path / f".metrics.nc.{_HOST}.{os.getpid()}.def.tmp"
    other = tmp_path / ".metrics.nc.otherhost.1.ghi.tmp"  # another node's writer: not ours to judge
    for path in (stale, live, other):
        path.write_text("half")
    atomic_write_text(tmp_path / "metrics.nc", "whole")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "metrics.nc").read_text() == "whole"


def test_a_figure_that_fails_to_render_leaves_the_old_file(tmp_path):
    from workbench.atomic import atomic_savefig

    class Broken:
        def savefig(self, buffer, **kwargs):
            buffer.write(b"\x89PNG half")
            raise RuntimeError("renderer died")

    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_savefig(Broken(), path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_unwritable_outputs_exit_2_before_any_work(tmp_path):
    config = write_config(tmp_path, "ro")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    bad_root = ["--set", f"root={blocker / 'runs'}"]
    for extra in ([], ["--dry-run"]):
        result = run_cli("jobs", "submit", str(config), "--executor", "local", *bad_root, *extra)
        assert_clean_error(result, "experiment directory", "a_file")
    result = run_cli("jobs", "submit", str(config), "--executor", "debug")
    assert result.returncode == 0, result.stderr
    sweep_dir = tmp_path / "runs" / "ro"
    for out, fragment in (("/proc/sweep.nc", "cannot be written"), (str(tmp_path / "s.csv"), "must end in .nc"),
                          (str(blocker / "s.nc"), "cannot be written")):  # fmt: skip
        assert_clean_error(run_cli("jobs", "collect", str(sweep_dir), "--out", out), "--out", fragment)
    assert not (tmp_path / "s.csv").exists()


def test_a_write_refused_by_the_system_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from jobs import sweep
    from workbench.cli import main
    from workbench.store import atomic_write_json

    with pytest.raises(InputError, match="cannot write /proc/x.json"):
        atomic_write_json("/proc/x.json", {})

    # An OSError naming a file that escapes a handler (a disk that went read-only mid-command)
    # is reported as bad input: one line, exit 2.
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(tmp_path / "manifest.jsonl"))

    monkeypatch.setattr(sweep, "status", refuse)
    assert main(["jobs", "status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"workbench: error: {tmp_path / 'manifest.jsonl'}: Read-only file system"


def test_local_limit_fits_the_machine():
    from jobs.local import local_limit
    from workbench.jobspec import JobSpec

    cores = len(os.sched_getaffinity(0))
    assert local_limit(JobSpec()) == min(16, cores)
    assert local_limit(JobSpec(array_parallelism=1)) == 1
    assert local_limit(JobSpec(cpus_per_task=cores * 4)) == 1  # never zero


@pytest.mark.slow
def test_a_local_sweep_runs_at_most_its_limit_at_once(tmp_path):
    from jobs import sweep
    from workbench.locks import holder

    config = write_config(tmp_path, "limit", steps=20)
    members = sweep.expand_grid(config, {"train.seed": ["0", "1", "2"]}, ["job.array_parallelism=1"])
    records = sweep.submit(members, "local")
    assert sum(not r.get("queued") for r in records) == 1  # one started, two queued
    sweep_dir = tmp_path / "runs" / "limit"
    most = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        current = sweep.status(sweep_dir)
        most = max(most, sum(holder(m.config.run_dir.writer_lock) is not None for m in members))
        if all(m.state in ("done", "failed") for m in current):
            break
        assert sum(m.state == "pending" and m.queued for m in current) <= 2
        time.sleep(0.2)
    assert [m.state for m in current] == ["done"] * 3, current
    assert most == 1


def hold_interval(path: str, seconds: float) -> tuple[float, float]:
    """A run_array member: note when it ran (start, end) in `path`."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    Path(path).write_text(f"{start} {end}")
    return start, end


def test_an_experiment_array_on_the_local_executor_runs_at_most_its_limit_at_once(tmp_path):
    """run_array (the experiment runner's arrays: robustness, brightness, make-data, MEDIDA) starts
    a local member only when fewer than job.array_parallelism are running."""
    from jobs.sweep import run_array
    from workbench.jobspec import JobSpec

    items = [(str(tmp_path / f"member{k}"), 1.0) for k in range(4)]
    name, results = run_array(hold_interval, items, JobSpec(array_parallelism=2), "local", tmp_path / "jobs" / "%j")
    assert name == "local" and len(results) == 4
    for k, (start, _) in enumerate(results):
        # while member k ran, at most 2 members (itself included) ran
        assert sum(s <= start < e for s, e in results) <= 2, (k, results)
    assert max(sum(s <= t < e for s, e in results) for t, _ in results) == 2  # the limit is used


@pytest.mark.slow
def test_ctrl_c_in_a_debug_sweep_exits_130_and_records_every_member(tmp_path):
    config = write_config(tmp_path, "int", steps=4000)
    command = [sys.executable, "-m", "workbench.cli", "jobs", "sweep", str(config), "--executor", "debug",
               "--grid", "model.lr=1e-2,3e-2", "--set", "train.checkpoint_every=50"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_ctrl_c)  # fmt: skip
    ckpt = tmp_path / "runs" / "int" / "000_lr=0.01" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    from jobs.sweep import status

    states = {m.run_id: (m.state, m.detail) for m in status(tmp_path / "runs" / "int")}
    assert states == {
        "000_lr=0.01": ("failed", "interrupted (Ctrl-C)"),
        "001_lr=0.03": ("failed", "not started: the sweep was interrupted (Ctrl-C)"),
    }


def test_a_terminal_that_cannot_encode_the_output_gets_it_escaped():
    """LANG=C or a latin-1 console: the finished result is printed escaped, not lost to a crash."""
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "diffusion", "schedule", "--steps", "10"],
                            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"\\u1fb1_0 = 0.999150" in result.stdout  # ᾱ_0, escaped
