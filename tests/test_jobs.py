"""The jobs layer without a cluster: specs, batch scripts, bad input, and real local-executor runs.

Local-executor tests run real submitit controllers and training processes on this machine
(each pays ~10 s of torch + Lightning imports), so they are few and each proves a whole path:
a sweep collected into its grid, a failure rerun alone, a timeout requeue that resumes exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.submit import JobSpec, resolve_executor, sbatch_script, slurm_parameters
from tests.conftest import assert_clean_error, run_cli
from workbench.config import from_dict
from workbench.errors import ConfigError, InputError

CONFIG = """\
kind: mlp_regression
experiment: {experiment}
root: {root}
model: {{width: 16, n_samples: 128, batch_size: 16, lr: 1.0e-2}}
train: {{max_steps: {steps}, checkpoint_every: 10, seed: 0}}
job: {{name: wbtest, timeout_min: 10, cpus_per_task: 1}}
"""


def write_config(tmp_path: Path, experiment: str = "exp", steps: int = 30) -> Path:
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(CONFIG.format(experiment=experiment, root=tmp_path / "runs", steps=steps))
    return path


def submit_failing_pair(tmp_path: Path, executor: str):
    """A two-member sweep where one member diverges; checks how the failure is reported.

    SGD at lr=1e3 diverges: the harness raises NonFiniteLossError in that member only.
    Returns (the sweep module, the sweep directory, the good member, the failed member).
    """
    from jobs import sweep as sweeps

    config = write_config(tmp_path, "fail")
    members = sweeps.expand_grid(
        config, {"model.lr": ["1e-2", "1e3"]}, ["model.optimizer=sgd", "train.checkpoint_every=2"]
    )
    sweeps.submit(members, executor)
    sweep_dir = tmp_path / "runs" / "fail"
    first = {m.run_id: m for m in sweeps.wait(sweep_dir, timeout_s=300)}
    good, bad = first["000_lr=0.01"], first["001_lr=1000.0"]
    assert good.state == "done" and bad.state == "failed", (good, bad)
    assert "NonFiniteLossError" in bad.detail
    assert "NonFiniteLossError" in Path(bad.log).read_text()  # the reported log holds the traceback
    status = run_cli("jobs", "status", str(sweep_dir), "--json")
    rows = {row["run_id"]: row for row in json.loads(status.stdout)}
    assert rows[bad.run_id]["state"] == "failed" and rows[bad.run_id]["log"] == bad.log
    return sweeps, sweep_dir, good, bad


def job_output(member) -> str:
    """Both log streams of a job (Lightning logs to one, submitit to the other)."""
    return "".join(Path(p).read_text() for p in (member.stdout, member.log) if p and Path(p).exists())


# ----------------------------------------------------------------------- specs and scripts


GPU_SCRIPT = """\
#!/bin/bash

# Parameters
#SBATCH --array=0-4%3
#SBATCH --cpus-per-task=8
#SBATCH --error=/shared/runs/lm/submitit/%A_%a/%A_%a_0_log.err
#SBATCH --gpus-per-node=4
#SBATCH --job-name=train_lm
#SBATCH --mem=64G
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=/shared/runs/lm/submitit/%A_%a/%A_%a_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=high
#SBATCH --signal=USR2@120
#SBATCH --time=240
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /shared/runs/lm/submitit/%A_%a/%A_%a_%t_log.out --error /shared/runs/lm/submitit/%A_%a/%A_%a_%t_log.err python -u -m submitit.core._submit /shared/runs/lm/submitit/%j
"""


def test_sbatch_lines_for_a_gpu_array_spec():
    spec = JobSpec(name="train_lm", partition="gpu", nodes=2, gpus_per_node=4, tasks_per_node=4,
                   cpus_per_task=8, mem_gb=64, timeout_min=240, array_parallelism=3, signal_delay_s=120,
                   sbatch={"qos": "high"})  # fmt: skip
    script = sbatch_script(
        spec,
        "/shared/runs/lm/submitit/%j",
        array_size=5,
        command="python -u -m submitit.core._submit /shared/runs/lm/submitit/%j",
    )
    assert script == GPU_SCRIPT


def test_slurm_parameters_map_the_spec():
    params = slurm_parameters(JobSpec(mem_gb=3.5, timeout_min=5))
    assert params["mem"] == "3584M" and params["time"] == 5
    assert "gpus_per_node" not in params and "partition" not in params  # unset: cluster defaults


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"timeout_min": 1.5}, "timeout_min"),
        ({"timeout_min": 0}, "timeout_min"),
        ({"sbatch": {"qoss": "high"}}, "did you mean 'qos'"),
        ({"sbatch": {"time": "10"}}, "use job.timeout_min"),
        ({"sbatch": {"comment": "a\n#SBATCH --x"}}, "unsafe"),
        ({"name": "a;rm -rf"}, "job.name"),
        ({"partition": "gpu $(x)"}, "job.partition"),
        ({"name": "bash"}, "interactive"),
        ({"timeout_min": 1, "signal_delay_s": 60}, "signal_delay_s"),
    ],
)
def test_jobspec_rejects(data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("$", r"\$")):
        from_dict(JobSpec, data, source="test")


def test_jobspec_rejects_float_minutes_built_in_python():
    with pytest.raises(ConfigError, match="whole minutes"):
        JobSpec(timeout_min=1.5)


def test_auto_executor_follows_sbatch_on_path(tmp_path, monkeypatch):
    # Stand-in cluster commands (as submitit's own tests do); the real SLURM is tested in
    # test_jobs_slurm.py.
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_executor("auto") == "local"
    with pytest.raises(InputError, match="needs sbatch"):
        resolve_executor("slurm")
    for tool in ("sbatch", "srun"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    sinfo = tmp_path / "sinfo"
    sinfo.write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
    sinfo.chmod(0o755)
    assert resolve_executor("auto") == "local"  # client installed, controller down: run locally
    sinfo.write_text("#!/bin/sh\necho debug\n")
    assert resolve_executor("auto") == "slurm"
    with pytest.raises(InputError, match="unknown executor"):
        resolve_executor("kubernetes")


# ------------------------------------------------------------------------------ bad input


def test_bad_input_exits_2_with_one_line(tmp_path):
    good = write_config(tmp_path)
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text(good.read_text().replace("width: 16", "widht: 16"))
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text(good.read_text().replace("max_steps: 30", "max_steps: many"))
    cases = [
        (["jobs", "submit", str(unknown_key)], ["unknown key 'model.widht'", "did you mean 'width'"]),
        (["jobs", "submit", str(wrong_type)], ["train.max_steps", "must be int"]),
        (["jobs", "submit", str(tmp_path / "missing.yaml")], ["not found", "missing.yaml"]),
        (["jobs", "submit", str(good), "--set", "model.lr"], ["must look like key=value"]),
        (["jobs", "submit", str(good), "--set", "model.nope=1"], ["unknown key 'model.nope'"]),
        (["jobs", "submit", str(good), "--set", "job.timeout_min=2.5"], ["job.timeout_min", "must be int"]),
        (["jobs", "submit", str(good), "--set", "job.sbatch={qoss: x}"], ["unknown sbatch key 'qoss'"]),
        (["jobs", "sweep", str(good), "--grid", "model.lr"], ["--grid"]),
        (["jobs", "sweep", str(good), "--grid", "model.lr=0.1,-1"], ["model.lr", "out of range"]),
        (["jobs", "status", str(tmp_path / "nowhere")], ["no sweep at"]),
    ]
    for args, fragments in cases:
        assert_clean_error(run_cli(*args), *fragments)
    assert not (tmp_path / "runs").exists()  # nothing was submitted or written


def test_dry_run_prints_the_members_and_script(tmp_path):
    config = write_config(tmp_path)
    result = run_cli(
        "jobs", "sweep", str(config), "--grid", "model.lr=1e-3,1e-2", "--grid", "train.seed=0,1", "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [m["params"] for m in payload["members"]] == [
        {"lr": 0.001, "seed": 0},
        {"lr": 0.001, "seed": 1},
        {"lr": 0.01, "seed": 0},
        {"lr": 0.01, "seed": 1},
    ]
    assert "#SBATCH --array=0-3%4" in payload["sbatch_script"]
    assert not (tmp_path / "runs").exists()


def test_debug_executor_runs_in_process_and_reports_failure(tmp_path):
    config = write_config(tmp_path, "dbg", steps=6)
    ok = run_cli("jobs", "submit", str(config), "--executor", "debug", "--json")
    assert ok.returncode == 0, ok.stderr
    payload = json.loads(ok.stdout)
    assert payload["state"] == "done" and Path(payload["run_dir"], "model.pt").is_file()

    bad = run_cli("jobs", "submit", str(config), "--executor", "debug", "--wait", "--json", "--set",
                  "model.optimizer=sgd", "--set", "model.lr=1e3", "--set", "train.max_steps=30")  # fmt: skip
    assert bad.returncode == 1  # the job failed; the command itself worked and says so
    payload = json.loads(bad.stdout)
    assert payload["state"] == "failed" and "NonFiniteLossError" in payload["detail"]
    states = {
        row["state"] for row in json.loads(run_cli("jobs", "status", str(tmp_path / "runs" / "dbg"), "--json").stdout)
    }
    assert states == {"done", "failed"}


# --------------------------------------------------------------------- the local executor


def check_grid_sweep(tmp_path: Path, executor: str) -> tuple[Path, list[dict]]:
    """A 2 x 2 sweep through the CLI: every member done, collected into its full grid.
    Returns the sweep directory and the members' status records."""
    from workbench.store import open_dataset

    config = write_config(tmp_path, "grid")
    result = run_cli("jobs", "sweep", str(config), "--executor", executor, "--grid", "model.lr=3e-3,1e-2", "--grid",
                     "train.seed=0,1", "--wait", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    members = json.loads(result.stdout)["members"]
    assert [m["state"] for m in members] == ["done"] * 4, members
    sweep = tmp_path / "runs" / "grid"
    records = [json.loads(line) for line in (sweep / "manifest.jsonl").read_text().splitlines()]
    # One job record per member; on the local executor, members beyond the machine's limit are
    # recorded first as queued (no job), then again when the local queue starts them.
    assert sorted(r["run_id"] for r in records if not r.get("queued")) == sorted(m["run_id"] for m in members)
    collected = run_cli("jobs", "collect", str(sweep), "--json")
    assert collected.returncode == 0, collected.stderr
    assert json.loads(collected.stdout)["dims"] == {"lr": 2, "seed": 2, "step": 30}
    ds = open_dataset(sweep / "sweep.nc")
    assert ds["final_loss"].notnull().all() and (ds["state"] == "done").all()
    assert list(ds["lr"].values) == [3e-3, 1e-2] and list(ds["seed"].values) == [0, 1]
    # provenance: each member's resolved config and where its run came from
    configs = json.loads(ds.attrs["provenance_config"])
    assert sorted(configs) == sorted(m["run_id"] for m in members)
    assert sorted(c["model"]["lr"] for c in configs.values()) == [3e-3, 3e-3, 1e-2, 1e-2]
    origins = json.loads(ds.attrs["provenance_runs"])
    assert sorted(origins) == sorted(configs) and all(o["torch"] and o["host"] for o in origins.values())
    return sweep, members


@pytest.mark.slow
def test_local_sweep_collects_the_full_grid(tmp_path):
    check_grid_sweep(tmp_path, "local")


@pytest.mark.slow
def test_local_failed_member_is_reported_and_resubmitted_alone(tmp_path):
    sweeps, sweep_dir, good, bad = submit_failing_pair(tmp_path, "local")

    ds = sweeps.collect(sweep_dir)
    assert ds["final_loss"].sel(lr=1e-2).notnull() and ds["final_loss"].sel(lr=1e3).isnull()

    good_metrics = Path(good.run_dir) / "metrics.nc"
    mtime = good_metrics.stat().st_mtime_ns
    records = sweeps.resubmit(sweep_dir)
    assert [r["run_id"] for r in records] == [bad.run_id] and records[0]["attempt"] == 2
    second = {m.run_id: m for m in sweeps.wait(sweep_dir, timeout_s=300)}
    assert second[good.run_id].job_id == good.job_id  # untouched
    assert second[bad.run_id].job_id != bad.job_id and second[bad.run_id].attempt == 2
    # The rerun resumed from the last good checkpoint and diverged again, deterministically.
    assert second[bad.run_id].state == "failed"
    assert "Restoring states from the checkpoint" in job_output(second[bad.run_id])
    assert good_metrics.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_local_timeout_requeue_resumes_to_the_uninterrupted_weights(tmp_path):
    """The local controller sends USR2 at timeout - signal_delay_s (here 20 s after each start);
    submitit calls TrainJob.checkpoint and restarts the job, which resumes from last.ckpt."""
    import torch

    from jobs import sweep as sweeps
    from jobs.entrypoints import load_job_config
    from workbench.store import RunDir
    from workbench.train import load_weights, train

    config = write_config(tmp_path, "requeue", steps=200)
    # 0.1 s per step: 20 s of training after 3-10 s of imports, which a signal at 20 s always interrupts.
    overrides = ["model.step_time_s=0.1", "job.signal_delay_s=40", "job.timeout_min=1", "job.max_num_timeout=6"]
    members = sweeps.expand_grid(config, {}, overrides)
    sweeps.submit(members, "local")
    [member] = sweeps.wait(tmp_path / "runs" / "requeue", timeout_s=420)
    output = job_output(member)
    assert member.state == "done", (member.detail, output[-2000:])
    assert "this job is timed-out" in output and "Requeued job" in output
    assert "Restoring states from the checkpoint" in output

    # The same config trained in this process without interruption (no pause: it changes no number).
    reference = load_job_config(config, ["model.step_time_s=0"])
    run = RunDir(tmp_path / "reference", "requeue", "whole")
    run.checkpoints.mkdir(parents=True)
    train(reference.model, reference.train, run)
    resumed = load_weights(RunDir(tmp_path / "runs", "requeue", member.run_id))
    whole = load_weights(run)
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def check_ddp_matches_single_process(tmp_path: Path, executor: str, config: Path | None = None) -> tuple[Path, Path]:
    """2 training processes (gloo), each with half of every global batch, against 1 process.

    The math is the same (DDP averages the two half-batch gradients = the full-batch mean
    gradient); only float32 summation order differs, so weights agree to ~1e-7 (measured
    6e-8 after 30 Adam steps), far below the ~1e-2 a different seed or batch would give.
    `config` is a job config with experiment `ddp` (default: the MLP of write_config). Returns the
    run directories (two processes, one process).
    """
    import pickle

    import torch

    from jobs import sweep as sweeps
    from jobs.entrypoints import load_job_config
    from workbench.store import RunDir, open_dataset
    from workbench.train import load_weights, train

    config = config or write_config(tmp_path, "ddp")
    [member] = sweeps.expand_grid(config, {}, ["job.tasks_per_node=2"])
    [record] = sweeps.submit([member], executor)
    [final] = sweeps.wait(tmp_path / "runs" / "ddp", timeout_s=300)
    assert final.state == "done", (final.detail, job_output(final)[-2000:])
    results = []
    for task in (0, 1):
        path = Path(final.log).parent / f"{record['job_id']}_{task}_result.pkl"
        with open(path, "rb") as f:
            results.append(pickle.load(f)[1])
    assert [r["world_size"] for r in results] == [2, 2]

    reference = load_job_config(config)
    run = RunDir(tmp_path / "reference", "ddp", "single")
    run.checkpoints.mkdir(parents=True)
    train(reference.model, reference.train, run, kind=reference.kind)
    ddp, single = load_weights(member.config.run_dir), load_weights(run)
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        torch.tensor(open_dataset(member.config.run_dir.metrics_path)["loss"].values),
        torch.tensor(open_dataset(run.metrics_path)["loss"].values),
        rtol=1e-5,
        atol=1e-6,
    )
    return Path(member.config.run_dir.path), Path(run.path)


@pytest.mark.slow
def test_local_two_task_ddp_matches_single_process(tmp_path):
    check_ddp_matches_single_process(tmp_path, "local")


@pytest.mark.slow
def test_bench_jobs_quick_measures_overheads_and_collect(tmp_path, monkeypatch):
    from jobs import bench

    monkeypatch.chdir(tmp_path)  # the benchmark's job folder lives in the current directory
    result = bench.run(quick=True)
    assert result["local"]["first_line_s"] > 0 and result["collect"]["members"] == 32
    assert result["collect"]["same_values"]
    text = bench.format_result(result)
    assert "local: submit -> first line" in text and "collect, 32 members" in text
    assert not list(tmp_path.iterdir())  # its temporary folder is gone


@pytest.mark.slow
def test_demo_runs_its_ladder_as_local_jobs_with_the_same_numbers(tmp_path):
    from scaling.reconcile import reconcile_porian

    result = run_cli("demo", "ladder", "--executor", "local", "--replicates", "200", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    expected = [row for _, _, row in reconcile_porian("porian-rw", replicates=200)]
    assert [r["step"] for r in rows] == [r["step"] for r in expected]
    assert [r["a"] for r in rows] == pytest.approx([r["a"] for r in expected], rel=1e-12)
    assert len(list((tmp_path / "runs" / "demo" / "submitit").glob("*/*_result.pkl"))) == len(rows)


# --------------------------------------------------------------------- where configs and runs live


def _dry_root(*args: str, cwd=None) -> str:
    result = run_cli("jobs", "submit", *args, "--dry-run", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["members"][0]["config"]["root"]


def test_bundled_configs_by_name_and_the_runs_dir(tmp_path, monkeypatch):
    """`mlp_tiny` is jobs/configs/mlp_tiny.yaml from any folder; runs go to the config's root unless
    $WORKBENCH_RUNS_DIR, then --runs-dir, then --set root= say otherwise."""
    monkeypatch.delenv("WORKBENCH_RUNS_DIR", raising=False)
    assert _dry_root("mlp_tiny", cwd=tmp_path) == str(tmp_path / "runs")
    scratch, flag, explicit = tmp_path / "scratch", tmp_path / "flag", tmp_path / "explicit"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(scratch))
    assert _dry_root("mlp_tiny", cwd=tmp_path) == str(scratch)
    assert _dry_root("mlp_tiny", "--runs-dir", str(flag), cwd=tmp_path) == str(flag)
    assert _dry_root("mlp_tiny", "--set", f"root={explicit}", "--runs-dir", str(flag), cwd=tmp_path) == str(explicit)
    listed = json.loads(run_cli("jobs", "configs", "--json").stdout)
    assert {"mlp_tiny", "prose_tiny", "diffusion_robustness"} <= {row["name"] for row in listed}
    assert next(r for r in listed if r["name"] == "mlp_tiny")["kind"] == "mlp_regression"
    assert_clean_error(run_cli("jobs", "submit", "mlp_tny", "--dry-run", cwd=tmp_path),
                       "mlp_tny: no such file, and no bundled config of that name", "mlp_tiny")  # fmt: skip
    # a data set is not a run: make-data has no --runs-dir and ignores the variable
    assert_clean_error(run_cli("prose", "make-data", "prose_data_tiny", "--runs-dir", "x"), "unrecognized arguments")


# --------------------------------------------------------------------- feedback while waiting


def _at_a_terminal(*args: str) -> tuple[int, str, str]:
    """`workbench ARGS` with stderr on a pseudo-terminal (as a person at a shell has it):
    (exit status, stdout, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", *args], stdout=subprocess.PIPE,
                               stderr=slave, text=True)  # fmt: skip
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out = process.stdout.read()
    process.wait(timeout=600)
    os.close(master)
    return process.returncode, out, shown.decode("utf-8", errors="replace")


@pytest.mark.slow
def test_waiting_shows_progress_at_a_terminal_only_and_the_run_keeps_its_job_logs(tmp_path):
    config = write_config(tmp_path, "prog", steps=300)  # 300 steps of >= 20 ms: the 1 s polls see training
    code, out, shown = _at_a_terminal("jobs", "submit", str(config), "--executor", "local", "--wait",
                                      "--set", "train.checkpoint_every=100", "--set", "model.step_time_s=0.02")  # fmt: skip
    assert code == 0, shown
    assert "running: step " in shown and ", loss " in shown  # the training step from the run's CSV log
    assert "done" in out
    run_dir = next((tmp_path / "runs" / "prog").glob("*/metrics.nc")).parent
    links = sorted(p.name for p in (run_dir / "logs").iterdir() if p.is_symlink())
    assert len(links) == 2 and links[0].startswith("job-") and {p[-3:] for p in links} == {"err", "out"}
    assert all((run_dir / "logs" / name).resolve().is_file() for name in links)

    code, out, shown = _at_a_terminal("jobs", "sweep", str(config), "--executor", "local", "--wait", "--set",
                                      "experiment=prog2", "--grid", "train.seed=0,1", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["members"] and "members:" not in shown  # --json: no progress
    code, _, shown = _at_a_terminal("jobs", "sweep", str(config), "--executor", "local", "--wait", "--set",
                                    "experiment=prog3", "--grid", "train.seed=0,1")  # fmt: skip
    assert code == 0 and "2 members: " in shown and "2 done, 0 failed" in shown
    code, _, shown = _at_a_terminal("jobs", "sweep", str(config), "--executor", "local", "--wait", "-q", "--set",
                                    "experiment=prog4", "--grid", "train.seed=0,1")  # fmt: skip
    assert code == 0 and "members:" not in shown


def test_one_sbatch_key_is_set_without_a_json_literal():
    from jobs.entrypoints import load_job_config

    config = load_job_config("mlp_tiny", ["job.sbatch.dependency=afterok:123", "job.sbatch.qos=high"])
    assert config.job.sbatch == {"dependency": "afterok:123", "qos": "high"}
    script = sbatch_script(config.job, "/tmp/x")
    assert "#SBATCH --dependency=afterok:123" in script and "#SBATCH --qos=high" in script
    with pytest.raises(ConfigError, match="job.sbatch key 'time' is set by the spec itself"):
        load_job_config("mlp_tiny", ["job.sbatch.time=5"])


def test_slurm_failure_reasons_from_slurmstepd_words_without_accounting(tmp_path, monkeypatch):
    """Without a real sacct (here: none on PATH) the reason comes from the state squeue still lists,
    else from slurmstepd's message at the end of the job's stderr."""
    from jobs.sweep import slurm_failure_reason

    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct
    log = tmp_path / "12_0_log.err"
    words = {
        "slurmstepd: error: Detected 1 oom_kill event in StepId=12.batch. Some of the step tasks have been OOM Killed.": "OUT_OF_MEMORY",
        "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-12-04T10:00:00 DUE TO TIME LIMIT ***": "TIMEOUT",
        "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-12-04T10:00:00 DUE TO NODE FAILURE ***": "NODE_FAIL",
        "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-12-04T10:00:00 ***": "CANCELLED",
    }  # fmt: skip
    for line, state in words.items():
        log.write_text("epoch 3 ...\n" + line + "\n")
        assert f"({state}" in slurm_failure_reason("12", log)
    log.write_text("Traceback ...\nRuntimeError: boom\n")
    assert slurm_failure_reason("12", log) is None
    assert "(OUT_OF_MEMORY)" in slurm_failure_reason("12", log, queue_state="OUT_OF_MEMORY")
    assert "raise job.mem_gb" in slurm_failure_reason("12", None, queue_state="OUT_OF_MEMORY")
