"""The PROSE and KS stages of `workbench bench gpu`, run on the CPU with --quick: the logic the GPU
run uses (budgets, rows, details, the training loop, the pool), on small problems."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

ROW_KEYS = {"measure", "value", "unit", "goal", "met"}


def _check_shape(result: dict) -> dict:
    """Protocol of workbench/bench_gpu.py; returns the rows by measure."""
    assert set(result) == {"rows", "details", "skipped"}
    assert result["skipped"] is None
    json.dumps(result, allow_nan=False)  # what the stage process writes: strict JSON
    rows = {}
    for row in result["rows"]:
        assert set(row) == ROW_KEYS, row
        assert isinstance(row["measure"], str) and isinstance(row["unit"], str) and row["unit"]
        assert row["met"] in (None, True, False)
        if row["value"] is not None:
            assert isinstance(row["value"], float) and math.isfinite(row["value"]), row
        rows[row["measure"]] = row
    assert len(rows) == len(result["rows"])  # measures are named once
    return rows


@pytest.fixture(scope="module")
def prose(tmp_path_factory):
    from operators.prose import bench

    figures = tmp_path_factory.mktemp("figures")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(bench.FIGURES_ENV, str(figures))
        return bench.gpu_stage(device="cpu", quick=True, budget_s=60), figures


def test_prose_stage_rows_and_real_training(prose):
    result, figures = prose
    rows = _check_shape(result)
    throughput = next(r for m, r in rows.items() if m.startswith("train samples/s"))
    assert throughput["value"] > 0 and throughput["goal"] is None  # the goal is for the paper model on a GPU
    assert rows["peak memory, train step"]["value"] is None  # no CUDA: said in the unit, not a failure
    for measure in ("training run samples/s", "training loss, first point", "training loss, last point"):
        assert rows[measure]["value"] > 0, measure
    details = result["details"]
    assert details["pool"]["generator"] == "in-process" and details["pool"]["train_samples"] > 0
    curve = details["loss_curve"]
    assert len(curve) >= 3
    steps = [p["step"] for p in curve]
    assert steps[0] == 1 and steps == sorted(set(steps))
    assert all(p["loss"] > 0 and p["elapsed_s"] > 0 for p in curve)
    # Real training: the first point is step 1 alone (the untrained model, CE ~ ln 1041 ~ 7 plus
    # 6 x a relative L2 ~ 1), the last the mean of the last 5 steps at lr up to 2e-3. The token
    # cross-entropy falls by nats within ~10 steps (token frequencies are learnt first), so even a
    # run slowed by a shared CPU ends well below its start: asserted with a margin.
    assert curve[-1]["loss"] < 0.95 * curve[0]["loss"], curve
    training = details["training"]
    assert training["steps"] == curve[-1]["step"] and training["stopped_by"] in ("time", "max_steps")
    assert training["heldout_loss_after"]["total"] < training["heldout_loss_before"]["total"]
    assert (figures / "prose_loss_curve.png").stat().st_size > 1000
    assert details["figure"] == str(figures / "prose_loss_curve.png")


def test_prose_pool_from_spawned_processes_equals_in_process():
    """The GPU run makes its pool in spawned processes; chunk k always comes from seed + k."""
    from jobs.entrypoints import load_job_config
    from operators.prose.bench import CONFIGS
    from operators.prose.bench_training import bench_config, make_pool

    config = bench_config(load_job_config(CONFIGS / "prose_tiny.yaml").model)
    kwargs = dict(seconds=600.0, per_family=3, max_chunks=2, val_per_family=2, seed=5)
    local_train, local_val, local_info = make_pool(config, workers=0, **kwargs)
    train, val, info = make_pool(config, workers=1, **kwargs)
    assert info["generator"] == "1 spawned processes" and info["chunks"] == local_info["chunks"] == 2
    assert len(train) == len(local_train) == 18 and len(val) == len(local_val) == 6
    np.testing.assert_array_equal(train.noisy, local_train.noisy)
    np.testing.assert_array_equal(train.family, local_train.family)
    assert train.target_ids == local_train.target_ids and train.terms == local_train.terms
    np.testing.assert_array_equal(val.noisy, local_val.noisy)


def test_ks_stage_rows_and_cpu_agreement():
    from scaling.medida import bench

    result = bench.gpu_stage(device="cpu", quick=True, budget_s=60)
    rows = _check_shape(result)
    for dtype in ("float64", "float32"):
        rate = rows[f"ETDRK4 64 members {dtype}"]
        assert rate["value"] > 0 and rate["unit"] == "member-steps/s"
        assert rows[f"ETDRK4 64 members {dtype} vs CPU"]["value"] >= 0
    # float64 on the "device" is the CPU solver on a larger batch: round-off at most.
    assert rows["ETDRK4 64 members float64 vs CPU"]["value"] <= 1e-10
    assert rows["ETDRK4 64 members float64 vs CPU"]["met"] is True
    assert rows["ETDRK4 64 members float32 vs CPU"]["value"] < 1e-3  # float32 round-off, reported only
    assert rows["EnKF analysis 256 members"]["value"] > 0
    assert rows["EnKF mean vs explicit K = B(B+R)^-1"]["met"] is True
    assert [r["members"] for r in result["details"]["etdrk4"]] == [64, 64]


def test_ks_stage_skips_what_does_not_fit_in_the_budget():
    """A budget too small for anything after the reference: every row says why, nothing fails."""
    from scaling.medida import bench

    result = bench.gpu_stage(device="cpu", quick=True, budget_s=1.0)
    rows = _check_shape(result)
    assert all(row["value"] is None and "skipped" in row["unit"] for row in rows.values()), rows
