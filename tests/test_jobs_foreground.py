"""`workbench run` (one job or sweep member in the foreground) and `workbench jobs sbatch` (a
script that runs members with it): the same results as `workbench jobs sweep`, recorded so that
`jobs status` and `collect` see them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_cli
from tests.test_jobs import write_config
from workbench.store import open_dataset


def _losses(run_dir: Path) -> np.ndarray:
    return open_dataset(run_dir / "metrics.nc")["loss"].values


@pytest.mark.slow
def test_foreground_member_equals_the_swept_one_and_is_recorded(tmp_path, monkeypatch):
    config = write_config(tmp_path, "fg", steps=20)
    grid = ["--grid", "train.seed=0,1"]
    swept = run_cli("jobs", "sweep", str(config), *grid, "--executor", "debug", "--set", "experiment=swept", "--json")
    assert swept.returncode == 0, swept.stderr
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # as an array task would have it
    ran = run_cli("run", str(config), *grid, "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "completed" and Path(result["run_dir"]).name == "001_seed=1"
    assert np.array_equal(_losses(Path(result["run_dir"])), _losses(tmp_path / "runs" / "swept" / "001_seed=1"))

    first = run_cli("run", str(config), *grid, "--member", "0", "--json")
    assert first.returncode == 0, first.stderr
    status = json.loads(run_cli("jobs", "status", str(tmp_path / "runs" / "fg"), "--json").stdout)
    assert [(m["run_id"], m["state"], m["executor"]) for m in status] == [
        ("001_seed=1", "done", "foreground"), ("000_seed=0", "done", "foreground")]  # fmt: skip
    collected = run_cli("jobs", "collect", str(tmp_path / "runs" / "fg"), "--json")
    assert collected.returncode == 0 and json.loads(collected.stdout)["dims"]["seed"] == 2

    assert_clean_error(run_cli("run", str(config), *grid, "--member", "2"), "--member 2: the grid has members 0..1")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert_clean_error(run_cli("run", str(config), *grid), "--grid makes 2 members: say which with --member")


def test_sbatch_script_runs_members_with_workbench_run(tmp_path):
    config = write_config(tmp_path, "sb", steps=20)
    out = tmp_path / "sweep.sbatch"
    made = run_cli("jobs", "sbatch", str(config), "--grid", "train.seed=0,1,2", "--set", "job.setup=[module load x]",
                   "--set", "job.sbatch.qos=high", "--out", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    script = out.read_text()
    assert "#SBATCH --array=0-2%16" in script and "#SBATCH --qos=high" in script
    assert "\nmodule load x\n" in script and script.index("module load x") < script.index("srun ")
    assert " -m workbench.cli run " in script and "--grid train.seed=0,1,2" in script
    assert "--signal" not in script  # nothing in a foreground run catches USR2
    assert (tmp_path / "runs" / "sb" / "slurm").is_dir()  # SLURM opens --output before the script runs


@pytest.mark.slurm
@pytest.mark.slow
def test_a_users_sbatch_array_on_slurm_matches_jobs_sweep(tmp_path):
    from tests.test_jobs_slurm import require_slurm

    require_slurm()
    config = write_config(tmp_path, "arr", steps=20)
    grid = ["--grid", "train.seed=0,1"]
    out = tmp_path / "arr.sbatch"
    assert run_cli("jobs", "sbatch", str(config), *grid, "--out", str(out)).returncode == 0
    submitted = subprocess.run(["sbatch", "--parsable", str(out)], capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    swept = run_cli("jobs", "sweep", str(config), *grid, "--executor", "debug", "--set", "experiment=ref", "--json")
    assert swept.returncode == 0, swept.stderr
    sweep_dir = tmp_path / "runs" / "arr"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = run_cli("jobs", "status", str(sweep_dir), "--json")
        states = [m["state"] for m in json.loads(listed.stdout)] if listed.returncode == 0 else []
        if len(states) == 2 and all(s in ("done", "failed") for s in states):
            break
        time.sleep(2)
    assert states == ["done", "done"], listed.stdout + "".join(p.read_text() for p in (sweep_dir / "slurm").glob("*"))
    for run_id in ("000_seed=0", "001_seed=1"):
        assert np.array_equal(_losses(sweep_dir / run_id), _losses(tmp_path / "runs" / "ref" / run_id))
    members = json.loads(run_cli("jobs", "status", str(sweep_dir), "--json").stdout)
    job = submitted.stdout.strip().split(";")[0]
    assert sorted(m["job_id"] for m in members) == [f"{job}_0", f"{job}_1"]


@pytest.mark.slow
def test_two_node_ddp_through_workbench_run_equals_one_process(tmp_path):
    """Two "nodes" (torchrun --nnodes 2 on localhost, the rendezvous a SLURM allocation would give),
    one process each, through `workbench run`: the final weights equal one process's on the full
    batch (float32 summation order aside), and the run is recorded once, by rank 0."""
    import socket
    import sys

    import torch

    from jobs.entrypoints import load_job_config
    from workbench.store import RunDir
    from workbench.train import load_weights, train

    config = write_config(tmp_path, "nodes", steps=30)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-m",
                "workbench.cli",
                "run",
                str(config),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert [r["world_size"] for r in results] == [2, 2]

    reference = load_job_config(config)
    run = RunDir(tmp_path / "reference", "nodes", "single")
    run.checkpoints.mkdir(parents=True)
    train(reference.model, reference.train, run, kind=reference.kind)
    two, one = load_weights(RunDir(tmp_path / "runs", "nodes", Path(results[0]["run_dir"]).name)), load_weights(run)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)
    status = json.loads(run_cli("jobs", "status", str(tmp_path / "runs" / "nodes"), "--json").stdout)
    assert [(m["state"], m["executor"]) for m in status] == [("done", "foreground")]
