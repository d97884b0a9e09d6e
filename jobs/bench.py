"""`workbench bench jobs`: what a job costs beyond its work, per executor, next to in-process.

Measured, each against the same thing done in this process:
  - submit -> first line of user code: a tiny function records time.time() on entry;
  - submit -> result back: until its result pickle exists (what `--wait` pays);
  - collect of a 32-member sweep (4 x 8 grid, 200 steps each): workbench's `collect`
    (manifest, states, files, grid) against a bare xarray combine_by_coords of the same files.
SLURM rows appear when a SLURM controller answers (`sinfo`); otherwise they say why not.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def first_line(t_submit: float) -> float:
    """The job: return the time its first line ran (and the submit time, for the caller)."""
    return time.time()


def _latency(executor: str, folder: Path, repeats: int) -> dict:
    from jobs.submit import JobSpec, make_executor

    spec = JobSpec(name="wbbench", timeout_min=5, signal_delay_s=30)
    ex = make_executor(spec, executor, folder / executor / "%j")
    starts, rounds = [], []
    for _ in range(repeats):
        t0 = time.time()
        job = ex.submit(first_line, t0)
        while not job.paths.result_pickle.exists():
            time.sleep(0.02)
        t1 = time.time()
        started = job.result()
        starts.append(started - t0)
        rounds.append(t1 - t0)
    return {"first_line_s": statistics.median(starts), "round_trip_s": statistics.median(rounds), "repeats": repeats}


def _in_process(repeats: int = 1000) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        first_line(time.time())
    return (time.perf_counter() - t0) / repeats


def _slurm_unavailable() -> str | None:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "no SLURM on this machine (start one: sudo jobs/slurm/local_cluster.sh start)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"SLURM controller not answering: {probe.stderr.strip()}"
    return None


def _collect_bench(folder: Path) -> dict:
    import numpy as np
    import xarray as xr

    from jobs.sweep import collect
    from workbench.store import append_manifest, atomic_write_netcdf, open_dataset, with_sweep_dims

    sweep = folder / "sweep32"
    lrs, seeds = [1e-3, 3e-3, 1e-2, 3e-2], list(range(8))
    steps = np.arange(1, 201)
    files = []
    for i, (lr, seed) in enumerate((lr, seed) for lr in lrs for seed in seeds):
        run_id = f"{i:03d}"
        rng = np.random.default_rng(i)
        ds = xr.Dataset(
            {
                "loss": ("step", 1 / steps + 0.01 * rng.random(steps.size)),
                "final_loss": ((), 0.01),
                "steps_done": ((), 200),
                "status": ((), "completed"),
            },
            coords={"step": steps},
        )
        path = sweep / run_id / "metrics.nc"
        atomic_write_netcdf(ds, path)
        files.append((path, {"lr": lr, "seed": seed}))
        append_manifest(
            sweep / "manifest.jsonl",
            {
                "run_id": run_id,
                "params": {"lr": lr, "seed": seed},
                "executor": "debug",
                "outcome": "done",
                "job_id": f"DEBUG_{i}",
                "folder": str(sweep / "submitit" / "%j"),
                "attempt": 1,
                "config": {"root": str(folder), "experiment": "sweep32"},
            },
        )
    t0 = time.perf_counter()
    ours = collect(sweep)
    t1 = time.perf_counter()
    bare = xr.combine_by_coords(
        [with_sweep_dims(open_dataset(p).drop_vars("status"), params) for p, params in files],
        join="outer",
        combine_attrs="drop_conflicts",
    )
    t2 = time.perf_counter()
    same = bool(np.array_equal(ours["loss"].values, bare["loss"].transpose(*ours["loss"].dims).values))
    return {"members": len(files), "collect_s": t1 - t0, "bare_combine_s": t2 - t1, "same_values": same}


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="wb-bench-jobs-", dir=Path.cwd()) as tmp:
        # In the current directory rather than /tmp: on a real cluster the job folder must be
        # on a filesystem the nodes share.
        folder = Path(tmp)
        result = {"in_process_call_s": _in_process(), "local": _latency("local", folder, repeats)}
        reason = _slurm_unavailable()
        result["slurm"] = {"skipped": reason} if reason else _latency("slurm", folder, repeats)
        result["collect"] = _collect_bench(folder)
    result["same_optimum"] = result["collect"]["same_values"]  # the exit status of `workbench bench`
    result["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    return result


def format_result(r: dict) -> str:
    base = r["in_process_call_s"]
    lines = [f"{'path':<34}{'seconds':>10}{'x in-process call':>20}"]
    lines.append(f"{'in-process call':<34}{base:>10.2e}{1:>20.0f}")
    for name in ("local", "slurm"):
        row = r[name]
        if "skipped" in row:
            lines.append(f"{name + ': skipped':<34}  {row['skipped']}")
            continue
        for key, label in (("first_line_s", "submit -> first line"), ("round_trip_s", "submit -> result")):
            lines.append(f"{f'{name}: {label}':<34}{row[key]:>10.2f}{row[key] / base:>20.3g}")
    c = r["collect"]
    lines.append(
        f"{'collect, ' + str(c['members']) + ' members':<34}{c['collect_s']:>10.3f}"
        f"{c['collect_s'] / c['bare_combine_s']:>19.1f}x bare xarray combine ({c['bare_combine_s']:.3f} s)"
    )
    lines.append("same combined values as the bare combine" if c["same_values"] else "COMBINED VALUES DIFFER")
    return "\n".join(lines)
