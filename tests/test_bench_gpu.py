"""`workbench bench gpu` on the CPU: the orchestration (stages in their own processes, the time
budget, skipped stages, JSON and table) with every stage's quick problem."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_clean_error, run_cli

STAGES = ("lm", "prose", "ks", "generative", "scaling")


@pytest.mark.slow
def test_every_stage_runs_on_the_cpu_quick(tmp_path):
    out = tmp_path / "bench_gpu.json"
    done = run_cli("bench", "gpu", "--device", "cpu", "--quick", "--budget", "300", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["stages"]) == set(STAGES)
    for name, stage in result["stages"].items():
        assert stage["skipped"] is None, (name, stage["skipped"])
        assert stage["rows"], name
        for row in stage["rows"]:
            assert set(row) >= {"measure", "value", "unit", "goal", "met"}
            assert row["value"] is None or isinstance(row["value"], (int, float)), row
        assert 0 < stage["wall_s"] < 300
    for name in STAGES:  # the table names every stage
        assert f"\n{name}" in done.stdout


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="checks the machine without CUDA; with a device the stages run instead")
def test_no_cuda_skips_every_stage_with_the_reason(tmp_path):
    done = run_cli("bench", "gpu", "--json")
    assert done.returncode == 0, done.stderr
    stages = json.loads(done.stdout)["stages"]
    assert {s["skipped"] for s in stages.values()} == {"no CUDA device is available"}


@pytest.mark.slow
def test_a_small_budget_skips_the_stages_it_cannot_fit(tmp_path):
    import time

    start = time.monotonic()
    done = run_cli("bench", "gpu", "--device", "cpu", "--quick", "--budget", "30", "--json")
    assert done.returncode == 0, done.stderr
    stages = json.loads(done.stdout)["stages"]
    # The first stage's share, 30 s x 1.5 / 8.5 = 5.3 s, cannot hold a stage's start-up.
    assert stages["lm"]["skipped"].startswith("time budget spent"), stages["lm"]
    assert time.monotonic() - start < 30 + 20  # the budget holds, start-up of the command aside
    assert all(stage["skipped"] is None or stage["skipped"].startswith("time budget spent")
               for stage in stages.values())  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--budget", "5"], "--budget 5: give seconds between 30 and 3600"),
        (["--budget", "nan"], "--budget nan"),
        (["--stages", "lm,bogus"], "--stages: unknown bogus"),
        (["--out", "x.csv"], "must end in .json"),
    ],
)
def test_bad_flags_exit_2(args, fragment):
    assert_clean_error(run_cli("bench", "gpu", "--device", "cpu", *args), fragment)


def test_budget_and_stages_belong_to_gpu_only():
    assert_clean_error(run_cli("bench", "scaling", "--budget", "60"), "for `workbench bench gpu` only")
