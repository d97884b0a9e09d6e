"""`workbench scaling plan | runs | predict`: lay out an IsoFLOP study of a gpt_lm config and submit
it as one job array, read the trained sweep back as a table of runs, and predict the optimum at a
larger budget. (`workbench scaling fit SWEEP_DIR` fits the sweep with any method.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.conventions import CONVENTIONS
from scaling.methods.base import positive_float, replicate_count, whole_number
from scaling.report import format_table
from workbench.cli import add_job_flags, add_json_flag, add_parser, emit
from workbench.errors import InputError

if TYPE_CHECKING:
    import xarray as xr

PLAN_COLUMNS = ("budget", "width", "depth", "N", "D", "steps", "C")


def register(verbs) -> None:
    _register_plan(verbs)
    _register_runs(verbs)
    _register_predict(verbs)


# ----------------------------------------------------------------------------------------- sweeps


def sweep_dataset(path: Path) -> xr.Dataset | None:
    """The collected sweep at `path` (a sweep directory, collected now, or a sweep.nc), else None."""
    from scaling.study.runs import is_sweep
    from workbench.store import open_dataset

    if path.is_dir():
        if (path / "manifest.jsonl").is_file():
            from jobs.sweep import collect

            return collect(path)
        if (path / "sweep.nc").is_file():
            return open_dataset(path / "sweep.nc")
        raise InputError(f"{path}: a directory, but not a sweep (no manifest.jsonl or sweep.nc)")
    if path.suffix == ".nc" and path.is_file():
        try:
            ds = open_dataset(path)
        except (OSError, ValueError):
            return None  # read_table then names what is wrong with the file
        return ds if is_sweep(ds) else None
    return None


# ------------------------------------------------------------------------------------------- plan


def _register_plan(verbs) -> None:
    p = add_parser(verbs, "plan", _plan)
    add_job_flags(
        p,
        config_help="a gpt_lm job config (YAML/JSON), e.g. jobs/configs/isoflop_demo.yaml",
        set_example="model.head_dim=16",
        wait=True,
    )
    p.add_argument("--budgets", required=True, help="compute budgets in FLOPs, comma-separated (e.g. 1e13,4e13)")
    p.add_argument("--sizes", type=whole_number(2, 64), default=5, help="model sizes per budget")
    p.add_argument("--convention", required=True, choices=CONVENTIONS, help="what N and the FLOPs count")
    p.add_argument("--spread", type=positive_float, default=8.0, help="factor the sizes of one budget span")
    p.add_argument(
        "--tokens-per-param",
        type=positive_float,
        default=20.0,
        help="D/N at the expected optimum, which the sizes centre on (Hoffmann et al.: about 20)",
    )
    p.add_argument(
        "--centre",
        type=positive_float,
        metavar="N",
        help="centre the sizes on this N instead (e.g. N* from `workbench scaling predict`)",
    )
    corrections = p.add_argument_group("training corrections (Porian et al. 2024; each on unless switched off)")
    corrections.add_argument(
        "--no-warmup-correction",
        action="store_true",
        help="the config's fixed warmup_steps for every run (Kaplan-style)",
    )
    corrections.add_argument(
        "--no-decay-correction",
        action="store_true",
        help="every run follows the longest run's cosine (Kaplan-style fixed horizon)",
    )
    corrections.add_argument("--no-mup", action="store_true", help="standard parametrisation instead of muP")
    corrections.add_argument("--kaplan-style", action="store_true", help="all three corrections off")
    p.add_argument("--submit", action="store_true", help="run the plan as one job array (see --executor, --wait)")
    p.add_argument("--seeds", help="train every planned run once per seed, e.g. 0,1,2 (default: the config's seed)")


def _plan(args) -> int:
    """Plan an IsoFLOP study of a gpt_lm config, and run it as one job array.

    For each budget C, K widths (and, where needed, depths) log-spaced over a factor --spread around
    N = sqrt(C / (6·tokens-per-param)) (or --centre), and the steps that make each run's FLOPs (under
    --convention, attention included where it counts it) equal C to within 1 %. Each run warms up
    for N tokens (at most a tenth of the run), decays its learning rate to its own last step and
    uses muP, unless switched off. --submit runs the plan into <root>/<experiment>.

    examples:
      workbench scaling plan isoflop_demo --budgets 1e11,3e11,1e12 --sizes 5 --convention standard
      workbench scaling plan isoflop_demo --budgets 1e11,3e11 --convention standard --submit --wait
      workbench scaling plan lm_mup_tiny --budgets 1e13,4e13 --convention attention --json
    """
    from scaling.study.plan import Corrections

    seeds = _seeds(args.seeds)
    job, plan = _load_plan(args)
    corrections = Corrections(
        warmup=not (args.no_warmup_correction or args.kaplan_style),
        decay=not (args.no_decay_correction or args.kaplan_style),
        mup=not (args.no_mup or args.kaplan_style),
    )
    settings = member_settings(job, plan, corrections)
    rows = [
        run.to_json()
        | {
            "warmup_steps": s["model.warmup_steps"],
            "lr_decay_steps": s["model.lr_decay_steps"],
            "parametrization": s["model.parametrization"],
        }
        for run, s in zip(plan, settings)
    ]
    text = f"IsoFLOP plan for {args.config} ({args.convention} convention; {len(rows)} runs)\n" + format_table(
        rows, [(k, k) for k in (*PLAN_COLUMNS, "warmup_steps", "lr_decay_steps")]
    )
    if not args.submit:
        emit(args, text, rows)
        return 0
    from jobs.cli import submit_members

    members = plan_members(args.config, args.overrides, plan, settings, seeds)
    code, sweep_text, payload = submit_members(args, members, single=False)
    emit(args, text + "\n\n" + sweep_text, {"plan": rows, "sweep": payload})
    return code


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise InputError(f"--seeds {text!r}: give distinct non-negative integers separated by commas, e.g. 0,1,2")
    return seeds


def _load_plan(args):
    try:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise InputError(f"--budgets {args.budgets!r}: give FLOPs separated by commas, e.g. 1e13,4e13") from None
    return plan_for(args.config, args.overrides, budgets, args.sizes, args.convention, spread=args.spread,
                    tokens_per_param=args.tokens_per_param, centre=args.centre)  # fmt: skip


def plan_for(config: str, overrides, budgets, sizes: int, convention: str, **options):
    """(the gpt_lm job config, its IsoFLOP plan); `options` go to `scaling.study.plan.plan_isoflop`."""
    from jobs.entrypoints import load_job_config
    from scaling.study.plan import plan_isoflop

    job = load_job_config(config, overrides)
    if job.kind != "gpt_lm":
        raise InputError(f"{config}: scaling plan needs a gpt_lm job config, this one is kind {job.kind!r}")
    m = job.model
    plan = plan_isoflop(budgets, sizes, convention, head_dim=m.head_dim, depth=m.depth, seq_len=m.seq_len,
                        batch_size=m.batch_size, vocab=256, mlp_ratio=m.mlp_ratio, **options)  # fmt: skip
    return job, plan


def member_settings(job, plan, corrections) -> list[dict]:
    """Each planned run's settings (`scaling.study.plan.run_settings`) for this job config."""
    from scaling.study.plan import run_settings

    m = job.model
    return run_settings(plan, corrections, tokens_per_step=m.batch_size * m.seq_len, warmup_steps=m.warmup_steps)


def plan_members(config: str, overrides, plan, settings, seeds=None) -> list:
    """One sweep member per planned run (and per seed in `seeds`, when given); sweep dimensions
    budget, width and depth (and seed)."""
    from jobs.entrypoints import load_job_config
    from jobs.sweep import Member

    members = []
    for index, (run, own) in enumerate(zip(plan, settings)):
        for seed in seeds or [None]:
            changes = tuple(f"{key}={value}" for key, value in own.items())
            run_id = f"{index:03d}_C={run.budget:.3g}_w={run.width}_L={run.depth}"
            params = {"budget": run.budget, "width": run.width, "depth": run.depth}
            if seed is not None:
                changes += (f"train.seed={seed}",)
                run_id += f"_s={seed}"
                params["seed"] = seed
            job = load_job_config(config, [*overrides, *changes])
            members.append(Member(dataclasses.replace(job, run_id=run_id), params, changes))
    return members


# ------------------------------------------------------------------------------------------- runs


def _register_runs(verbs) -> None:
    p = add_parser(verbs, "runs", _runs, json=True)
    p.add_argument("sweep", help="a gpt_lm sweep directory (or its collected sweep.nc)")
    p.add_argument("--convention", required=True, choices=CONVENTIONS, help="what N and the FLOPs count")
    p.add_argument("--out", help="write the table to this CSV file")


def _runs(args) -> int:
    """A trained gpt_lm sweep as the table of runs the fits read (N, D, C, loss, seed, budget).

    N and C follow --convention from each member's shape; D is its tokens per step times the
    steps it trained; loss is its final held-out loss. `workbench scaling fit SWEEP` reads the same
    table; --out writes it as CSV for other tools.

    examples:
      workbench scaling runs runs/isoflop_demo --convention standard
      workbench scaling runs runs/isoflop_demo --convention attention --out runs.csv
    """
    from scaling.study.runs import runs_from_sweep
    from workbench.atomic import check_writable
    from workbench.store import atomic_write_text

    out = check_writable(args.out, "--out", suffixes=(".csv",)) if args.out else None
    runs = runs_from_sweep(_sweep_or_refuse(args.sweep), args.convention, name=args.sweep)
    if out is not None:
        atomic_write_text(out, runs.to_csv(index=False, float_format="%.17g"))
    rows = runs.to_dict(orient="records")
    text = f"{len(rows)} runs of {args.sweep} ({args.convention} convention)\n" + format_table(
        rows, [(k, k) for k in runs.columns]
    )
    if out is not None:
        text += f"\nwrote {out}"
    emit(args, text, rows)
    return 0


def _sweep_or_refuse(path: str):
    ds = sweep_dataset(Path(path))
    if ds is None:
        raise InputError(f"{path}: not a sweep directory or a collected sweep.nc")
    return ds


# ---------------------------------------------------------------------------------------- predict


def _register_predict(verbs) -> None:
    p = add_parser(verbs, "predict", _predict)
    p.add_argument("source", help="a fit (`workbench scaling fit --out`), a gpt_lm sweep directory, or a CSV of runs")
    p.add_argument("--budget", type=positive_float, required=True, help="the compute budget C to predict at (FLOPs)")
    p.add_argument("--convention", choices=CONVENTIONS, help="what N counts (required for a sweep or CSV)")
    p.add_argument("--replicates", type=replicate_count, default=1000, help="Approach 2 noise-bootstrap replicates")
    p.add_argument(
        "--bootstrap",
        type=whole_number(0, 100_000),
        default=200,
        help="Approach 3 bootstrap refits for its intervals (0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_json_flag(p)


def _predict(args) -> int:
    """N*, D* and L* at a budget, with confidence intervals, from a fit or straight from the runs.

    From a sweep or a CSV of runs, both Approach 2 (IsoFLOP minima; N*(C) = G·C^a, L* by a power
    law through the budgets' minimum losses) and Approach 3 (parametric L(N, D)) are fitted and
    reported; from a fit file, the fit's own approach. Lay out a check sweep at the budget with
    `workbench scaling plan CONFIG --budgets C --centre N*`.

    examples:
      workbench scaling predict runs/isoflop_demo --budget 4e12 --convention standard
      workbench scaling predict fit.nc --budget 4e12 --json
    """
    from scaling.study.predict import predict_from_dataset

    source = Path(args.source)
    if not source.exists():
        raise InputError(f"{args.source}: no such file or directory")
    sweep = sweep_dataset(source)
    if sweep is None and source.suffix == ".nc":
        from workbench.store import open_dataset

        fit = open_dataset(source)
        if "method" in fit.attrs:
            predictions = [predict_from_dataset(fit, args.budget, name=args.source)]
            return _emit_predictions(args, predictions, f"{args.source} ({fit.attrs['method']})")
    if args.convention is None:
        raise InputError(f"{args.source}: runs need --convention to say what N counts")
    from scaling.study.predict import predict_from_runs

    predictions = predict_from_runs(
        _runs_table(args, source, sweep),
        args.budget,
        replicates=args.replicates,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    return _emit_predictions(args, predictions, f"{args.source} ({args.convention} convention)")


def _runs_table(args, source: Path, sweep):
    from scaling.study.runs import runs_from_sweep
    from scaling.table import load_runs

    table = runs_from_sweep(sweep, args.convention, name=args.source) if sweep is not None else source
    return load_runs(table, convention=args.convention, name=args.source)


def _emit_predictions(args, predictions, source: str) -> int:
    rows = [p.to_json() for p in predictions]

    def interval(ci):
        return "n/a" if any(v != v for v in ci) else f"[{ci[0]:.4g}, {ci[1]:.4g}]"

    table = [
        {
            "approach": p.approach,
            "N*": p.N_star,
            "N* 95%": interval(p.N_ci),
            "D*": p.D_star,
            "D* 95%": interval(p.D_ci),
            "L*": p.L_star,
            "L* 95%": interval(p.L_ci),
        }
        for p in predictions
    ]
    text = f"compute-optimal allocation at C = {args.budget:.4g} from {source}\n" + format_table(
        table, [(k, k) for k in table[0]]
    )
    emit(args, text, rows)
    return 0
