"""An own compute-optimal study: plan → one job array → fit straight from the sweep → predict.

A tiny study (3 budgets × 3 sizes of the demo's model family, 50 to 1,000 steps a run) runs twice
through the CLI on the local executor: once undisturbed, once with a trainer killed mid-run and the
study finished by `jobs resubmit`. The demo's own study (smaller budgets than `workbench demo
isoflop`) checks the prediction at a held-out budget.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error, processes, run_cli

pytestmark = pytest.mark.slow

PLAN = ["scaling", "plan", "isoflop_demo", "--budgets", "1.5e10,3e10,6e10", "--sizes", "3", "--convention", "standard",
        "--tokens-per-param", "150", "--executor", "local", "--submit"]  # fmt: skip
METHODS = ("isoflop", "parametric", "envelope", "kaplan")


def _fit(source: str, method: str, *extra: str) -> dict:
    result = run_cli("scaling", "fit", source, "--method", method, "--convention", "standard", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _outcome(source: str, method: str) -> tuple[int, object]:
    """(exit code, the --json result without its source, or the one-line refusal)."""
    result = run_cli("scaling", "fit", source, "--method", method, "--convention", "standard", "--json")
    assert result.returncode in (0, 2) and "Traceback" not in result.stderr, result.stderr
    if result.returncode:
        return 2, result.stderr.replace(source, "SOURCE")
    return 0, {k: v for k, v in json.loads(result.stdout).items() if k != "source"}


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    done = run_cli(*PLAN, "--runs-dir", str(root), "--set", "experiment=whole", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    # the same study, with one trainer killed while it trains
    started = run_cli(*PLAN, "--runs-dir", str(root), "--set", "experiment=cut", "--json")
    assert started.returncode == 0, started.stderr
    cut = root / "cut"
    deadline = time.monotonic() + 300
    while not (pids := processes("submitit.core._submit", cut)):
        assert time.monotonic() < deadline, "no trainer of the study started"
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(pids[0], signal.SIGKILL)
    return root, json.loads(done.stdout)


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


def test_the_plan_runs_as_one_array_with_each_runs_schedule(studies):
    root, payload = studies
    assert len(payload["plan"]) == 9 and len(payload["sweep"]["members"]) == 9
    assert {m["state"] for m in payload["sweep"]["members"]} == {"done"}
    for row, member in zip(payload["plan"], payload["sweep"]["members"]):
        config = json.loads((Path(member["run_dir"]) / "config.json").read_text())
        assert config["train"]["max_steps"] == row["steps"] == config["model"]["lr_decay_steps"]
        assert config["model"]["warmup_steps"] == row["warmup_steps"] <= max(1, row["steps"] // 10)
        assert (config["model"]["width"], config["model"]["depth"]) == (row["width"], row["depth"])


def test_fitting_the_sweep_equals_fitting_its_exported_csv(studies, tmp_path):
    root, _ = studies
    csv = tmp_path / "runs.csv"
    exported = run_cli("scaling", "runs", str(root / "whole"), "--convention", "standard", "--out", str(csv), "--json")
    assert exported.returncode == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert len(rows) == 9 and all(abs(r["C"] / r["budget"] - 1) <= 0.01 for r in rows)
    outcomes = {}
    for method in METHODS:
        outcomes[method] = _outcome(str(root / "whole"), method)
        assert outcomes[method] == _outcome(str(csv), method), method
    # the IsoFLOP and parametric fits succeed on this study (the envelope needs more budgets)
    assert outcomes["isoflop"][0] == outcomes["parametric"][0] == 0, outcomes
    assert {"a", "b", "budgets", "N_star_at_target"} <= set(_fit(str(root / "whole"), "isoflop"))


def test_an_interrupted_study_reruns_only_its_missing_members_and_fits_the_same(studies):
    root, _ = studies
    cut = root / "cut"
    members = _settled(cut)
    failed = {m["run_id"] for m in members if m["state"] == "failed"}
    assert len(failed) == 1, members
    resubmitted = run_cli("jobs", "resubmit", str(cut), "--wait", "--json")
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert {m["run_id"] for m in json.loads(resubmitted.stdout)} == failed
    after = {m["run_id"]: m for m in _settled(cut)}
    assert {m["state"] for m in after.values()} == {"done"}
    assert {run_id for run_id, m in after.items() if m["attempt"] > 1} == failed
    for method in ("isoflop", "parametric"):
        whole, resumed = _fit(str(root / "whole"), method), _fit(str(cut), method)
        assert {k: v for k, v in whole.items() if k != "source"} == {k: v for k, v in resumed.items() if k != "source"}


def test_predict_reads_the_sweep_or_a_fit_file_and_bad_input_is_refused(studies, tmp_path):
    root, _ = studies
    result = run_cli("scaling", "predict", str(root / "whole"), "--budget", "2.4e11", "--convention", "standard",
                     "--bootstrap", "50", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["approach"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"isoflop", "parametric"}
    for row in rows.values():
        assert row["N_ci"][0] <= row["N_star"] <= row["N_ci"][1] and row["L_star"] > 0
        assert row["D_star"] == pytest.approx(2.4e11 / (6 * row["N_star"]), rel=1e-9)
    fit = tmp_path / "fit.nc"
    assert run_cli("scaling", "fit", str(root / "whole"), "--method", "isoflop", "--convention", "standard",
                   "--out", str(fit)).returncode == 0  # fmt: skip
    from_fit = run_cli("scaling", "predict", str(fit), "--budget", "2.4e11", "--json")
    assert from_fit.returncode == 0, from_fit.stderr
    [row] = json.loads(from_fit.stdout)
    assert row["N_star"] == pytest.approx(rows["isoflop"]["N_star"], rel=1e-9)
    assert_clean_error(run_cli("scaling", "predict", str(root / "whole"), "--budget", "1e11"), "--convention")
    assert_clean_error(run_cli("scaling", "predict", str(root / "whole"), "--budget", "-1", "--convention",
                               "standard"), "--budget")  # fmt: skip
    assert_clean_error(run_cli("scaling", "fit", str(tmp_path), "--method", "isoflop", "--convention", "standard"),
                       "not a sweep")  # fmt: skip
