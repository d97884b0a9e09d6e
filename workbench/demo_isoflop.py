"""`workbench demo isoflop`: a compute-optimal study of one's own model family, end to end.

1. `scaling plan` lays out K sizes at each of a few budgets (jobs/configs/isoflop_demo.yaml: tiny
   muP GPTs on the spectral Markov source), each run with Porian et al.'s corrections;
2. the runs train as one job array (SLURM, or local processes), then are read back as a table;
3. Approach 2 (IsoFLOP minima) and Approach 3 (parametric L(N, D)) predict N*, D* and L* at a
   budget `holdout_factor` times the largest;
4. a few sizes around the predicted N* train at that budget, and the prediction is compared with
   the measured minimum.

Everything lands in <root>/<experiment>/ (the grid) and <root>/<experiment>_holdout/, with
study.json (the numbers, the timings) and study.png (IsoFLOP curves, frontier, prediction).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from workbench.atomic import atomic_write_text

CONFIG = "isoflop_demo"
BUDGETS = (1e11, 3e11, 1e12)
SIZES = 5
HOLDOUT_FACTOR = 4.0
HOLDOUT_SIZES = 4
HOLDOUT_SPREAD = 4.0  # the check sizes span this factor around the predicted N*
TOKENS_PER_PARAM = 150.0  # D/N near the optimum of this source and model family (measured, README)
CONVENTION = "standard"


def _plan_members(config: str, overrides: Sequence[str], budgets, sizes: int, *, spread: float,
                  centre: float | None = None, experiment: str | None = None, seeds: int = 1):  # fmt: skip
    from scaling.study.cli import member_settings, plan_for, plan_members
    from scaling.study.plan import Corrections

    overrides = [*overrides, *([f"experiment={experiment}"] if experiment else [])]
    job, plan = plan_for(config, overrides, budgets, sizes, CONVENTION, spread=spread,
                         tokens_per_param=TOKENS_PER_PARAM, centre=centre)  # fmt: skip
    settings = member_settings(job, plan, Corrections())
    return plan_members(config, overrides, plan, settings, list(range(seeds)) if seeds > 1 else None)


def _train(members, executor: str, progress: Callable[[str], None] | None):
    """Submit the members that are not done yet as one array; wait; the sweep's collected Dataset."""
    from jobs.sweep import collect, status, submit, wait

    sweep_dir = members[0].config.sweep_dir
    done = (
        {m.run_id for m in status(sweep_dir) if m.state == "done"} if (sweep_dir / "manifest.jsonl").exists() else set()
    )
    todo = [m for m in members if m.config.resolved_run_id not in done]
    if todo:
        submit(todo, executor)
    current = wait(sweep_dir, run_ids=[m.config.resolved_run_id for m in members], progress=progress)
    failed = [m for m in current if m.state == "failed"]
    if failed:
        from workbench.errors import InputError

        raise InputError(
            f"{len(failed)} run(s) of {sweep_dir} failed, e.g. {failed[0].run_id}: {failed[0].detail} "
            f"(log {failed[0].log}); `workbench jobs resubmit {sweep_dir}` reruns them"
        )
    return sweep_dir, collect(sweep_dir)


def _timing(ds) -> dict[str, float]:
    """Summed member start-up and training seconds (each member's last leg) of a collected sweep."""
    out = {}
    for name in ("startup_s", "train_s"):
        out[name] = float(np.nansum(ds[name].values)) if name in ds else math.nan
    return out


def run_study(
    root: str | Path,
    *,
    executor: str = "auto",
    budgets: Sequence[float] = BUDGETS,
    sizes: int = SIZES,
    holdout_factor: float = HOLDOUT_FACTOR,
    holdout_sizes: int = HOLDOUT_SIZES,
    overrides: Sequence[str] = (),
    seeds: int = 1,
    replicates: int = 1000,
    bootstrap: int = 200,
    progress: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """The study of the module docstring; returns (and writes to study.json) its numbers."""
    from scaling.isoflop import isoflop_optima
    from scaling.study.predict import fit_both, predict_isoflop, predict_parametric
    from scaling.study.runs import runs_from_sweep
    from scaling.table import load_runs

    say = say or (lambda text: None)
    root = Path(root).absolute()
    overrides = [f"root={root}", *overrides]
    started = time.monotonic()
    budgets = sorted(float(b) for b in budgets)

    listed = ", ".join(f"{b:.3g}" for b in budgets)
    say(f"1/4 training {len(budgets)} budgets x {sizes} sizes x {seeds} seed(s) ({listed} FLOPs)")
    grid_members = _plan_members(CONFIG, overrides, budgets, sizes, spread=8.0, seeds=seeds)
    t0 = time.monotonic()
    grid_dir, grid = _train(grid_members, executor, progress)
    grid_wall = time.monotonic() - t0

    say("2/4 fitting Approaches 2 and 3")
    t0 = time.monotonic()
    runs = load_runs(runs_from_sweep(grid, CONVENTION, name=str(grid_dir)), convention=CONVENTION, name=str(grid_dir))
    holdout = holdout_factor * budgets[-1]
    optima, isoflop_fit, parametric_fit = fit_both(runs, replicates=replicates, bootstrap=bootstrap)
    isoflop_pred, parametric_pred = predict_isoflop(isoflop_fit, holdout), predict_parametric(parametric_fit, holdout)
    fit_s = time.monotonic() - t0

    say(
        f"3/4 training {holdout_sizes} sizes at the held-out budget {holdout:.3g} around N* = {isoflop_pred.N_star:.4g}"
    )
    experiment = f"{grid_members[0].config.experiment}_holdout"
    check_members = _plan_members(
        CONFIG,
        overrides,
        [holdout],
        holdout_sizes,
        spread=HOLDOUT_SPREAD,
        centre=isoflop_pred.N_star,
        experiment=experiment,
        seeds=seeds,
    )
    t0 = time.monotonic()
    check_dir, check = _train(check_members, executor, progress)
    check_wall = time.monotonic() - t0

    say("4/4 comparing")
    measured = load_runs(
        runs_from_sweep(check, CONVENTION, name=str(check_dir)), convention=CONVENTION, name=str(check_dir)
    )
    # the measured curve: each size's loss averaged over its seeds
    measured = measured.groupby("N", as_index=False)[["D", "C", "loss"]].mean()
    best = measured.loc[measured["loss"].idxmin()]
    [check_optimum] = isoflop_optima(measured, replicates=0)
    measured_N = check_optimum.N_star if check_optimum.ok else float(best["N"])
    grid_time, check_time = _timing(grid), _timing(check)
    timing = {k: grid_time[k] + check_time[k] for k in ("startup_s", "train_s")}
    result = {
        "convention": CONVENTION,
        "budgets": budgets,
        "sizes": sizes,
        "seeds": seeds,
        "holdout_budget": holdout,
        "grid": [
            {"budget": o.C, "status": o.status, "N_star": o.N_star, "loss_star": o.loss_star, "interior": o.ok}
            for o in optima
        ],
        "prediction": {"isoflop": isoflop_pred.to_json(), "parametric": parametric_pred.to_json()},
        "measured": {
            "best_loss": float(best["loss"]),
            "best_N": float(best["N"]),
            "interpolated_N": check_optimum.N_star if check_optimum.ok else None,
            "interpolated_status": check_optimum.status,
            "N": measured_N,
            "runs": measured[["N", "D", "loss"]].to_dict(orient="records"),
        },
        "comparison": {
            "loss_error": float(best["loss"]) / parametric_pred.L_star - 1,
            "loss_error_isoflop": float(best["loss"]) / isoflop_pred.L_star - 1,
            "N_ratio": measured_N / isoflop_pred.N_star,
            "N_ratio_parametric": measured_N / parametric_pred.N_star,
        },
        "timing": {
            "wall_s": time.monotonic() - started,
            "grid_wall_s": grid_wall,
            "holdout_wall_s": check_wall,
            "fit_s": fit_s,
            "member_startup_s": timing["startup_s"],
            "member_train_s": timing["train_s"],
            "members": len(grid_members) + len(check_members),
        },
        "sweeps": {"grid": str(grid_dir), "holdout": str(check_dir)},
    }
    atomic_write_text(grid_dir / "study.json", json.dumps(result, indent=2, allow_nan=True))
    plot_study(runs, optima, result, measured, grid_dir / "study.png")
    return result


def plot_study(runs, optima, result: dict, measured, path: Path | None = None, ax=None):
    """Left: IsoFLOP curves with their minima, and the held-out budget's runs with the predicted
    optimum. Right: the frontier N*(C) through the minima, extended to the held-out budget."""
    from workbench.figures import finish_figure, new_figure

    fig, axes = new_figure((11.5, 4.4), ncols=2)
    left, right = axes[0]
    for o in optima:
        line = left.plot(o.sizes, o.losses, "o", label=f"C = {o.C:.2g}")[0]
        if o.curve_N.size:
            left.plot(o.curve_N, o.curve_loss, "-", color=line.get_color(), lw=1)
        if o.ok:
            left.plot([o.N_star], [o.loss_star], "*", color=line.get_color(), ms=12)
    pred = result["prediction"]
    left.plot(measured["N"], measured["loss"], "s-", color="k", label=f"held out, C = {result['holdout_budget']:.2g}")
    iso, par = pred["isoflop"], pred["parametric"]
    left.errorbar(
        [iso["N_star"]],
        [par["L_star"]],
        yerr=_err(par["L_star"], par["L_ci"]),
        xerr=_err(iso["N_star"], iso["N_ci"]),
        fmt="D",
        color="crimson",
        label="predicted N*, L*",
    )
    left.set(
        xscale="log", xlabel=f"N ({result['convention']})", ylabel="held-out loss (nats/token)", title="IsoFLOP curves"
    )
    left.legend(fontsize=8)
    C = np.array([o.C for o in optima if o.ok])
    N = np.array([o.N_star for o in optima if o.ok])
    right.plot(C, N, "*", ms=12, label="IsoFLOP minima")
    grid = np.geomspace(C.min() / 1.5, result["holdout_budget"] * 1.5, 50)
    if C.size >= 2:
        slope, intercept = np.polyfit(np.log(C), np.log(N), 1)
        right.plot(grid, np.exp(intercept) * grid**slope, "-", lw=1, label=f"N* ∝ C^{slope:.2f}")
    right.errorbar(
        [result["holdout_budget"]],
        [iso["N_star"]],
        yerr=_err(iso["N_star"], iso["N_ci"]),
        fmt="D",
        color="crimson",
        label="predicted",
    )
    right.plot([result["holdout_budget"]], [result["measured"]["N"]], "s", color="k", label="measured")
    right.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N*", title="compute-optimal size")
    right.legend(fontsize=8)
    return finish_figure(fig, path)


def _err(centre: float, ci) -> list | None:
    if ci is None or any(v is None or not math.isfinite(v) for v in ci):
        return None
    return [[max(centre - ci[0], 0)], [max(ci[1] - centre, 0)]]
