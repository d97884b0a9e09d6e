"""The jobs layer against a real SLURM (the one-node cluster that .ci/run starts).

Nothing is mocked: jobs go through sbatch/srun, states come from squeue, requeues are real
`scontrol requeue` and signals. Start a cluster with `sudo jobs/slurm/local_cluster.sh start`.
The tests skip when `sinfo` is absent; with WORKBENCH_REQUIRE_SLURM=1 (set by .ci/run) a
missing or unreachable controller fails them instead.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_jobs import check_grid_sweep, job_output, submit_failing_pair, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@functools.cache  # once per session: an unreachable controller takes ~10 s to say so
def _slurm_unavailable() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM here: `sinfo` is not on PATH (start one with jobs/slurm/local_cluster.sh start)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    states = probe.stdout.split()
    if probe.returncode != 0 or not states:
        return f"SLURM controller not reachable: {probe.stderr.strip() or 'no nodes'}"
    if not any(state.rstrip("*") in ("idle", "mix", "alloc") for state in states):
        return f"no usable SLURM node (states: {', '.join(states)})"
    return None


def require_slurm() -> None:
    """Skip without a usable SLURM controller (the reason names what is missing); under CI's
    WORKBENCH_REQUIRE_SLURM=1 a missing controller is a failure instead."""
    reason = _slurm_unavailable()
    if reason:
        if os.environ.get("WORKBENCH_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def slurm():
    require_slurm()


def test_sweep_runs_as_one_sbatch_array_and_collects_the_full_grid(tmp_path):
    sweep, members = check_grid_sweep(tmp_path, "slurm")
    array_ids = {m["job_id"].split("_")[0] for m in members}
    assert len(array_ids) == 1  # one sbatch --array
    assert sorted(m["job_id"].split("_")[1] for m in members) == ["0", "1", "2", "3"]

    # submitit's own state query (sacct) answers through the squeue-based stand-in.
    sacct = shutil.which("sacct")
    if sacct and Path(sacct).resolve() == (Path(__file__).parents[1] / "jobs" / "slurm" / "sacct").resolve():
        from submitit.slurm.slurm import SlurmJob

        job = SlurmJob(folder=sweep / "submitit" / "%j", job_id=members[0]["job_id"])
        assert job.watcher.get_state(job.job_id, mode="force") == "COMPLETED"


def test_failed_member_is_reported_with_its_log_and_resubmitted_alone(tmp_path):
    sweeps, sweep_dir, good, bad = submit_failing_pair(tmp_path, "slurm")
    assert sweeps.collect(sweep_dir)["final_loss"].sel(lr=1e-2).notnull()

    good_metrics = Path(good.run_dir) / "metrics.nc"
    mtime = good_metrics.stat().st_mtime_ns
    resubmitted = run_cli("jobs", "resubmit", str(sweep_dir), "--wait", "--json")
    rerun = json.loads(resubmitted.stdout)
    assert [m["run_id"] for m in rerun] == [bad.run_id], rerun
    assert rerun[0]["job_id"] != bad.job_id and rerun[0]["attempt"] == 2
    assert rerun[0]["state"] == "failed" and resubmitted.returncode == 1  # diverges again
    after = {m.run_id: m for m in sweeps.status(sweep_dir)}
    assert after[good.run_id].job_id == good.job_id and after[good.run_id].state == "done"
    assert good_metrics.stat().st_mtime_ns == mtime


def _steps_done(metrics: Path) -> int:
    from workbench.errors import InputError
    from workbench.store import open_dataset

    try:
        return int(open_dataset(metrics)["steps_done"].values)
    except InputError:  # not written yet
        return 0


def _wait_for_progress(metrics: Path, beyond: int, timeout_s: float = 180) -> int:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if metrics.is_file() and (step := _steps_done(metrics)) > beyond:
            return step
        time.sleep(0.5)
    raise TimeoutError(f"{metrics}: no checkpoint beyond step {beyond} after {timeout_s} s")


def test_preempted_and_requeued_job_resumes_to_the_uninterrupted_weights(tmp_path):
    """Two interruptions of one job: USR2 (submitit checkpoints and requeues itself), then an
    admin `scontrol requeue` (SLURM kills and requeues it). Each restart resumes last.ckpt."""
    import torch

    from jobs import sweep as sweeps
    from jobs.entrypoints import load_job_config
    from workbench.store import RunDir
    from workbench.train import load_weights, train

    config = write_config(tmp_path, "requeue", steps=200)
    [member] = sweeps.expand_grid(config, {}, ["model.step_time_s=0.08"])
    [record] = sweeps.submit([member], "slurm")
    job_id = record["job_id"]
    metrics = member.config.run_dir.metrics_path

    step = _wait_for_progress(metrics, beyond=10)
    subprocess.run(["scancel", "--signal", "USR2", job_id], check=True)
    step = _wait_for_progress(metrics, beyond=step + 10)  # restarted and past its checkpoint
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    [final] = sweeps.wait(tmp_path / "runs" / "requeue", timeout_s=300)

    output = job_output(final)
    assert final.state == "done", (final.detail, output[-3000:])
    assert "Calling checkpoint method" in output and "Requeued job" in output  # the USR2 path
    assert output.count("Starting with JobEnvironment") >= 3  # first start + two restarts
    assert output.count("Restoring states from the checkpoint") >= 2

    reference = load_job_config(config, ["model.step_time_s=0"])
    run = RunDir(tmp_path / "reference", "requeue", "whole")
    run.checkpoints.mkdir(parents=True)
    train(reference.model, reference.train, run)
    resumed, whole = load_weights(member.config.run_dir), load_weights(run)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_two_task_ddp_on_the_node_matches_single_process(tmp_path):
    # srun starts the 2 tasks; Lightning's SLURMEnvironment reads their ranks from SLURM_*.
    from tests.test_jobs import check_ddp_matches_single_process

    check_ddp_matches_single_process(tmp_path, "slurm")


def test_a_job_killed_at_its_time_limit_is_reported_as_such(tmp_path):
    """No requeue allowed (max_num_timeout 0): at the time-limit warning (USR2) submitit declines
    to requeue and ends the job, and status names the time limit instead of submitit's exception.
    (A job without the handler is named from squeue's TIMEOUT state or slurmstepd's "DUE TO TIME
    LIMIT"; tests/test_jobs.py checks those words.)"""
    from jobs import sweep as sweeps

    config = write_config(tmp_path, "limit", steps=100000)
    overrides = ["model.step_time_s=0.05", "job.timeout_min=1", "job.signal_delay_s=20", "job.max_num_timeout=0"]
    [member] = sweeps.expand_grid(config, {}, overrides)
    sweeps.submit([member], "slurm")
    [final] = sweeps.wait(tmp_path / "runs" / "limit", timeout_s=400, poll_s=2)
    assert final.state == "failed", final
    assert final.detail.startswith("killed at its time limit (TIMEOUT)"), (final.detail, job_output(final)[-2000:])
