"""`workbench jobs ...`: submit training jobs and sweeps to SLURM or this machine, follow, collect."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli import (
    EXECUTOR_HELP,
    add_area,
    add_executor_flag,
    add_job_flags,
    add_parser,
    add_set_flag,
    add_verbosity_flags,
    emit,
)


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text)

    p = add_parser(verbs, "submit", run_submit)
    _add_config_flags(p)

    p = add_parser(verbs, "sweep", run_sweep)
    _add_config_flags(p)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a swept key and its values (repeatable: the grid is the product)",
    )

    add_parser(verbs, "configs", run_configs, json=True)

    p = add_parser(verbs, "sbatch", run_sbatch)
    p.add_argument("config", help="job config file (.yaml/.json) or a bundled config's name")
    add_set_flag(p, "model.lr=3e-4")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key and its values (repeatable): one array task per member")  # fmt: skip
    p.add_argument("--runs-dir", metavar="DIR", help="write runs under DIR (also $WORKBENCH_RUNS_DIR)")
    p.add_argument("--out", help="write the script here (default: print it)")

    p = add_parser(verbs, "status", run_status, json=True)
    p.add_argument("sweep", help="the sweep directory, <root>/<experiment> (holds manifest.jsonl)")

    p = add_parser(verbs, "collect", run_collect, json=True)
    p.add_argument("sweep", help="the sweep directory, <root>/<experiment>")
    p.add_argument("--out", help="netCDF file to write (default: <sweep>/sweep.nc)")

    p = add_parser(verbs, "resubmit", run_resubmit, json=True)
    p.add_argument("sweep", help="the sweep directory, <root>/<experiment>")
    add_executor_flag(p, default=None, help="default: the executor the members ran on; " + EXECUTOR_HELP)
    p.add_argument("--wait", action="store_true", help="wait until the reruns end")
    add_verbosity_flags(p)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    add_job_flags(
        p,
        config_help="job config file (.yaml/.json), e.g. jobs/configs/mlp_tiny.yaml",
        set_example="model.lr=3e-4 or job.timeout_min=30",
        wait=True,
        dry_run=True,
    )


# ------------------------------------------------------------------------------------ handlers


def run_configs(args) -> int:
    """List the bundled configs, which every CONFIG argument also accepts by name.

    examples:
      workbench jobs configs
      workbench jobs submit mlp_tiny --wait
    """
    import yaml

    from jobs.entrypoints import bundled_configs

    rows = []
    for name, path in bundled_configs().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        comment = " ".join(line.lstrip("# ").strip() for line in lines[:1] if line.startswith("#"))
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # JSON is YAML too
        rows.append({"name": name, "path": str(path), "kind": raw.get("kind", ""), "about": comment})
    width = max(len(r["name"]) for r in rows)
    text = "\n".join(f"{r['name']:<{width}}  {r['about'][:100]}" for r in rows)
    emit(args, text, rows)
    return 0


def run_sbatch(args) -> int:
    """Write an sbatch script that runs the config (one array task per --grid member) with
    `workbench run`, for researchers who submit their own scripts.

    The #SBATCH lines come from the config's job section (with job.setup lines before the
    command); edit the script freely. Each task runs `srun workbench run CONFIG ... ` with its
    member index from $SLURM_ARRAY_TASK_ID; results land where `workbench jobs sweep` would put them,
    and `workbench jobs status|collect|resubmit` work on them.

    examples:
      workbench jobs sbatch mlp_tiny --grid model.lr=3e-3,1e-2 --out sweep.sbatch && sbatch sweep.sbatch
      workbench jobs sbatch jobs/configs/lm_mup_tiny.yaml --set job.partition=gpu --runs-dir /scratch/$USER/runs
    """
    from jobs.sweep import expand_grid, foreground_script, parse_grid
    from workbench.atomic import atomic_write_text, check_writable, check_writable_dir

    overrides = ([f"root={args.runs_dir}"] if args.runs_dir else []) + list(args.overrides)
    members = expand_grid(args.config, parse_grid(args.grid) if args.grid else {}, overrides)
    script = foreground_script(args.config, members, args.grid, overrides)
    check_writable_dir(members[0].config.sweep_dir / "slurm", "the sweep's slurm log folder")  # made now
    if args.out:
        check_writable(args.out, "--out")
        atomic_write_text(args.out, script)
        print(f"wrote {args.out}: {len(members)} member(s); submit with: sbatch {args.out}")
    else:
        print(script, end="")
    return 0


def run_submit(args) -> int:
    """Submit one training job.

    CONFIG is a job config file (e.g. jobs/configs/*.yaml). With --wait, exit status 1 means the job
    failed.

    examples:
      workbench jobs submit jobs/configs/mlp_tiny.yaml --wait --json
      workbench jobs submit jobs/configs/mlp_tiny.yaml --executor slurm --set model.width=64 --set job.timeout_min=30
      workbench jobs submit jobs/configs/mlp_tiny.yaml --executor slurm --dry-run
    """
    from jobs.entrypoints import load_job_config
    from jobs.sweep import Member

    config = load_job_config(args.config, args.overrides)
    return _submit_members(args, [Member(config, {}, ())], single=True)


def run_sweep(args) -> int:
    """Submit a grid of configs as one job array.

    Submit every combination of the --grid values as one job array (one sbatch --array on SLURM).
    Writes <root>/<experiment>/manifest.jsonl.

    examples:
      workbench jobs sweep jobs/configs/mlp_tiny.yaml --grid model.lr=3e-3,1e-2 --grid train.seed=0,1
      workbench jobs sweep jobs/configs/mlp_tiny.yaml --grid model.width=16,32,64 --set experiment=widths --wait
    """
    from jobs.sweep import expand_grid, parse_grid
    from workbench.errors import InputError

    if not args.grid:
        raise InputError("give at least one --grid KEY=V1,V2 (or use `workbench jobs submit`)")
    members = expand_grid(args.config, parse_grid(args.grid), args.overrides)
    return _submit_members(args, members, single=False)


def _submit_members(args, members, *, single: bool) -> int:
    if args.dry_run:
        return _dry_run(args, members)
    code, text, payload = submit_members(args, members, single=single)
    emit(args, text, payload)
    return code


def submit_members(args, members, *, single: bool) -> tuple[int, str, dict]:
    """Submit the members as one array (waiting with --wait): (exit code, report, --json payload)."""
    from jobs import sweep

    first = members[0].config
    records = sweep.submit(members, args.executor)
    run_ids = [r["run_id"] for r in records]
    if args.wait:
        current = _wait(first.sweep_dir, run_ids, args)
    else:
        current = sweep.status(first.sweep_dir)
    by_id = {m.run_id: m for m in current}
    members_now = [by_id[run_id] for run_id in run_ids]
    failed = args.wait and any(m.state == "failed" for m in members_now)
    if single:
        m = members_now[0]
        payload = {
            "job_id": m.job_id,
            "state": m.state,
            "run_dir": m.run_dir,
            "log": m.log,
            "executor": m.executor,
            "detail": m.detail,
        }
        text = f"job {m.job_id} ({m.executor}): {m.state}\n  run dir: {m.run_dir}\n  log: {m.log}"
        if m.detail:
            text += f"\n  {m.detail}"
    else:
        payload = {
            "sweep": str(first.sweep_dir),
            "executor": records[0]["executor"],
            "members": [m.to_json() for m in members_now],
        }
        text = (
            f"sweep {first.sweep_dir}: {len(records)} members on {records[0]['executor']}\n"
            + _status_table(members_now)
            + f"\nfollow: workbench jobs status {first.sweep_dir}"
        )
    return (1 if failed else 0), text, payload


def _wait(sweep_dir, run_ids, args=None):
    """Wait for the members, with a progress line at a terminal; a Ctrl-C stops the waiting only
    (the jobs run in their own session)."""
    from jobs import sweep
    from workbench.cli import Progress

    progress = Progress(args)
    try:
        return sweep.wait(sweep_dir, run_ids=run_ids, progress=progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped waiting; the jobs go on: workbench jobs status {sweep_dir}", file=sys.stderr)
        raise
    finally:
        progress.close()


def _dry_run(args, members) -> int:
    from jobs.submit import resolve_executor, sbatch_script
    from workbench.atomic import check_writable_dir
    from workbench.config import to_dict

    first = members[0].config
    check_writable_dir(first.sweep_dir, "experiment directory", create=False)
    executor = resolve_executor(args.executor) if args.executor != "slurm" else "slurm"
    script = sbatch_script(first.job, first.job_folder, array_size=len(members) if len(members) > 1 else None)
    payload = {
        "executor": executor,
        "members": [
            {"run_id": m.config.resolved_run_id, "params": m.params, "config": to_dict(m.config)} for m in members
        ],
        "sbatch_script": script,
    }
    lines = [f"{len(members)} job(s) would run on {executor}:"]
    lines += [f"  {m.config.run_dir.path}" for m in members]
    lines += ["", "sbatch script (when submitted to SLURM):", script]
    emit(args, "\n".join(lines), payload)
    return 0


def run_status(args) -> int:
    """State and log path of every member of a sweep.

    examples:
      workbench jobs status runs/mlp_tiny
      workbench jobs status runs/mlp_tiny --json
    """
    from jobs.sweep import status

    members = status(args.sweep)
    counts = {state: sum(m.state == state for m in members) for state in ("pending", "running", "done", "failed")}
    text = _status_table(members) + "\n" + ", ".join(f"{n} {state}" for state, n in counts.items())
    emit(args, text, [m.to_json() for m in members])
    return 0


def _status_table(members) -> str:
    rows = [("run", "state", "job", "log")]
    for m in members:
        state = m.state if not m.detail else f"{m.state} ({m.detail[:60]})"
        rows.append((m.run_id, state, str(m.job_id), m.log or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows)


def run_collect(args) -> int:
    """Combine the members' metrics.nc into one Dataset.

    The done members' metrics.nc become one netCDF over the sweep grid (NaN where a member is
    missing), by default <sweep>/sweep.nc.

    examples:
      workbench jobs collect runs/mlp_tiny
      workbench jobs collect runs/mlp_tiny --out sweep.nc --json
    """
    import numpy as np

    from jobs.sweep import collect, status
    from workbench.atomic import check_writable
    from workbench.store import atomic_write_netcdf

    out = Path(args.out) if args.out else Path(args.sweep) / "sweep.nc"
    check_writable(out, "--out", suffixes=(".nc",))
    members = status(args.sweep)
    ds = collect(args.sweep, members=members)
    atomic_write_netcdf(ds, out)
    not_done = [m.run_id for m in members if m.state != "done"]
    sweep_dims = {d: int(n) for d, n in ds.sizes.items() if d != "step"}
    payload = {
        "path": str(out),
        "dims": {d: int(n) for d, n in ds.sizes.items()},
        "members": len(members),
        "done": len(members) - len(not_done),
        "not_done": not_done,
    }
    lines = [
        f"wrote {out}: dims {', '.join(f'{d}={n}' for d, n in ds.sizes.items())}; "
        f"{payload['done']} of {len(members)} members done"
    ]
    if not_done:
        lines.append(f"not done (NaN): {', '.join(not_done)}")
    if "final_loss" in ds and sweep_dims:
        flat = ds["final_loss"].stack(point=list(sweep_dims)).values
        lines.append(
            f"final loss: min {np.nanmin(flat):.4g}, max {np.nanmax(flat):.4g}"
            if np.isfinite(flat).any()
            else "final loss: no member done"
        )
    emit(args, "\n".join(lines), payload)
    return 0


def run_resubmit(args) -> int:
    """Rerun only the failed or missing members.

    The members that failed (or finished without metrics.nc) are submitted again; each resumes from
    its last checkpoint.

    examples:
      workbench jobs resubmit runs/mlp_tiny
      workbench jobs resubmit runs/mlp_tiny --executor local --wait --json
    """
    from jobs import sweep

    records = sweep.resubmit(args.sweep, args.executor)
    run_ids = [r["run_id"] for r in records]
    current = _wait(args.sweep, run_ids, args) if args.wait and records else sweep.status(args.sweep)
    chosen = [m for m in current if m.run_id in run_ids]
    failed = args.wait and any(m.state == "failed" for m in chosen)
    text = (
        "nothing to resubmit: no member failed or is missing"
        if not records
        else f"resubmitted {len(records)} member(s)\n" + _status_table(chosen)
    )
    emit(args, text, [m.to_json() for m in chosen])
    return 1 if failed else 0
