"""`workbench bench gpu`: every area measured on one GPU in one command, under a time limit.

Each stage runs in a process of its own (a crash, an out-of-memory or a hung compile ends that
stage only), with a share of the total budget (`--budget`, seconds) proportional to its weight
below. A stage is a function ``gpu_stage(device, quick, budget_s) -> dict`` in its area's
benchmark module that returns::

    {"rows": [{"measure": str, "value": float | None, "unit": str,
               "goal": str | None, "met": bool | None}, ...],
     "details": {...},            # whatever else it measured (JSON)
     "skipped": None | "reason"}  # a stage that could not run at all

and marks a measure it could not take with ``value: None`` and a reason in its unit. The whole
result goes to `--out` as JSON and is printed as one table. On `--device cpu --quick` the same
code runs on small problems, so the logic is tested without a GPU.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "Stage", "format_result", "run"]


@dataclass(frozen=True)
class Stage:
    name: str
    function: str  # "module:function"
    weight: float  # share of the budget


STAGES = (
    Stage("lm", "workbench.lm.bench:gpu_stage", 1.5),
    Stage("prose", "operators.prose.bench:gpu_stage", 4.0),  # includes ~3 min of real training
    Stage("ks", "scaling.medida.bench:gpu_stage", 1.0),
    Stage("generative", "workbench.generative.bench:gpu_stage", 1.5),
    Stage("scaling", "scaling.bench:gpu_stage", 0.5),
)
DEFAULT_BUDGET_S = 420.0
START_COST_S = 8.0  # a stage process imports torch and its area before it measures anything


def run(
    device: str = "cuda", quick: bool = False, budget_s: float = DEFAULT_BUDGET_S, stages: tuple[str, ...] = ()
) -> dict[str, Any]:
    chosen = [s for s in STAGES if not stages or s.name in stages]
    result: dict[str, Any] = {
        "device": device,
        "gpu": _gpu_name(device),
        "host": platform.node(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "budget_s": budget_s,
        "quick": quick,
        "stages": {},
    }
    deadline = time.monotonic() + budget_s
    for index, stage in enumerate(chosen):
        left = deadline - time.monotonic()
        weights = sum(s.weight for s in chosen[index:])
        share = left * stage.weight / weights
        if device.startswith("cuda") and result["gpu"] is None:
            result["stages"][stage.name] = _skipped("no CUDA device is available")
        elif share < START_COST_S + 2:
            result["stages"][stage.name] = _skipped(f"time budget spent ({left:.0f} s left)")
        else:
            result["stages"][stage.name] = _run_stage(stage, device, quick, share)
    return result


def _skipped(reason: str) -> dict[str, Any]:
    return {"rows": [], "details": {}, "skipped": reason, "wall_s": 0.0}


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(device) if torch.cuda.is_available() else None


def _run_stage(stage: Stage, device: str, quick: bool, share_s: float) -> dict[str, Any]:
    """Run one stage in a child process, killed when its share of the budget is spent."""
    with tempfile.TemporaryDirectory(prefix=f"bench-gpu-{stage.name}-") as tmp:
        out = Path(tmp) / "stage.json"
        command = [sys.executable, "-m", "workbench.bench_gpu", stage.function, device, str(int(quick)),
                   f"{share_s - START_COST_S:.1f}", str(out)]  # fmt: skip
        start = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=share_s)
        except subprocess.TimeoutExpired:
            return _skipped(f"time budget spent: stopped after its share of {share_s:.0f} s") | {"wall_s": share_s}
        wall = time.monotonic() - start
        if done.returncode != 0 or not out.is_file():
            return _skipped(_last_line(done.stderr) or f"exited with status {done.returncode}") | {"wall_s": wall}
        stage_result = json.loads(out.read_text())
    stage_result["wall_s"] = wall
    stage_result.setdefault("skipped", None)
    return stage_result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _stage_main(function: str, device: str, quick: str, budget_s: str, out: str) -> int:
    """In the child: call the stage and write its dict as JSON."""
    module, _, name = function.partition(":")
    stage = getattr(importlib.import_module(module), name)
    try:
        result = stage(device=device, quick=quick == "1", budget_s=float(budget_s))
    except Exception as error:  # the stage as a whole failed: say why in its row, not as a crash
        if type(error).__name__ == "OutOfMemoryError":
            result = _skipped(f"out of memory: {error}".splitlines()[0][:300])
        else:
            result = _skipped(f"{type(error).__name__}: {error}".splitlines()[0][:300])
    Path(out).write_text(json.dumps(result, default=_json_default, allow_nan=False))
    return 0


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def format_result(result: dict[str, Any]) -> str:
    gpu = result["gpu"] or result["device"]
    lines = [f"workbench bench gpu on {gpu} ({result['date']}, budget {result['budget_s']:.0f} s"
             f"{', quick' if result['quick'] else ''})"]  # fmt: skip
    rows = [("stage", "measure", "value", "unit", "goal", "met")]
    for name, stage in result["stages"].items():
        if stage["skipped"]:
            rows.append((name, "skipped", "", stage["skipped"], "", ""))
            continue
        for row in stage["rows"]:
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            met = {True: "yes", False: "NO", None: ""}[row.get("met")]
            rows.append((name, row["measure"], value, row["unit"], row.get("goal") or "", met))
        rows.append((name, "wall time", f"{stage['wall_s']:.0f}", "s", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join(f"{cell:<{w}}" for cell, w in zip(r[:5], widths)) + "  " + r[5])
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    # Idle OpenMP threads sleep instead of spinning, so a stage's CPU-side work (data generation,
    # the CPU reference) does not compete with torch's own threads for the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(_stage_main(*sys.argv[1:]))
