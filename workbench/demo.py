"""`workbench demo`: the end-to-end showcase, on a 2-core CPU, with nothing downloaded.

`workbench demo` (pipeline `mup`, the flagship): a muP width sweep of tiny byte-level GPTs on the
seeded Markov corpus (known entropy rate) goes through the jobs layer as one array, one job per
width (SLURM when `sbatch` is on PATH and a controller answers, otherwise local processes). The
runs are collected into one Dataset, L(N) = a·N^b + c is fitted on every width but the largest,
and the largest (≥ 4× more parameters than the largest fitted width) is predicted, then compared
with its actual loss. A PNG of the fit is written. Every width uses the one learning rate tuned
at the base width: that is what muP promises to make possible (Yang et al. 2021, Tensor Programs V),
and the fitted law is Mu-scaling's L(N) = a·N^b + c (Yao & Wang 2023).

`workbench demo ladder`: the scaling-law reconciliation of Porian et al. (2024) on the bundled
RefinedWeb IsoFLOP runs, one job per ladder step.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from scaling.methods.base import replicate_count
from workbench.atomic import check_writable, check_writable_dir
from workbench.cli import Progress, add_executor_flag, add_json_flag, add_parser, add_verbosity_flags, emit, int_list

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "lm_mup_demo.yaml"
DEMO_WIDTHS = (16, 24, 32, 48, 128)  # the last is predicted: 7.1x the non-embedding parameters of 48


def register(areas, name: str, help_text: str) -> None:
    p = add_parser(areas, name, run_demo, help=help_text)
    p.add_argument("pipeline", nargs="?", default="mup", choices=("mup", "ladder", "isoflop"),
                   help="mup: width sweep + loss prediction (default); ladder: Porian reconciliation; "
                        "isoflop: a compute-optimal study and its check at a held-out budget")  # fmt: skip
    p.add_argument("--plot", help="write the figure to this PNG (mup default: <sweep dir>/prediction.png)")
    add_executor_flag(p)
    p.add_argument("--root", default="runs", help="results directory (default runs/)")
    p.add_argument(
        "--widths", default=",".join(map(str, DEMO_WIDTHS)), help="mup: comma-separated widths, the last one predicted"
    )
    p.add_argument("--steps", type=int, default=None, help="mup: training steps per width (default: the config's)")
    p.add_argument(
        "--replicates",
        type=replicate_count,
        default=1000,
        help="ladder: noise-bootstrap replicates per budget (1 to 100000)",
    )
    p.add_argument("--budgets", help="isoflop: the study's budgets in FLOPs, comma-separated (default 1e11,3e11,1e12)")
    p.add_argument("--sizes", type=int, default=5, help="isoflop: model sizes per budget")
    p.add_argument("--holdout-factor", type=float, default=4.0, help="isoflop: held-out budget / the largest")
    p.add_argument("--holdout-sizes", type=int, default=4, help="isoflop: sizes trained at the held-out budget")
    p.add_argument("--seeds", type=int, default=1, help="isoflop: training seeds per size (losses averaged)")
    add_verbosity_flags(p)
    add_json_flag(p)


def run_demo(args) -> int:
    """The end-to-end showcase, on a 2-core CPU, with nothing downloaded.

    mup (the default): a muP width sweep of tiny GPTs as one job array, L(N) fitted on the smaller
    widths and the largest predicted. ladder: Porian et al.'s scaling-law reconciliation as jobs.

    examples:
      workbench demo
      workbench demo --plot sweep.png --executor local
      workbench demo ladder --plot ladder.png
    """
    # Outputs are checked before the minutes of training or fitting, not after them.
    if args.plot is not None:
        check_writable(args.plot, "--plot", suffixes=(".png",))
    check_writable_dir(Path(args.root) / "demo", "--root")
    if args.pipeline == "isoflop":
        return run_isoflop(args)
    return run_ladder(args) if args.pipeline == "ladder" else run_mup(args)


def run_isoflop(args) -> int:
    """The compute-optimal study of workbench.demo_isoflop, with its summary."""
    from workbench.demo_isoflop import BUDGETS, run_study
    from workbench.errors import InputError

    try:
        budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else list(BUDGETS)
    except ValueError:
        raise InputError(f"--budgets {args.budgets!r}: give FLOPs separated by commas, e.g. 1e11,3e11,1e12") from None
    if len(budgets) < 3:
        raise InputError(f"--budgets {args.budgets!r}: Approach 2 needs at least three budgets")
    if not (args.holdout_factor > 1 and math.isfinite(args.holdout_factor)):
        raise InputError(f"--holdout-factor {args.holdout_factor}: must be a number > 1")
    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: at least one seed per size")
    if args.sizes < 3 or args.holdout_sizes < 2:
        raise InputError("--sizes must be >= 3 (an interior minimum) and --holdout-sizes >= 2")
    waiting = Progress(args)
    say = (lambda text: None) if args.json or args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    try:
        result = run_study(args.root, executor=args.executor, budgets=budgets, sizes=args.sizes,
                           holdout_factor=args.holdout_factor, holdout_sizes=args.holdout_sizes, seeds=args.seeds,
                           progress=waiting, say=say)  # fmt: skip
    finally:
        waiting.close()
    emit(args, isoflop_text(result), result)
    return 0


def isoflop_text(result: dict) -> str:
    from scaling.report import format_table

    iso, par = result["prediction"]["isoflop"], result["prediction"]["parametric"]
    measured, timing = result["measured"], result["timing"]

    def ci(values):
        return (
            "n/a"
            if values is None or any(v is None or v != v for v in values)
            else f"[{values[0]:.4g}, {values[1]:.4g}]"
        )

    grid = format_table(
        result["grid"], [("budget", "C"), ("N_star", "N*"), ("loss_star", "loss*"), ("status", "minimum")]
    )
    rows = [
        {"": "Approach 2 (IsoFLOP)", "N*": iso["N_star"], "N* 95%": ci(iso["N_ci"]), "L*": iso["L_star"],
         "L* 95%": ci(iso["L_ci"])},
        {"": "Approach 3 (parametric)", "N*": par["N_star"], "N* 95%": ci(par["N_ci"]), "L*": par["L_star"],
         "L* 95%": ci(par["L_ci"])},
        {"": "measured", "N*": measured["N"], "N* 95%": "", "L*": measured["best_loss"], "L* 95%": ""},
    ]  # fmt: skip
    startup, train = timing["member_startup_s"], timing["member_train_s"]
    share = startup / (startup + train) if startup + train > 0 else math.nan
    comparison = result["comparison"]
    return "\n".join([
        f"IsoFLOP study ({result['convention']} convention, {result.get('seeds', 1)} seed(s) per size) "
        f"in {result['sweeps']['grid']}",
        grid,
        "",
        f"held-out budget C = {result['holdout_budget']:.3g}:",
        format_table(rows, [(k, k) for k in rows[0]]),
        f"measured best loss is {100 * comparison['loss_error']:+.2f} % from Approach 3's L* "
        f"({100 * comparison['loss_error_isoflop']:+.2f} % from Approach 2's); measured N* is "
        f"{comparison['N_ratio']:.2f}x Approach 2's ({comparison['N_ratio_parametric']:.2f}x Approach 3's)",
        "",
        f"time: {timing['wall_s']:.0f} s in all ({timing['members']} runs); member start-up {startup:.0f} s and "
        f"training {train:.0f} s summed over runs (start-up {100 * share:.0f} %); fits {timing['fit_s']:.0f} s",
        f"figure: {Path(result['sweeps']['grid']) / 'study.png'}",
    ])  # fmt: skip


# ------------------------------------------------------------------------------ muP width sweep


def run_mup(args) -> int:
    from jobs.sweep import collect, expand_grid, submit, wait
    from scaling.mup_predict import predict_sweep
    from scaling.report import plot_mup_prediction
    from workbench.errors import InputError
    from workbench.store import atomic_write_netcdf

    widths = int_list(args.widths, "--widths")
    if len(widths) < 4:
        raise InputError(f"--widths {args.widths}: the demo fits all but the largest, so it needs at least 4")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps = {args.steps} must be >= 1")
    experiment = time.strftime("lm_mup-%Y%m%d-%H%M%S")  # a fresh sweep each time; earlier ones stay
    overrides = [f"root={(Path(args.root) / 'demo').absolute()}", f"experiment={experiment}"]
    if args.steps is not None:
        overrides.append(f"train.max_steps={args.steps}")
    members = expand_grid(DEMO_CONFIG, {"model.width": [str(w) for w in widths]}, overrides)
    config = members[0].config
    sweep = config.sweep_dir
    t0 = time.time()
    records = submit(members, args.executor)
    waiting = Progress(args)
    try:
        statuses = wait(sweep, timeout_s=3600, poll_s=2.0, progress=waiting)
    finally:
        waiting.close()
    failed = [m for m in statuses if m.state != "done"]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(statuses)} demo runs failed, e.g. {failed[0].run_id}: "
            f"{failed[0].detail or 'see ' + str(failed[0].log)}"
        )
    ds = collect(sweep, members=statuses)
    atomic_write_netcdf(ds, sweep / "sweep.nc")
    wall = time.time() - t0
    result = predict_sweep(ds, holdout=1)
    floor = float(ds["entropy_rate"].max())
    plot = Path(args.plot) if args.plot else sweep / "prediction.png"
    plot_mup_prediction(result, plot, floor=floor)
    model = config.model
    result.update(
        {
            "sweep": str(sweep),
            "plot": str(plot),
            "executor": records[0]["executor"],
            "entropy_rate": floor,
            "wall_s": wall,
            "lr": model.lr,
            "base_width": model.base_width,
            "steps": config.train.max_steps,
        }
    )
    emit(args, _mup_text(result, model), result)
    return 0


def _mup_text(result: dict, model) -> str:
    from scaling.report import format_table

    fit = result["fit"]
    [held] = result["predictions"]
    largest_fitted = result["fitted"][-1]["params"]
    rows = [
        {"width": r["width"], "params": r["params"], "loss": r["actual"], "role": "fitted"} for r in result["fitted"]
    ]
    rows.append(
        {
            "width": held["width"],
            "params": held["params"],
            "loss": held["actual"],
            "predicted": held["predicted"],
            "band": [held["low"], held["high"]],
            "error": f"{100 * held['rel_error']:+.2f}%",
            "role": "held out",
        }
    )
    return "\n".join(
        [
            f"muP width sweep: {len(rows)} byte-level GPTs (depth {model.depth}, head size {model.head_dim}, "
            f"base width {model.base_width}) on the order-{model.markov_order} Markov corpus, "
            f"{result['steps']} steps each,",
            f"all at one learning rate ({model.lr:g}, chosen at the base width); ran as {len(rows)} jobs on the "
            f"{result['executor']} executor in {result['wall_s']:.0f} s ({result['sweep']}).",
            "",
            format_table(
                rows,
                [
                    ("width", "width"),
                    ("params", "N (non-emb.)"),
                    ("role", ""),
                    ("loss", "val loss"),
                    ("predicted", "predicted"),
                    ("band", "95% band"),
                    ("error", "rel. error"),
                ],
            ),
            "",
            f"L(N) = {fit['a']:.4g}·N^{fit['b']:.4f} + {fit['c']:.4f}, fitted on the {len(result['fitted'])} "
            f"smaller widths; the held-out width has {held['params'] / largest_fitted:.1f}x the parameters of the "
            "largest fitted.",
            f"Fitted floor c = {fit['c']:.4f} vs the source's entropy rate {result['entropy_rate']:.4f} nats/token.",
            f"Figure: {result['plot']}",
            "Next: `workbench lm predict SWEEP --holdout 2`, `workbench lm coord-check --plot coord.png`, "
            "`workbench demo ladder`.",
        ]
    )


# ------------------------------------------------------------------------ Porian reconciliation

DATASET = "porian-rw"


def ladder_step(dataset: str, index: int, replicates: int, seed: int) -> dict:
    """One job of the ladder demo: Approach 2 on one step of Porian's ladder; returns its table row."""
    from scaling.datasets import load_dataset
    from scaling.reconcile import PORIAN_DATASET_LABEL, PORIAN_LADDER, PORIAN_NOISE, reconcile

    published = load_dataset("porian-published")
    published = published[published["dataset"] == PORIAN_DATASET_LABEL[dataset]]
    [(_, _, row)] = reconcile(
        load_dataset(dataset),
        steps=(PORIAN_LADDER[index],),
        noise=PORIAN_NOISE[dataset],
        replicates=replicates,
        seed=seed,
        published=published,
    )
    return row


def run_ladder(args) -> int:
    from jobs.experiment import run_members
    from scaling.reconcile import PORIAN_LADDER
    from scaling.report import format_table, plot_ladder
    from workbench.jobspec import JobSpec

    # Every step uses the same seed, as reconcile_porian does, so the rows equal its ladder.
    steps = [(DATASET, i, args.replicates, 0) for i in range(len(PORIAN_LADDER))]
    folder = (Path(args.root) / "demo" / "submitit").absolute()
    spec = JobSpec(name="demo", timeout_min=10, signal_delay_s=60, cpus_per_task=1)
    waiting = Progress(args)
    try:
        executor, rows = run_members(ladder_step, steps, spec, args.executor, folder, timeout_s=600, waiting=waiting)
    finally:
        waiting.close()
    if args.plot:
        plot_ladder(rows, args.plot)
    text = "\n".join(
        [
            "Scaling-law reconciliation (Porian et al. 2024) on the bundled RefinedWeb IsoFLOP runs:",
            "each step removes one difference between Kaplan's and Hoffmann's setups; Approach 2 per step.",
            f"(ran as {len(rows)} jobs, one per step, on the {executor} executor; job logs in {folder})",
            "",
            format_table(
                rows,
                [
                    ("step", "step"),
                    ("convention", "N counts"),
                    ("a", "a"),
                    ("a_ci", "95% CI"),
                    ("published_a", "published"),
                    ("N_star_at_5.88e23", "N*(5.88e23)"),
                ],
            ),
            "",
            "Kaplan's 0.73-0.88 falls to Hoffmann's 0.5 once head FLOPs, warmup and tuning are corrected.",
            "Next: `workbench scaling --help`, `workbench scaling reconcile --dataset porian-owt2`.",
        ]
    )
    emit(args, text, rows)
    return 0
