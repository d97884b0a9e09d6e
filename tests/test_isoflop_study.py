"""An own compute-optimal study, end to end through the CLI on the local executor:

1. `scaling plan --submit` lays the grid out as one job array (3 budgets x 5 sizes of the demo's
   model family), and the trainer of one member is killed while it runs;
2. `jobs resubmit` reruns only that member;
3. `demo isoflop` over the same folder finds the grid done, fits Approaches 2 and 3, trains 3 sizes
   at a budget 3x the largest around the predicted N*, and compares.

Every test reads that one study; the killed member is also trained once more, uninterrupted, in a
sweep of its own.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error, processes, run_cli

pytestmark = pytest.mark.slow

BUDGETS = "5e10,1e11,2e11"
SIZES = "5"
HOLDOUT = ["--holdout-factor", "3", "--holdout-sizes", "3"]
PLAN = ["scaling", "plan", "isoflop_demo", "--budgets", BUDGETS, "--sizes", SIZES, "--convention", "standard",
        "--tokens-per-param", "150"]  # fmt: skip
METHODS = ("isoflop", "parametric", "envelope", "kaplan")
KILLED = 3  # a short run of the smallest budget (the first members are the longest)


def _workbench(*args: str) -> tuple[int, str, str]:
    """`workbench ARGS` in this process (a fit needs no fresh interpreter): (exit code, stdout, stderr)."""
    from workbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _fit(source: str, method: str) -> dict:
    code, out, err = _workbench("scaling", "fit", source, "--method", method, "--convention", "standard", "--json")
    assert code == 0, err
    return {k: v for k, v in json.loads(out).items() if k != "source"}


def _outcome(source: str, method: str) -> tuple[int, object]:
    """(exit code, the --json result without its source, or the one-line refusal)."""
    code, out, err = _workbench("scaling", "fit", source, "--method", method, "--convention", "standard", "--json")
    assert code in (0, 2) and "Traceback" not in err, err
    if code:
        return 2, err.replace(source, "SOURCE")
    return 0, {k: v for k, v in json.loads(out).items() if k != "source"}


def _settled(sweep: Path) -> list[dict]:
    deadline = time.monotonic() + 600
    while True:
        status = run_cli("jobs", "status", str(sweep), "--json")
        assert status.returncode == 0, status.stderr
        members = json.loads(status.stdout)
        if all(m["state"] in ("done", "failed") for m in members):
            return members
        assert time.monotonic() < deadline
        time.sleep(1)


def _trainer_of(grid: Path, index: int) -> int:
    """The pid of member `index`'s trainer, a second after it started (its job id is in the
    trainer's SUBMITIT_LOCAL_JOB_ID)."""
    from jobs.sweep import status

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        member = status(grid)[index]
        assert member.state in ("pending", "running"), member
        wanted = f"SUBMITIT_LOCAL_JOB_ID={member.job_id}".encode()
        for pid in processes("submitit.core._submit", grid) if member.job_id else ():
            try:
                if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    time.sleep(1.0)
                    return pid
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError(f"member {index} of {grid} did not start")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    grid = root / "isoflop_demo"
    planned = run_cli(*PLAN, "--runs-dir", str(root), "--executor", "local", "--submit", "--json")
    assert planned.returncode == 0, planned.stderr
    os.kill(_trainer_of(grid, KILLED), signal.SIGKILL)
    interrupted = _settled(grid)
    resubmitted = run_cli("jobs", "resubmit", str(grid), "--wait", "--json")
    assert resubmitted.returncode == 0, resubmitted.stderr
    demo = subprocess.run([sys.executable, "-m", "workbench.cli", "demo", "isoflop", "--root", str(root), "--executor",
                           "local", "--budgets", BUDGETS, "--sizes", SIZES, *HOLDOUT, "--json"],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    return {
        "root": root,
        "grid": grid,
        "planned": json.loads(planned.stdout),
        "interrupted": interrupted,
        "resubmitted": json.loads(resubmitted.stdout),
        "demo": json.loads(demo.stdout),
    }


def test_the_plan_runs_as_one_array_with_each_runs_schedule(study):
    payload = study["planned"]
    assert len(payload["plan"]) == 15 and len(payload["sweep"]["members"]) == 15
    for row, member in zip(payload["plan"], payload["sweep"]["members"]):
        config = json.loads((Path(member["run_dir"]) / "config.json").read_text())
        assert config["train"]["max_steps"] == row["steps"] == config["model"]["lr_decay_steps"]
        assert config["model"]["warmup_steps"] == row["warmup_steps"] <= max(1, row["steps"] // 10)
        assert (config["model"]["width"], config["model"]["depth"]) == (row["width"], row["depth"])


def test_fitting_the_sweep_equals_fitting_its_exported_csv(study, tmp_path):
    grid = str(study["grid"])
    csv_path = tmp_path / "runs.csv"
    exported = run_cli("scaling", "runs", grid, "--convention", "standard", "--out", str(csv_path), "--json")
    assert exported.returncode == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert len(rows) == 15 and all(abs(r["C"] / r["budget"] - 1) <= 0.01 for r in rows)
    outcomes = {}
    for method in METHODS:
        outcomes[method] = _outcome(grid, method)
        assert outcomes[method] == _outcome(str(csv_path), method), method
    # the IsoFLOP and parametric fits succeed on this study
    assert outcomes["isoflop"][0] == outcomes["parametric"][0] == 0, outcomes
    assert {"a", "b", "budgets", "N_star_at_target"} <= set(outcomes["isoflop"][1])


def test_an_interrupted_study_reruns_only_its_missing_members_and_fits_the_same(study, tmp_path):
    grid = study["grid"]
    killed = {m["run_id"] for m in study["interrupted"] if m["state"] == "failed"}
    assert len(killed) == 1, study["interrupted"]
    assert {m["run_id"] for m in study["resubmitted"]} == killed
    after = {m["run_id"]: m for m in _settled(grid)}
    assert {m["state"] for m in after.values()} == {"done"}
    assert {run_id for run_id, m in after.items() if m["attempt"] > 1} == killed

    # the killed member once more, uninterrupted, in a sweep of its own
    [run_id] = killed
    from jobs.sweep import latest_records

    [record] = [r for r in latest_records(grid) if r["run_id"] == run_id]
    settings = [arg for override in record["overrides"] for arg in ("--set", override)]
    reference = run_cli("jobs", "submit", "isoflop_demo", "--runs-dir", str(study["root"]), "--set",
                        "experiment=reference", *settings, "--executor", "local", "--wait", "--json")  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    csv_path, reference_csv = tmp_path / "runs.csv", tmp_path / "reference.csv"
    for sweep, path in ((grid, csv_path), (study["root"] / "reference", reference_csv)):
        exported = run_cli("scaling", "runs", str(sweep), "--convention", "standard", "--out", str(path))
        assert exported.returncode == 0, exported.stderr
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    with open(reference_csv) as f:
        [uninterrupted] = list(csv.DictReader(f))
    [resumed] = [row for row in rows if row["run"] == run_id]
    assert float(resumed["loss"]) == float(uninterrupted["loss"])
    # so the study fits as the uninterrupted one does: its table with the uninterrupted run's loss
    resumed["loss"] = uninterrupted["loss"]
    whole = tmp_path / "whole.csv"
    with open(whole, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for method in ("isoflop", "parametric"):
        assert _fit(str(grid), method) == _fit(str(whole), method), method


def test_the_held_out_budget_is_predicted(study):
    """Interior IsoFLOP minima at every fitted budget; at the held-out budget the measured best
    loss within 1 % of both approaches' L*, and the measured best size (the minimum of a parabola
    through the held-out runs, itself interior) within 1.5x of Approach 2's N*."""
    result = study["demo"]
    assert len(result["grid"]) == 3 and all(g["interior"] for g in result["grid"]), result["grid"]
    assert result["holdout_budget"] == pytest.approx(3 * 2e11, rel=1e-6)
    iso, par, measured = result["prediction"]["isoflop"], result["prediction"]["parametric"], result["measured"]
    for prediction in (iso, par):
        assert abs(measured["best_loss"] / prediction["L_star"] - 1) <= 0.01, (measured, prediction)
    assert measured["interpolated_status"] == "ok", measured
    assert 1 / 1.5 <= measured["N"] / iso["N_star"] <= 1.5, (measured, iso)
    # the demo trained none of the grid again: its manifest holds the 15 submissions and the one rerun
    from workbench.store import read_manifest

    records = read_manifest(study["grid"] / "manifest.jsonl")
    assert len({(r["run_id"], r["attempt"]) for r in records}) == 15 + 1
    assert (study["grid"] / "study.json").is_file() and (study["grid"] / "study.png").is_file()


def test_predict_reads_the_sweep_or_a_fit_file_and_bad_input_is_refused(study, tmp_path):
    grid = str(study["grid"])
    result = run_cli("scaling", "predict", grid, "--budget", "6e11", "--convention", "standard", "--bootstrap", "50",
                     "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["approach"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"isoflop", "parametric"}
    for row in rows.values():
        assert row["N_ci"][0] <= row["N_star"] <= row["N_ci"][1] and row["L_star"] > 0
        assert row["D_star"] == pytest.approx(6e11 / (6 * row["N_star"]), rel=1e-9)
    fit = tmp_path / "fit.nc"
    assert run_cli("scaling", "fit", grid, "--method", "isoflop", "--convention", "standard",
                   "--out", str(fit)).returncode == 0  # fmt: skip
    from_fit = run_cli("scaling", "predict", str(fit), "--budget", "6e11", "--json")
    assert from_fit.returncode == 0, from_fit.stderr
    [row] = json.loads(from_fit.stdout)
    assert row["N_star"] == pytest.approx(rows["isoflop"]["N_star"], rel=1e-9)
    assert row["N_star"] == pytest.approx(study["demo"]["prediction"]["isoflop"]["N_star"], rel=1e-9)
    assert_clean_error(run_cli("scaling", "predict", grid, "--budget", "1e11"), "--convention")
    assert_clean_error(run_cli("scaling", "predict", grid, "--budget", "-1", "--convention", "standard"), "--budget")
    assert_clean_error(run_cli("scaling", "fit", str(tmp_path), "--method", "isoflop", "--convention", "standard"),
                       "not a sweep")  # fmt: skip
