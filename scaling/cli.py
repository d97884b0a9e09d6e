"""`workbench scaling ...`: fit, reconcile, simulate and inspect scaling laws from the command line."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from scaling import laws
from workbench.cli import add_area, add_json_flag, add_parser, emit
from workbench.errors import InputError

METHODS = ("parametric", "isoflop", "envelope", "kaplan")
COLUMN_FLAGS = ("N", "D", "C", "loss", "U", "seed", "run", "budget", "width", "depth", "vocab", "seq_len", "d_ff")
EPOCH_DATASET = "epoch-chinchilla"  # not bundled (no licence): read from the shared reference folder
PRESETS = {"hoffmann": laws.HOFFMANN_PRINTED, "hoffmann-unrounded": laws.HOFFMANN_UNROUNDED,
           "epoch": laws.EPOCH_2024, "muennighoff-c4": laws.MUENNIGHOFF_C4}


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text)
    _register_fit(verbs)
    _register_reconcile(verbs)
    _register_simulate(verbs)
    _register_allocate(verbs)
    _register_datasets(verbs)


# ------------------------------------------------------------------------------------------- input


def _add_input_flags(p: argparse.ArgumentParser, *, convention_required: bool = True) -> None:
    p.add_argument("file", nargs="?", help="CSV or netCDF table of runs (or use --dataset)")
    p.add_argument("--dataset", help="a bundled dataset by name (see `workbench scaling datasets`)")
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only rows whose column equals the value (repeatable)")
    from scaling.conventions import CONVENTIONS

    p.add_argument("--convention", required=convention_required, choices=CONVENTIONS,
                   help="what N counts (kaplan: no embedding/head; standard: + head; attention: + attention "
                        "FLOPs; chinchilla: Hoffmann App. F). Required: it changes the exponent by ~0.1")
    group = p.add_argument_group("column names (map your table's columns onto the canonical ones)")
    for col in COLUMN_FLAGS:
        group.add_argument(f"--col-{col.replace('_', '-')}", dest=f"col_{col}", metavar="NAME",
                           help=f"column holding {col}")


def _load_table(args) -> "pd.DataFrame":  # noqa: F821
    from scaling.datasets import load_dataset, load_epoch_chinchilla
    from scaling.table import load_runs

    columns = {c: getattr(args, f"col_{c}") for c in COLUMN_FLAGS if getattr(args, f"col_{c}", None)}
    if bool(args.file) == bool(args.dataset):
        raise InputError("give either a FILE or --dataset NAME (exactly one)")
    if args.dataset == EPOCH_DATASET:
        try:
            source, name = load_epoch_chinchilla(), EPOCH_DATASET
        except FileNotFoundError as error:
            raise InputError(str(error)) from None
    elif args.dataset:
        source, name = load_dataset(args.dataset), args.dataset
    else:
        from scaling.table import read_table

        source, name = read_table(Path(args.file))
    if args.where:
        source = _filter_rows(source, name, args.where)
    # Before validation: a table mixing experiments would otherwise be reported as duplicate rows.
    _check_single_setup(source, name, args.convention)
    return load_runs(source, convention=args.convention, columns=columns, name=name)


def _filter_rows(source, name: str, where: list[str]):
    import pandas as pd

    table = source
    for clause in where:
        column, sep, value = clause.partition("=")
        if not sep or not column:
            raise InputError(f"--where {clause!r}: expected COLUMN=VALUE")
        if column not in table.columns:
            raise InputError(f"--where {clause!r}: {name} has no column '{column}'; columns: {', '.join(table.columns)}")
        values = table[column]
        keep = values.astype(str) == value
        if not keep.any():
            choices = ", ".join(map(str, pd.unique(values)[:20]))
            raise InputError(f"--where {clause!r}: no row of {name} has {column} = {value}; values: {choices}")
        table = table[keep]
    return table.reset_index(drop=True)


def _check_single_setup(runs, name: str, convention: str) -> None:
    """Tables that mix several experiments, or rows counted under another convention, are refused."""
    if "experiment" in runs.columns and runs["experiment"].nunique() > 1:
        choices = ", ".join(runs["experiment"].unique())
        raise InputError(f"{name} holds {runs['experiment'].nunique()} experiments; fit one with "
                         f"--where experiment=NAME (choices: {choices}), or use `workbench scaling reconcile`")
    if "flop_count" in runs.columns:
        counted = set(runs["flop_count"].astype(str))
        if counted != {convention}:
            raise InputError(f"{name}: N in these rows is counted under {sorted(counted)}, not --convention "
                             f"{convention}; pass --convention {sorted(counted)[0]}")


def _check_output(path: str | None, suffixes: tuple[str, ...], flag: str) -> Path | None:
    """Validate an output path before any work is done, so a bad flag costs nothing."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {path}: the file must end in {' or '.join(suffixes)}")
    if out.exists() and out.is_dir():
        raise InputError(f"{flag} {path} is a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is not a directory")
    return out


@contextlib.contextmanager
def _progress_bar(total: int, desc: str):
    """tqdm on stderr (hidden when stderr is not a terminal); yields a callback(n_done)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="fit", disable=None, leave=False)
    state = {"n": 0}

    def update(done: int) -> None:
        bar.update(done - state["n"])
        state["n"] = done

    try:
        yield update
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------- fit


def _register_fit(verbs) -> None:
    p = add_parser(verbs, "fit", help="fit a scaling law to a table of runs",
                   description="Fit Approach 3 (parametric L(N,D)), Approach 2 (IsoFLOP minima), Approach 1 "
                               "(envelope) or Kaplan's forms to a CSV/netCDF table of runs with columns N, D or C, "
                               "loss (optional seed, run, budget).",
                   examples="  workbench scaling fit runs.csv --method parametric --convention standard --json\n"
                            "  workbench scaling fit --dataset porian-rw --where experiment=cosine_decay "
                            "--method isoflop --convention standard --plot isoflop.png\n"
                            "  workbench scaling fit runs.csv --method parametric --convention kaplan "
                            "--bootstrap 1000 --out fit.nc")
    _add_input_flags(p)
    p.add_argument("--method", required=True, choices=METHODS, help="which estimator")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="parametric: refit N resamples of the runs for 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="random seed for bootstrap resampling and noise")
    p.add_argument("--tie", action="store_true", help="parametric: tie alpha = beta (Muennighoff et al.)")
    p.add_argument("--data-constrained", action="store_true",
                   help="parametric: Muennighoff et al.'s L(N, D, U) with repeated data (needs a U column of "
                        "unique tokens): base law on single-epoch runs (alpha = beta), then R*_D and R*_N")
    p.add_argument("--target-compute", type=float, default=5.88e23, metavar="C",
                   help="report the compute-optimal N*, D* at this budget (FLOPs)")
    p.add_argument("--interp", choices=("akima", "parabola"), default="akima",
                   help="isoflop: minimum per budget by Akima spline (Porian) or parabola (Hoffmann; biased)")
    p.add_argument("--noise", type=float, default=None, metavar="SIGMA",
                   help="isoflop: seed-noise std of the loss for the bootstrap (default: estimated from seed "
                        "replicates, else 0.002 as Porian's RefinedWeb runs)")
    p.add_argument("--replicates", type=int, default=1000, help="isoflop: noise-bootstrap replicates")
    p.add_argument("--unweighted", action="store_true", help="isoflop: ordinary instead of weighted least squares")
    p.add_argument("--form", choices=("ND", "N", "D"), default="ND",
                   help="kaplan: L(N, D) (Eq. 1.5), L(N) (Eq. 1.1, per-size frontier) or L(D) (Eq. 1.2)")
    p.add_argument("--out", help="write fitted parameters and bootstrap draws to this netCDF file (.nc)")
    p.add_argument("--plot", help="write a figure to this PNG file")
    add_json_flag(p)
    p.set_defaults(handler=_fit)


def _fit(args) -> int:
    out = _check_output(args.out, (".nc",), "--out")
    plot = _check_output(args.plot, (".png",), "--plot")
    if args.bootstrap < 0 or args.replicates < 0:
        raise InputError("--bootstrap and --replicates must be >= 0")
    if not args.target_compute > 0:
        raise InputError(f"--target-compute must be > 0, got {args.target_compute}")
    runs = _load_table(args)
    attrs = {"method": args.method, "convention": args.convention, "source": runs.attrs["source"]}
    handler = {"parametric": _fit_parametric, "isoflop": _fit_isoflop, "envelope": _fit_envelope,
               "kaplan": _fit_kaplan}[args.method]
    text, payload, dataset, draw = handler(args, runs)
    if out is not None:
        from workbench.store import atomic_write_netcdf

        dataset.attrs.update(attrs)
        atomic_write_netcdf(dataset, out)
    if plot is not None and draw is not None:
        draw(plot)
    emit(args, text, payload)
    return 0


def _fit_parametric(args, runs):
    from scaling.fit import bootstrap_parametric, fit_parametric
    from scaling.report import format_table, parametric_dataset, plot_parametric

    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    if args.data_constrained:
        return _fit_data_constrained(args, runs)
    with _progress_bar(4500, "starts") as bar:
        fit = fit_parametric(N, D, loss, tie=args.tie, progress=bar)
    if args.bootstrap:
        with _progress_bar(args.bootstrap, "bootstrap") as bar:
            fit = bootstrap_parametric(N, D, loss, fit, n_boot=args.bootstrap, seed=args.seed, progress=bar)
    payload = fit.summary() | {"convention": args.convention, "allocation": fit.law.allocation_table(args.target_compute)}
    ci = payload.get("ci", {})
    rows = [{"parameter": k, "value": float(payload[k]), "95% CI": ci.get(k, "")}
            for k in ("E", "A", "B", "alpha", "beta", "a", "b")]
    alloc = payload["allocation"]
    text = "\n".join([
        f"Approach 3, L(N,D) = E + A/N^alpha + B/D^beta   ({fit.n_points} runs, convention {args.convention}, "
        f"{'alpha = beta, ' if fit.tie else ''}Huber delta 1e-3 on log loss, summed)",
        format_table(rows, [("parameter", "parameter"), ("value", "value"), ("95% CI", "95% CI")]),
        f"objective {fit.objective:.10g}; {fit.n_at_optimum} of {fit.n_starts} starts reached it; "
        f"{'converged' if fit.converged else 'NOT converged'}",
        f"at C = {alloc['C']:.3g}: N* = {alloc['N_star']:.4g}, D* = {alloc['D_star']:.4g}, "
        f"D*/N* = {alloc['tokens_per_param']:.3g}, L* = {alloc['L_star']:.4g}",
    ])
    draw = lambda path: plot_parametric(fit, N, D, loss, path, title=runs.attrs["source"])  # noqa: E731
    return text, payload, parametric_dataset(fit, {}), draw


def _fit_data_constrained(args, runs):
    import xarray as xr

    from scaling.data_constrained import fit_data_constrained

    if "U" not in runs.columns:
        raise InputError(f"{runs.attrs['source']}: --data-constrained needs a column of unique tokens U "
                         "(map it with --col-U NAME)")
    fit = fit_data_constrained(*(runs[c].to_numpy(float) for c in ("N", "D", "U", "loss")))
    payload = fit.summary() | {"convention": args.convention}
    base = fit.base
    text = "\n".join([
        f"Data-constrained L(N, D, U) (Muennighoff et al. 2023, Eq. 5); {fit.n_points} runs, "
        f"{fit.n_single_epoch} single-epoch; convention {args.convention}",
        f"base: E = {base.E:.4g}, A = {base.A:.4g}, B = {base.B:.4g}, alpha = beta = {base.alpha:.4f}",
        f"R*_D = {fit.r_d_star:.4g} (repeated tokens' worth decays over this many epochs), R*_N = {fit.r_n_star:.4g}",
    ])
    dataset = xr.Dataset({k: ((), float(v)) for k, v in base.as_dict().items()}
                         | {"r_d_star": ((), fit.r_d_star), "r_n_star": ((), fit.r_n_star)})
    return text, payload, dataset, None


def _estimate_noise(runs) -> tuple[float, str]:
    """Seed-noise sigma: std of loss across seeds at the same (C, N), pooled; else Porian's RW value."""
    from scaling.isoflop import DEFAULT_NOISE

    if "seed" in runs.columns and runs["seed"].nunique() > 1:
        groups = runs.groupby(["C", "N"])["loss"]
        var = groups.var(ddof=1).dropna()
        if len(var):
            return float(var.mean() ** 0.5), "estimated from seed replicates"
    return DEFAULT_NOISE, "default (Porian's RefinedWeb seed noise)"


def _fit_isoflop(args, runs):
    from scaling.isoflop import fit_isoflop, isoflop_optima
    from scaling.report import format_table, isoflop_dataset, plot_isoflop

    noise, noise_source = (args.noise, "given") if args.noise is not None else _estimate_noise(runs)
    optima = isoflop_optima(runs, method=args.interp, noise=noise, replicates=args.replicates, seed=args.seed)
    fit = fit_isoflop(optima, weighted=not args.unweighted, method=args.interp, noise=noise)
    summary = fit.summary()
    N_at, N_ci = fit.N_star_at(args.target_compute)
    payload = summary | {"convention": args.convention, "noise_source": noise_source,
                         "target_compute": args.target_compute, "N_star_at_target": N_at, "N_star_at_target_ci": N_ci,
                         "budgets": [{"C": o.C, "n_sizes": o.n_sizes, "status": o.status, "N_star": o.N_star,
                                      "D_star": o.D_star, "loss_star": o.loss_star} for o in fit.budgets]}
    rows = [{"C": o.C, "sizes": o.n_sizes, "N*": o.N_star, "D*": o.D_star, "loss*": o.loss_star,
             "status": o.status if o.ok else f"refused: {o.reason}"} for o in fit.budgets]
    bias = "  (parabola: biased by grid width and off-centre sampling)" if args.interp == "parabola" else ""
    text = "\n".join([
        f"Approach 2, IsoFLOP minima by {args.interp}{bias}; convention {args.convention}; "
        f"noise sigma {noise:.3g} ({noise_source}), {args.replicates} replicates",
        format_table(rows, [("C", "C"), ("sizes", "sizes"), ("N*", "N*"), ("D*", "D*"), ("loss*", "loss*"),
                            ("status", "status")]),
        f"a = {fit.a:.4f}  95% CI [{fit.a_ci[0]:.4f}, {fit.a_ci[1]:.4f}]   (N* ∝ C^a, R² {fit.N_law.r2:.4f}, "
        f"{'weighted' if fit.weighted else 'unweighted'})",
        f"b = {fit.b:.4f}  95% CI [{fit.b_ci[0]:.4f}, {fit.b_ci[1]:.4f}]   (D* ∝ C^b)",
        f"N*({args.target_compute:.3g}) = {N_at:.4g}  95% CI [{N_ci[0]:.4g}, {N_ci[1]:.4g}]",
    ])
    draw = lambda path: plot_isoflop(fit, path, title=runs.attrs["source"])  # noqa: E731
    return text, payload, isoflop_dataset(fit, {"noise_source": noise_source}), draw


def _fit_envelope(args, runs):
    from scaling.isoflop import fit_envelope
    from scaling.report import envelope_dataset, format_table

    fit = fit_envelope(runs)
    payload = fit.summary() | {"convention": args.convention, "points": fit.points.to_dict("records")}
    text = "\n".join([
        "Approach 1, envelope of minimum loss vs compute (runs better than every cheaper run)",
        format_table(fit.points.to_dict("records"), [("C", "C"), ("N", "N"), ("D", "D"), ("loss", "loss")]),
        f"a = {fit.a:.4f} (N ∝ C^a), b = {fit.b:.4f} (D ∝ C^b), R² {fit.N_law.r2:.4f}",
    ])
    return text, payload, envelope_dataset(fit, {}), None


def _fit_kaplan(args, runs):
    import xarray as xr

    from scaling.kaplan import fit_kaplan_D, fit_kaplan_N, fit_kaplan_ND

    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    if args.form == "ND":
        fit, label = fit_kaplan_ND(N, D, loss), "L(N,D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5)"
    elif args.form == "N":
        fit, label = fit_kaplan_N(N, loss, frontier=True), "L(N) = (N_c/N)^alpha_N (Eq. 1.1), lowest loss per size"
    else:
        fit, label = fit_kaplan_D(D, loss), "L(D) = (D_c/D)^alpha_D (Eq. 1.2)"
    payload = fit.summary() | {"form": args.form, "convention": args.convention}
    shown = {k: v for k, v in payload.items() if k in ("N_c", "alpha_N", "D_c", "alpha_D") and v == v}
    text = f"Kaplan {label}; {len(N)} runs, convention {args.convention}\n" + "   ".join(
        f"{k} = {v:.4g}" for k, v in shown.items())
    dataset = xr.Dataset({k: ((), float(v)) for k, v in payload.items() if isinstance(v, (int, float))})
    return text, payload, dataset, None


# --------------------------------------------------------------------------------------- reconcile


def _register_reconcile(verbs) -> None:
    p = add_parser(verbs, "reconcile", help="Porian et al.'s ladder from Kaplan's exponent to Chinchilla's",
                   description="Fit the compute-optimal exponent a with Approach 2 for each step of the "
                               "reconciliation ladder (Kaplan count, + head FLOPs, + warmup, + decay, + tuning). "
                               "Input is a bundled Porian dataset or a table with an 'experiment' column.",
                   examples="  workbench scaling reconcile --dataset porian-rw\n"
                            "  workbench scaling reconcile --dataset porian-rw --attention --plot ladder.png "
                            "--out ladder.nc --json")
    p.add_argument("file", nargs="?", help="CSV/netCDF with columns experiment, N, C or D, loss")
    p.add_argument("--dataset", choices=("porian-rw", "porian-owt2"), help="bundled Porian data")
    p.add_argument("--attention", action="store_true", help="porian-rw: add the attention-FLOP ladder and "
                                                            "Kaplan-count-with-tuning rows")
    p.add_argument("--noise", type=float, default=None, help="seed-noise sigma for a FILE (default 0.002)")
    from scaling.conventions import CONVENTIONS

    p.add_argument("--convention", choices=CONVENTIONS, default="standard",
                   help="for a FILE without a flop_count column: what its N counts")
    p.add_argument("--replicates", type=int, default=1000, help="noise-bootstrap replicates per budget")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--plot", help="write the ladder figure to this PNG file")
    p.add_argument("--out", help="write the ladder table and bootstrap draws to this netCDF file")
    add_json_flag(p)
    p.set_defaults(handler=_reconcile)


def _reconcile(args) -> int:
    from scaling.reconcile import reconcile, reconcile_porian

    out = _check_output(args.out, (".nc",), "--out")
    plot = _check_output(args.plot, (".png",), "--plot")
    if args.replicates < 1:
        raise InputError("--replicates must be >= 1 (the ladder reports bootstrap CIs)")
    if bool(args.file) == bool(args.dataset):
        raise InputError("give either a FILE or --dataset porian-rw|porian-owt2 (exactly one)")
    with _progress_bar(10 if args.attention else 5, "ladder steps") as tick:
        if args.dataset:
            results = reconcile_porian(args.dataset, attention=args.attention, replicates=args.replicates,
                                       seed=args.seed, progress=tick)
            source = args.dataset
        else:
            import pandas as pd

            from scaling.table import load_runs, read_table

            if not Path(args.file).exists():
                raise InputError(f"{args.file}: no such file")
            table = read_table(Path(args.file), None)[0]
            if "experiment" not in table.columns:
                raise InputError(f"{args.file}: reconcile needs an 'experiment' column (one ladder step each)")
            # Each step is its own run set: validate them separately (the same N and C recur across
            # steps), each under its own convention when a flop_count column says which.
            parts = [load_runs(t.reset_index(drop=True), name=f"{args.file} [{e}]",
                               convention=str(t["flop_count"].iloc[0]) if "flop_count" in t else args.convention)
                     .assign(experiment=e) for e, t in table.groupby("experiment", sort=False)]
            results = reconcile(pd.concat(parts, ignore_index=True), noise=args.noise or 0.002,
                                replicates=args.replicates, seed=args.seed, progress=tick)
            source = args.file
    rows = [row for _, _, row in results]
    if out is not None:
        _write_ladder(out, results, source)
    if plot is not None:
        from scaling.report import plot_ladder

        plot_ladder(rows, plot, title=f"Reconciliation ladder ({source})")
    from scaling.report import format_table

    columns = [("step", "step"), ("a", "a"), ("a_ci", "95% CI")]
    if rows and "published_a" in rows[0]:
        columns.append(("published_a", "published"))
    columns += [("N_star_at_5.88e23", "N*(5.88e23)"), ("rho_range", "D*/N* range"), ("n_budgets", "budgets")]
    text = (f"Compute-optimal exponent a (N* ∝ C^a) per correction, Approach 2 (Akima + noise bootstrap), {source}\n"
            + format_table(rows, columns)
            + "\nreference: Kaplan 0.73 (fixed-batch 0.88), Hoffmann 0.50")
    emit(args, text, rows)
    return 0


def _write_ladder(path: Path, results, source: str) -> None:
    import numpy as np
    import xarray as xr

    from workbench.store import atomic_write_netcdf

    steps = [row["step"] for _, _, row in results]
    n_draws = min(fit.a_draws.size for _, fit, _ in results)
    ds = xr.Dataset(
        {"a": (("step",), [r["a"] for _, _, r in results]),
         "a_ci": (("step", "bound"), [r["a_ci"] for _, _, r in results]),
         "b": (("step",), [r["b"] for _, _, r in results]),
         "N_star_at_5.88e23": (("step",), [r["N_star_at_5.88e23"] for _, _, r in results]),
         "experiment": (("step",), [r["experiment"] for _, _, r in results]),
         "a_draws": (("step", "draw"), np.stack([fit.a_draws[:n_draws] for _, fit, _ in results]))},
        coords={"step": steps, "bound": ["lo", "hi"]}, attrs={"source": source, "method": "isoflop-akima"})
    atomic_write_netcdf(ds, path)


# ---------------------------------------------------------------------------------------- simulate


def _register_simulate(verbs) -> None:
    p = add_parser(verbs, "simulate", help="draw a table of runs from a known L(N, D)",
                   description="Draw IsoFLOP or N×D-grid runs from known (E, A, B, alpha, beta), optionally "
                               "with multiplicative noise and off-centre sampling, for recovery tests.",
                   examples="  workbench scaling simulate --kind isoflop --noise 0.005 --seeds 3 --out sim.csv\n"
                            "  workbench scaling simulate --preset epoch --kind grid --out grid.csv")
    p.add_argument("--kind", choices=("isoflop", "grid"), default="isoflop", help="design of the runs")
    p.add_argument("--preset", choices=tuple(PRESETS), default="hoffmann",
                   help="published constants to start from (overridden by --E etc.)")
    for name in ("E", "A", "B", "alpha", "beta"):
        p.add_argument(f"--{name}", type=float, help=f"{name} of the true law")
    p.add_argument("--budgets", type=float, nargs="+", help="isoflop: compute budgets (default Porian's 1.25e16..2.56e19)")
    p.add_argument("--sizes", type=int, default=9, help="isoflop: model sizes per budget")
    p.add_argument("--span", type=float, default=8.0, help="isoflop: sizes span N*/span .. N*·span")
    p.add_argument("--center", type=float, default=1.0, help="isoflop: centre sampling at center·N*")
    p.add_argument("--drift", type=float, default=0.0, help="isoflop: centre drifts as (C/C_min)^drift")
    p.add_argument("--grid-points", type=int, default=8, help="grid: points per axis")
    p.add_argument("--noise", type=float, default=0.0, help="std of log loss (multiplicative noise)")
    p.add_argument("--seeds", type=int, default=1, help="replicate runs per point")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, help="CSV (.csv) or netCDF (.nc) file to write")
    add_json_flag(p)
    p.set_defaults(handler=_simulate)


def _law_from_args(args):
    from dataclasses import replace

    law = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("E", "A", "B", "alpha", "beta") if getattr(args, k) is not None}
    for k, v in overrides.items():
        if not (v > 0 or (k == "E" and v >= 0)):
            raise InputError(f"--{k} must be > 0, got {v}")
    return replace(law, **overrides)


def _simulate(args) -> int:
    from scaling.simulate import simulate_runs
    from workbench.store import atomic_write_netcdf, atomic_write_text

    out = _check_output(args.out, (".csv", ".nc"), "--out")
    law = _law_from_args(args)
    runs = simulate_runs(law, kind=args.kind, budgets=args.budgets, sizes=args.sizes, span=args.span,
                         center=args.center, drift=args.drift, grid_points=args.grid_points, noise=args.noise,
                         seeds=args.seeds, seed=args.seed)
    if out.suffix == ".nc":
        ds = runs.to_xarray().rename({"index": "run"})
        ds.attrs.update({k: float(v) for k, v in law.as_dict().items()} | {"kind": args.kind, "noise": args.noise})
        atomic_write_netcdf(ds, out)
    else:
        atomic_write_text(out, runs.to_csv(index=False))
    emit(args, f"wrote {len(runs)} runs to {out} from {law} ({args.kind}, noise {args.noise})",
         {"path": str(out), "n_runs": len(runs), "law": law.as_dict(), "kind": args.kind})
    return 0


# ---------------------------------------------------------------------------------------- allocate


def _register_allocate(verbs) -> None:
    p = add_parser(verbs, "allocate", help="compute-optimal N*, D* from a fitted law (Hoffmann Eq. 4)",
                   examples="  workbench scaling allocate --preset hoffmann --compute 5.88e23\n"
                            "  workbench scaling allocate --E 1.82 --A 482 --B 2085 --alpha 0.348 --beta 0.366")
    p.add_argument("--preset", choices=tuple(PRESETS), default="hoffmann", help="published constants")
    for name in ("E", "A", "B", "alpha", "beta"):
        p.add_argument(f"--{name}", type=float, help=f"override {name}")
    p.add_argument("--compute", type=float, nargs="+", default=[5.88e23], help="budgets in FLOPs")
    add_json_flag(p)
    p.set_defaults(handler=_allocate)


def _allocate(args) -> int:
    from scaling.report import format_table

    law = _law_from_args(args)
    if any(not c > 0 for c in args.compute):
        raise InputError("--compute budgets must be > 0")
    rows = [law.allocation_table(c) for c in args.compute]
    text = (f"L(N,D) = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4g} + {law.B:.4g}/D^{law.beta:.4g}\n"
            + format_table(rows, [("C", "C"), ("a", "a"), ("G", "G"), ("N_star", "N*"), ("D_star", "D*"),
                                  ("tokens_per_param", "D*/N*"), ("L_star", "L*")]))
    emit(args, text, rows)
    return 0


# ---------------------------------------------------------------------------------------- datasets


def _register_datasets(verbs) -> None:
    p = add_parser(verbs, "datasets", help="list the bundled datasets", examples="  workbench scaling datasets --json")
    add_json_flag(p)
    p.set_defaults(handler=_datasets)


def _datasets(args) -> int:
    from scaling.datasets import DATASETS, shared_data_dir
    from scaling.report import format_table

    rows = [{"name": d.name, "licence": d.licence, "description": d.description} for d in DATASETS.values()]
    shared = shared_data_dir()
    rows.append({"name": EPOCH_DATASET, "licence": "none (not bundled)",
                 "description": "Epoch AI digitisation of Hoffmann Fig. 4 (240 runs); read from "
                                + (str(shared) if shared else "the shared reference folder (absent here)")})
    emit(args, format_table(rows, [("name", "name"), ("licence", "licence"), ("description", "description")]), rows)
    return 0

