"""Fault suite: sweeps that lose a process, a manifest line or an output location lose nothing.

For a small local sweep and a SLURM sweep (two members, a few seconds of training each), seeded
trials kill, at a random moment, one of: a job's controller (`kill -9`; on SLURM, `scancel`), a
trainer (`kill -9`), or the waiting command (SIGINT to its process group, as Ctrl-C does). Other
cases tear the manifest's last line, start two identical sweeps into one experiment at once, and
point outputs at a location that cannot be written.

After each: every `status` taken while things settle tells the truth (no member is called ended
while a trainer still writes its run directory, none is called done without completed metrics),
`resubmit` finishes the sweep, and `collect` gives every member's final loss, and its final
weights, bit-identical to an undisturbed run: a resumed run replays the same step-seeded batches
from its last checkpoint. The counts are printed and written to <tmp>/fault_counts.json.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import processes, run_cli

pytestmark = pytest.mark.slow

SEEDS = {"local": range(14), "slurm": range(6)}  # 20 killing trials in all
FAULTS = {"local": ("controller", "trainer", "waiting"), "slurm": ("scancel", "trainer", "waiting")}

CONFIG = """\
kind: mlp_regression
experiment: {experiment}
root: {root}
model: {{width: 16, n_samples: 128, batch_size: 16, lr: 1.0e-2}}
train: {{max_steps: 400, checkpoint_every: 25, seed: 0}}
job: {{name: wbfault, timeout_min: 20, cpus_per_task: 1}}
"""
GRID = ["--grid", "model.lr=1e-2,3e-2"]
COUNTS_LOCK = threading.Lock()


def write_config(base: Path, experiment: str) -> Path:
    path = base / f"{experiment}.yaml"
    path.write_text(CONFIG.format(experiment=experiment, root=base / "runs"))
    return path


def with_ctrl_c() -> None:
    """SIGINT as a terminal leaves it. A shell without job control starts background commands (a
    CI runner's, say) with SIGINT ignored, and that would pass on to the command under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """`workbench ...` in its own process group, as a terminal would start it."""
    return subprocess.Popen([sys.executable, "-m", "workbench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=with_ctrl_c,
                            **kwargs)  # fmt: skip


def final_results(sweep_dir: Path) -> dict[str, tuple]:
    """{run id: (final loss, every weight as bytes)} from `collect` and each run's model.pt."""
    import torch

    result = run_cli("jobs", "collect", str(sweep_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["not_done"] == []
    from workbench.store import open_dataset

    ds = open_dataset(sweep_dir / "sweep.nc").stack(point=["lr"])
    out = {}
    for run_id, loss in zip(ds["run_id"].values, ds["final_loss"].values):
        weights = torch.load(sweep_dir / str(run_id) / "model.pt", weights_only=True)
        out[str(run_id)] = (float(loss), tuple((k, v.numpy().tobytes()) for k, v in sorted(weights.items())))
    return out


@pytest.fixture(scope="module")
def fault_base(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def reference(fault_base):
    """The undisturbed sweep, run once on the local executor."""
    config = write_config(fault_base, "reference")
    done = run_cli("jobs", "sweep", str(config), *GRID, "--executor", "local", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    return final_results(fault_base / "runs" / "reference")


@pytest.fixture(scope="module")
def counts(fault_base):
    tally = {"trials": 0, "faults_injected": 0, "results_lost": 0, "by_fault": {}}
    yield tally
    text = json.dumps(tally, indent=2, sort_keys=True)
    (fault_base / "fault_counts.json").write_text(text)
    print("\nfault suite:", text)


def slurm_reason() -> str | None:
    from tests.test_jobs_slurm import _slurm_unavailable

    return _slurm_unavailable()


def need(executor: str) -> None:
    if executor == "slurm" and (reason := slurm_reason()):
        if os.environ.get("WORKBENCH_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)


# ------------------------------------------------------------------------------ faults


def job_ids(sweep_dir: Path) -> list[str]:
    try:
        lines = (sweep_dir / "manifest.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    ids = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("job_id"):
            ids.append(record["job_id"])
    return ids


def inject(fault: str, waiting: subprocess.Popen, sweep_dir: Path, rng: random.Random) -> bool:
    """Inject `fault` now; False when its target does not exist (yet, or any more)."""
    if fault == "waiting":
        if waiting.poll() is not None:
            return False
        os.killpg(waiting.pid, signal.SIGINT)
        return True
    if fault == "controller":
        targets = [int(j) for j in job_ids(sweep_dir) if j.isdigit()]
        targets = [pid for pid in targets if Path(f"/proc/{pid}").exists()]
    elif fault == "trainer":
        targets = processes("submitit.core._submit", sweep_dir)
    else:  # scancel: the cluster ends the job (preemption without requeue, an admin, a node loss)
        ids = job_ids(sweep_dir)
        if not ids:
            return False
        return subprocess.run(["scancel", rng.choice(ids)], capture_output=True).returncode == 0
    if not targets:
        return False
    try:
        os.kill(rng.choice(targets), signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def inject_when_possible(fault: str, waiting: subprocess.Popen, sweep_dir: Path, rng: random.Random) -> bool:
    """Inject at the first moment from now that the fault's target exists: on a loaded machine a
    trainer may not have started at the drawn delay. The waiting command is only hit as it is."""
    while not inject(fault, waiting, sweep_dir, rng):
        if fault == "waiting" or waiting.poll() is not None:
            return False
        time.sleep(0.2)
    return True


def settle(sweep_dir: Path, timeout_s: float = 600):
    """Poll status until nothing is pending or running, checking each answer against the truth."""
    from jobs.sweep import status
    from workbench.locks import holder

    deadline = time.monotonic() + timeout_s
    while True:
        current = status(sweep_dir)
        for m in current:
            run_dir = Path(m.run_dir)
            if m.state in ("done", "failed"):
                assert holder(run_dir / ".writer.lock") is None, f"{m.run_id} called {m.state} while a trainer writes"
            if m.state == "done":
                assert (run_dir / "model.pt").is_file(), f"{m.run_id} called done without model.pt"
        if all(m.state in ("done", "failed") for m in current):
            return current
        assert time.monotonic() < deadline, f"{sweep_dir} did not settle: {current}"
        time.sleep(0.3)


def finish_and_compare(sweep_dir: Path, reference: dict, executor: str) -> int:
    """Resubmit until done (once should do); returns how many members differ from the reference."""
    settle(sweep_dir)
    resubmit = run_cli("jobs", "resubmit", str(sweep_dir), "--executor", executor, "--wait", "--json")
    assert resubmit.returncode == 0, resubmit.stderr
    current = settle(sweep_dir)
    assert [m.state for m in current] == ["done"] * len(reference), current
    got = final_results(sweep_dir)
    assert set(got) == set(reference)
    return sum(got[run_id] != reference[run_id] for run_id in reference)


def run_trial(base: Path, executor: str, seed: int, reference: dict) -> tuple[str, bool, int]:
    rng = random.Random(f"{executor}-{seed}")
    fault = FAULTS[executor][seed % 3]
    delay = rng.uniform(1.5, 12.0)
    experiment = f"{executor}{seed:02d}"
    sweep_dir = base / "runs" / experiment
    waiting = cli("jobs", "sweep", str(write_config(base, experiment)), *GRID, "--executor", executor, "--wait")
    time.sleep(delay)
    submitted = len(job_ids(sweep_dir)) == 2
    injected = inject_when_possible(fault, waiting, sweep_dir, rng)
    _, err = waiting.communicate(timeout=600)
    assert "Traceback" not in err, err
    if fault == "waiting" and injected:
        assert waiting.returncode == 130, err  # interrupted; the jobs run on in their own session
        if submitted:  # Ctrl-C stopped the waiting only: the jobs finish without a resubmission
            assert [m.state for m in settle(sweep_dir)] == ["done", "done"]
    else:
        assert waiting.returncode in (0, 1), err  # 1: a member failed (its trainer was killed)
    lost = finish_and_compare(sweep_dir, reference, executor)
    return fault, injected, lost


def tally(counts: dict, fault: str, injected: bool, lost: int) -> None:
    with COUNTS_LOCK:
        counts["trials"] += 1
        counts["faults_injected"] += int(injected)
        counts["results_lost"] += lost
        counts["by_fault"][fault] = counts["by_fault"].get(fault, 0) + int(injected)


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_killed_processes_lose_nothing(executor, fault_base, reference, counts):
    need(executor)
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(lambda s: run_trial(fault_base, executor, s, reference), SEEDS[executor]))
    for fault, injected, lost in outcomes:
        tally(counts, fault, injected, lost)
    assert sum(lost for _, _, lost in outcomes) == 0
    # Most trials must have hit something, or the suite proves little.
    assert sum(injected for _, injected, _ in outcomes) >= len(outcomes) * 2 // 3, outcomes


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_torn_last_manifest_line_loses_nothing(executor, fault_base, reference, counts):
    need(executor)
    experiment = f"torn_{executor}"
    sweep_dir = fault_base / "runs" / experiment
    done = run_cli("jobs", "sweep", str(write_config(fault_base, experiment)), *GRID, "--executor", executor, "--wait")
    assert done.returncode == 0, done.stderr
    manifest = sweep_dir / "manifest.jsonl"
    text = manifest.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    manifest.write_text(text[: len(text) - 1 - len(last) // 2])  # the last record cut in half
    status = run_cli("jobs", "status", str(sweep_dir), "--json")
    assert status.returncode == 0 and "is torn" in status.stderr, status.stderr
    assert [row["state"] for row in json.loads(status.stdout)] == ["done", "done"]
    lost = finish_and_compare(sweep_dir, reference, executor)
    tally(counts, "torn manifest line", True, lost)
    assert lost == 0


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_two_sweeps_into_one_experiment_at_once(executor, fault_base, reference, counts):
    """Two users (or one, twice) start the same sweep at the same moment: one runs, one is refused."""
    need(executor)
    experiment = f"twice_{executor}"
    config = write_config(fault_base, experiment)
    pair = [cli("jobs", "sweep", str(config), *GRID, "--executor", executor, "--wait", "--json") for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in pair]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(json.loads(out) for code, out, _ in results if code == 0)
    loser_err = next(err for code, _, err in results if code == 2)
    assert "already" in loser_err and "Traceback" not in loser_err
    sweep_dir = fault_base / "runs" / experiment
    records = [json.loads(line) for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]
    jobs_recorded = {r["job_id"] for r in records if r.get("job_id")}
    assert {m["job_id"] for m in winner["members"]} <= jobs_recorded  # it printed its own jobs
    assert len({r["run_id"] for r in records}) == 2
    lost = finish_and_compare(sweep_dir, reference, executor)
    tally(counts, "two sweeps at once", True, lost)
    assert lost == 0


@pytest.mark.parametrize("executor", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_an_unwritable_output_location_loses_nothing(executor, fault_base, reference, counts):
    need(executor)
    experiment = f"readonly_{executor}"
    config = write_config(fault_base, experiment)
    blocker = fault_base / f"{experiment}.file"
    blocker.write_text("a file where a directory should be")
    refused = run_cli("jobs", "sweep", str(config), *GRID, "--executor", executor, "--set", f"root={blocker}")
    assert refused.returncode == 2 and "is a file, not a directory" in refused.stderr, refused.stderr
    assert blocker.read_text() == "a file where a directory should be"
    done = run_cli("jobs", "sweep", str(config), *GRID, "--executor", executor, "--wait")
    assert done.returncode == 0, done.stderr
    sweep_dir = fault_base / "runs" / experiment
    good = finish_and_compare(sweep_dir, reference, executor)  # writes sweep.nc
    before = (sweep_dir / "sweep.nc").read_bytes()
    for out in ("/proc/sweep.nc", str(blocker / "sweep.nc")):
        failed = run_cli("jobs", "collect", str(sweep_dir), "--out", out)
        assert failed.returncode == 2 and "cannot be written" in failed.stderr, failed.stderr
    assert (sweep_dir / "sweep.nc").read_bytes() == before
    tally(counts, "unwritable output", True, good)
    assert good == 0
