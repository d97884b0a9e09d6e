"""The LM and generative stages of `workbench bench gpu` on the CPU: the code a GPU runs, on tiny
models, returns the stage protocol of workbench/bench_gpu.py with finite, positive measurements
(or, for what a CPU cannot give, None and the reason)."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest

torch = pytest.importorskip("torch")

from workbench.generative import bench as generative_bench  # noqa: E402 - after the torch check
from workbench.lm import bench as lm_bench  # noqa: E402
from workbench.lm.model import build_model  # noqa: E402

ROW_KEYS = {"measure", "value", "unit", "goal", "met"}


def _rows(result: dict) -> dict[str, dict]:
    assert set(result) == {"rows", "details", "skipped"} and result["skipped"] is None
    json.dumps(result, allow_nan=False)  # what bench_gpu writes for the stage
    rows = {}
    for row in result["rows"]:
        assert set(row) == ROW_KEYS and isinstance(row["measure"], str) and row["unit"]
        assert row["met"] in (True, False, None)
        rows[row["measure"]] = row
    assert len(rows) == len(result["rows"])  # measure names are unique
    return rows


def _positive(row: dict) -> float:
    value = row["value"]
    assert value is not None and math.isfinite(value) and value > 0, row
    return value


def test_lm_stage_on_cpu():
    result = lm_bench.gpu_stage(device="cpu", quick=True, budget_s=60)
    rows = _rows(result)
    for name in ("tokens/s muP", "tokens/s plain PyTorch", "batch", "peak memory"):
        _positive(rows[name])
    overhead = rows["muP overhead"]
    assert math.isfinite(overhead["value"]) and overhead["met"] in (True, False)  # a time ratio - 1: either sign
    for name in ("MFU muP", "MFU plain PyTorch"):  # no bf16 peak for a CPU: no value, and why
        assert rows[name]["value"] is None and "no bf16 peak" in rows[name]["unit"]
    details = result["details"]
    search = details["batch_search"]
    assert search[0]["batch"] == 8 and search[0]["fits"] is True
    assert rows["batch"]["value"] == details["batch"] in (8, 16)
    shape = lm_bench.CPU_QUICK
    # N of the MFU: every parameter but the token and position tables (the readout is untied here).
    assert details["params_mfu"] == details["params"] - (shape.vocab + shape.seq_len) * shape.width
    attention = 12 * shape.depth * shape.width * shape.seq_len
    assert details["flops_per_token"] == 6 * details["params_mfu"] + attention
    assert "6 N + 12 L d T" in details["mfu_formula"] and details["compiled"] is False
    assert details["seconds"] < 60


def test_lm_stage_times_eager_in_process_when_the_measuring_process_fails(monkeypatch):
    monkeypatch.setattr(lm_bench, "_measure_in_child", lambda *args: (None, "killed for the test"))
    monkeypatch.setattr(lm_bench, "_search_batch", lambda *args: (8, [{"batch": 8, "fits": True, "seconds": 0.1}]))
    result = lm_bench.gpu_stage(device="cpu", quick=True, budget_s=60)
    rows = _rows(result)
    _positive(rows["tokens/s muP"])
    _positive(rows["tokens/s plain PyTorch"])
    assert rows["batch"]["value"] == 8 and result["details"]["note"] == "killed for the test"


def test_batch_search_keeps_the_largest_batch_before_out_of_memory():
    def until_32(batch: int) -> float:
        if batch >= 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")
        return batch / 8

    best, tried = lm_bench._largest_batch(until_32, cap=64, deadline=math.inf, device="cpu")
    assert best == 16 and [t["batch"] for t in tried] == [8, 16, 32]
    assert [t["fits"] for t in tried] == [True, True, False] and tried[1]["peak_memory_gib"] == 2.0
    best, tried = lm_bench._largest_batch(lambda batch: 1.0, cap=64, deadline=math.inf, device="cpu")
    assert best == 64 and [t["batch"] for t in tried] == [8, 16, 32, 64]  # the cap ends it
    best, tried = lm_bench._largest_batch(until_32, cap=64, deadline=time.monotonic() - 1, device="cpu")
    assert best == 8 and tried[-1] == {"batch": 16, "fits": None, "reason": "time budget"}  # the first try always runs


def test_batch_search_with_nothing_fitting_gives_rows_with_the_reason(monkeypatch):
    def never(batch: int) -> float:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(lm_bench, "_batch_trier", lambda shape, device: never)
    result = lm_bench.gpu_stage(device="cpu", quick=True, budget_s=60)
    rows = _rows(result)
    assert all(row["value"] is None and row["unit"] == "out of memory at batch 8" for row in rows.values())


def test_measuring_process_halves_the_batch_when_out_of_memory(monkeypatch, tmp_path):
    """`_child_main` (the compiled measurement's process), run here with `_measure` replaced."""
    batches = []

    def measure(shape, device, compile_model, plan, deadline, report):
        batches.append(shape.batch)
        if shape.batch > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        report({"batch": shape.batch, "times": {"mup": [1.0], "sp": [1.0]}})

    monkeypatch.setattr(lm_bench, "_measure", measure)
    monkeypatch.setattr(lm_bench, "_die_with_parent", lambda: None)  # not the test process
    spec = {"shape": {**dataclasses.asdict(lm_bench.CPU_QUICK), "batch": 64}, "device": "cpu", "compile": False,
            "plan": [1, 1, 1], "threads": torch.get_num_threads(), "deadline_epoch": time.time() + 60}  # fmt: skip
    out = tmp_path / "measure.json"
    assert lm_bench._child_main(json.dumps(spec), str(out)) == 0
    assert batches == [64, 32, 16] and json.loads(out.read_text())["batch"] == 16


@pytest.mark.parametrize(("tied", "parametrization"), [(False, "mup"), (True, "mup"), (False, "sp"), (True, "sp")])
def test_mfu_params_drop_the_lookups_and_keep_the_readout(tied, parametrization):
    config = lm_bench.CPU_QUICK.model_config(parametrization)
    model = build_model(dataclasses.replace(config, tie_readout=tied))
    width, vocab, seq_len = config.width, config.vocab_size, config.seq_len
    # A tied token table is the readout: only the position table is a pure lookup then.
    dropped = seq_len * width if tied else (vocab + seq_len) * width
    assert lm_bench.mfu_params(model) == model.num_params() - dropped


def test_generative_stage_on_cpu():
    result = generative_bench.gpu_stage(device="cpu", quick=True, budget_s=60)
    rows = _rows(result)
    for name in (
        "train steps/s PFGM++ D=128",
        "train steps/s EDM (D=inf)",
        "sampling images/s PFGM++ D=128",
        "sampling images/s EDM (D=inf)",
    ):
        _positive(rows[name])
    for name in ("PFGM++ extra cost, training", "PFGM++ extra cost, sampling"):
        assert math.isfinite(rows[name]["value"]) and rows[name]["goal"] == "<= 5 %"
    details = result["details"]
    assert details["sampling"]["nfe"] == 35 and details["size"]["image"] == 32
    assert all(ms > 0 for ms in details["noise_draw_ms"].values())
    assert details["seconds"] < 60


def test_generative_stage_reports_out_of_memory_in_its_rows(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(generative_bench, "_sampling", out_of_memory)
    rows = _rows(generative_bench.gpu_stage(device="cpu", quick=True, budget_s=60))
    _positive(rows["train steps/s EDM (D=inf)"])
    row = rows["sampling images/s EDM (D=inf)"]
    assert row["value"] is None and row["unit"].startswith("out of memory: CUDA out of memory")
