"""`workbench scaling ...`: fit, reconcile, simulate and inspect scaling laws from the command line."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaling import laws
from scaling.conventions import CONVENTIONS
from scaling.methods import METHODS
from scaling.methods.base import positive_float, progress_bar, replicate_count
from scaling.report import format_table, plot_ladder
from scaling.study import cli as study_cli
from workbench.atomic import check_writable
from workbench.cli import add_area, add_parser, emit
from workbench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

COLUMN_FLAGS = ("N", "D", "C", "loss", "U", "seed", "run", "budget", "width", "depth", "vocab", "seq_len", "d_ff")
EPOCH_DATASET = "epoch-chinchilla"  # not bundled (no licence): read from $WORKBENCH_SHARED_DATA when present
PRESETS = {
    "hoffmann": laws.HOFFMANN_PRINTED,
    "hoffmann-unrounded": laws.HOFFMANN_UNROUNDED,
    "epoch": laws.EPOCH_2024,
    "muennighoff-c4": laws.MUENNIGHOFF_C4,
}


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text)
    _register_fit(verbs)
    _register_reconcile(verbs)
    _register_simulate(verbs)
    _register_allocate(verbs)
    study_cli.register(verbs)
    _register_datasets(verbs)


# ------------------------------------------------------------------------------------------- input


def _add_input_flags(p: argparse.ArgumentParser, *, convention_required: bool = True) -> None:
    p.add_argument("file", nargs="?", help="CSV/netCDF table of runs, or a gpt_lm sweep directory (or --dataset)")
    p.add_argument("--dataset", help="a bundled dataset by name (see `workbench scaling datasets`)")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COL=VALUE",
        help="keep only rows whose column equals the value (repeatable)",
    )
    p.add_argument(
        "--convention",
        required=convention_required,
        choices=CONVENTIONS,
        help="what N counts (kaplan: no embedding/head; standard: + head; attention: + attention "
        "FLOPs; chinchilla: Hoffmann App. F). Required: it changes the exponent by ~0.1",
    )
    group = p.add_argument_group("column names (map your table's columns onto the canonical ones)")
    for col in COLUMN_FLAGS:
        group.add_argument(
            f"--col-{col.replace('_', '-')}", dest=f"col_{col}", metavar="NAME", help=f"column holding {col}"
        )


def _load_table(args) -> pd.DataFrame:
    from scaling.datasets import load_dataset, load_epoch_chinchilla
    from scaling.table import load_runs, read_table

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
    elif (sweep := study_cli.sweep_dataset(Path(args.file))) is not None:
        from scaling.study.runs import runs_from_sweep

        source, name = runs_from_sweep(sweep, args.convention, name=args.file), args.file
    else:
        source, name = read_table(Path(args.file))
    if args.where:
        source = _filter_rows(source, name, args.where)
    # Before validation: a table mixing experiments would otherwise be reported as duplicate rows.
    _check_single_setup(source, name, args.convention)
    return load_runs(source, convention=args.convention, columns=columns, name=name)


def _filter_rows(source, name: str, where: list[str]):
    import pandas as pd

    from scaling.table import plain_number, quote_columns

    table = source
    for clause in where:
        column, sep, value = clause.partition("=")
        if not sep or not column:
            raise InputError(f"--where {clause!r}: expected COLUMN=VALUE")
        if column not in table.columns:
            raise InputError(
                f"--where {clause!r}: {name} has no column {column!r}; columns: {quote_columns(table.columns)}"
            )
        values = table[column]
        keep = values.astype(str) == value
        if not keep.any():
            choices = ", ".join(str(v) if isinstance(v, str) else plain_number(v) for v in pd.unique(values)[:20])
            raise InputError(f"--where {clause!r}: no row of {name} has {column!r} = {value}; values: {choices}")
        table = table[keep]
    return table.reset_index(drop=True)


def _check_single_setup(runs, name: str, convention: str) -> None:
    """Tables that mix several experiments, or rows counted under another convention, are refused."""
    if "experiment" in runs.columns and runs["experiment"].nunique() > 1:
        choices = ", ".join(runs["experiment"].unique())
        raise InputError(
            f"{name} holds {runs['experiment'].nunique()} experiments; fit one with "
            f"--where experiment=NAME (choices: {choices}), or use `workbench scaling reconcile`"
        )
    if "flop_count" in runs.columns:
        counted = set(runs["flop_count"].astype(str))
        if counted != {convention}:
            raise InputError(
                f"{name}: N in these rows is counted under {sorted(counted)}, not --convention "
                f"{convention}; pass --convention {sorted(counted)[0]}"
            )


def _options(args: argparse.Namespace) -> dict:
    """The command's resolved options, as the provenance of what it writes."""
    plain = (str, int, float, bool, type(None), list, tuple)
    return {k: v for k, v in vars(args).items() if k != "handler" and isinstance(v, plain)}


def _check_output(path: str | None, suffixes: tuple[str, ...], flag: str) -> Path | None:
    """Validate an output path, and that it can be written, before any work is done."""
    return None if path is None else check_writable(path, flag, suffixes=suffixes)


# --------------------------------------------------------------------------------------------- fit


def _register_fit(verbs) -> None:
    width = max(map(len, METHODS))
    methods = "\n".join(f"  {name:<{width}}  {m.help}" for name, m in METHODS.items())
    p = add_parser(
        verbs,
        "fit",
        help="fit a scaling law to a table of runs",
        description="Fit a scaling law to a CSV/netCDF table of runs with columns N, D or C, loss "
        f"(optional seed, run, budget).\n\nmethods (--method):\n{methods}",
        examples="  workbench scaling fit runs.csv --method parametric --convention standard --json\n"
        "  workbench scaling fit --dataset porian-rw --where experiment=cosine_decay "
        "--method isoflop --convention standard --plot isoflop.png\n"
        "  workbench scaling fit runs.csv --method parametric --convention kaplan "
        "--bootstrap 1000 --out fit.nc",
        handler=_fit,
        json=True,
    )
    _add_input_flags(p)
    p.add_argument("--method", required=True, choices=tuple(METHODS), help="which estimator")
    for method in METHODS.values():
        method.add_flags(p)
    p.add_argument("--out", help="write fitted parameters and bootstrap draws to this netCDF file (.nc)")
    p.add_argument("--plot", help="write a figure to this PNG file")


def _fit(args) -> int:
    method = METHODS[args.method]
    if args.plot is not None and not method.draws_figure(args):
        options = " --data-constrained" if getattr(args, "data_constrained", False) else ""
        drawing = ", ".join(name for name, m in METHODS.items() if m.plot is not None)
        raise InputError(f"--plot: --method {args.method}{options} draws no figure (methods that do: {drawing})")
    out = _check_output(args.out, (".nc",), "--out")
    plot = _check_output(args.plot, (".png",), "--plot")
    runs = _load_table(args)
    fit = method.fit(runs, args)
    if out is not None:
        from workbench.provenance import with_provenance
        from workbench.store import atomic_write_netcdf

        dataset = method.dataset(fit, args)
        dataset.attrs.update({"method": args.method, "convention": args.convention, "source": runs.attrs["source"]})
        atomic_write_netcdf(with_provenance(dataset, _options(args)), out)
    if plot is not None:
        method.plot(fit, args, runs, plot)
    emit(args, method.text(fit, args), method.payload(fit, args))
    return 0


# --------------------------------------------------------------------------------------- reconcile


def _register_reconcile(verbs) -> None:
    p = add_parser(verbs, "reconcile", _reconcile, json=True)
    p.add_argument("file", nargs="?", help="CSV/netCDF with columns experiment, N, C or D, loss")
    p.add_argument("--dataset", choices=("porian-rw", "porian-owt2"), help="bundled Porian data")
    p.add_argument(
        "--attention",
        action="store_true",
        help="porian-rw: add the attention-FLOP ladder and Kaplan-count-with-tuning rows",
    )
    p.add_argument("--noise", type=positive_float, default=None, help="seed-noise sigma for a FILE (default 0.002)")
    p.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default="standard",
        help="for a FILE without a flop_count column: what its N counts",
    )
    p.add_argument(
        "--replicates", type=replicate_count, default=1000, help="noise-bootstrap replicates per budget (1 to 100000)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--plot", help="write the ladder figure to this PNG file")
    p.add_argument("--out", help="write the ladder table and bootstrap draws to this netCDF file")


def _reconcile(args) -> int:
    """Porian et al.'s ladder from Kaplan's exponent to Chinchilla's.

    Fit the compute-optimal exponent a with Approach 2 for each step of the reconciliation ladder
    (Kaplan count, + head FLOPs, + warmup, + decay, + tuning). Input is a bundled Porian dataset or
    a table with an 'experiment' column.

    examples:
      workbench scaling reconcile --dataset porian-rw
      workbench scaling reconcile --dataset porian-rw --attention --plot ladder.png --out ladder.nc --json
    """
    from scaling.reconcile import reconcile, reconcile_porian

    out = _check_output(args.out, (".nc",), "--out")
    plot = _check_output(args.plot, (".png",), "--plot")
    if bool(args.file) == bool(args.dataset):
        raise InputError("give either a FILE or --dataset porian-rw|porian-owt2 (exactly one)")
    with progress_bar(10 if args.attention else 5, "ladder steps") as tick:
        if args.dataset:
            results = reconcile_porian(
                args.dataset, attention=args.attention, replicates=args.replicates, seed=args.seed, progress=tick
            )
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
            parts = [
                load_runs(
                    t.reset_index(drop=True),
                    name=f"{args.file} [{e}]",
                    convention=str(t["flop_count"].iloc[0]) if "flop_count" in t else args.convention,
                ).assign(experiment=e)
                for e, t in table.groupby("experiment", sort=False)
            ]
            results = reconcile(
                pd.concat(parts, ignore_index=True),
                noise=0.002 if args.noise is None else args.noise,
                replicates=args.replicates,
                seed=args.seed,
                progress=tick,
            )
            source = args.file
    rows = [row for _, _, row in results]
    if out is not None:
        _write_ladder(out, results, source)
    if plot is not None:
        plot_ladder(rows, plot, title=f"Reconciliation ladder ({source})")
    columns = [("step", "step"), ("a", "a"), ("a_ci", "95% CI")]
    if rows and "published_a" in rows[0]:
        columns.append(("published_a", "published"))
    columns += [("N_star_at_5.88e23", "N*(5.88e23)"), ("rho_range", "D*/N* range"), ("n_budgets", "budgets")]
    text = (
        f"Compute-optimal exponent a (N* ∝ C^a) per correction, Approach 2 (Akima + noise bootstrap), {source}\n"
        + format_table(rows, columns)
        + "\nreference: Kaplan 0.73 (fixed-batch 0.88), Hoffmann 0.50"
    )
    emit(args, text, rows)
    return 0


def _write_ladder(path: Path, results, source: str) -> None:
    import xarray as xr

    from workbench.provenance import with_provenance
    from workbench.store import atomic_write_netcdf

    steps = [row["step"] for _, _, row in results]
    n_draws = min(fit.a_draws.size for _, fit, _ in results)
    ds = xr.Dataset(
        {
            "a": (("step",), [r["a"] for _, _, r in results]),
            "a_ci": (("step", "bound"), [r["a_ci"] for _, _, r in results]),
            "b": (("step",), [r["b"] for _, _, r in results]),
            "N_star_at_5.88e23": (("step",), [r["N_star_at_5.88e23"] for _, _, r in results]),
            "experiment": (("step",), [r["experiment"] for _, _, r in results]),
            "a_draws": (("step", "draw"), np.stack([fit.a_draws[:n_draws] for _, fit, _ in results])),
        },
        coords={"step": steps, "bound": ["lo", "hi"]},
        attrs={"source": source, "method": "isoflop-akima"},
    )
    atomic_write_netcdf(with_provenance(ds), path)


# ---------------------------------------------------------------------------------------- simulate


def _register_simulate(verbs) -> None:
    p = add_parser(verbs, "simulate", _simulate, json=True)
    p.add_argument("--kind", choices=("isoflop", "grid"), default="isoflop", help="design of the runs")
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="hoffmann",
        help="published constants to start from (overridden by --E etc.)",
    )
    for name in ("E", "A", "B", "alpha", "beta"):
        p.add_argument(f"--{name}", type=float, help=f"{name} of the true law")
    p.add_argument(
        "--budgets", type=float, nargs="+", help="isoflop: compute budgets (default Porian's 1.25e16..2.56e19)"
    )
    p.add_argument("--sizes", type=int, default=9, help="isoflop: model sizes per budget")
    p.add_argument("--span", type=float, default=8.0, help="isoflop: sizes span N*/span .. N*·span")
    p.add_argument("--center", type=float, default=1.0, help="isoflop: centre sampling at center·N*")
    p.add_argument("--drift", type=float, default=0.0, help="isoflop: centre drifts as (C/C_min)^drift")
    p.add_argument("--grid-points", type=int, default=8, help="grid: points per axis")
    p.add_argument("--noise", type=float, default=0.0, help="std of log loss (multiplicative noise)")
    p.add_argument("--seeds", type=int, default=1, help="replicate runs per point")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, help="CSV (.csv) or netCDF (.nc) file to write")


def _law_from_args(args):
    law = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("E", "A", "B", "alpha", "beta") if getattr(args, k) is not None}
    for k, v in overrides.items():
        if not np.isfinite(v) or not (v > 0 or (k == "E" and v >= 0)):
            raise InputError(f"--{k} must be a finite number {'>= 0' if k == 'E' else '> 0'}, got {v}")
    return replace(law, **overrides)


def _simulate(args) -> int:
    """Draw a table of runs from a known L(N, D).

    Draw IsoFLOP or N×D-grid runs from known (E, A, B, alpha, beta), optionally with multiplicative
    noise and off-centre sampling, for recovery tests.

    examples:
      workbench scaling simulate --kind isoflop --noise 0.005 --seeds 3 --out sim.csv
      workbench scaling simulate --preset epoch --kind grid --out grid.csv
    """
    from scaling.simulate import simulate_runs
    from workbench.provenance import with_provenance
    from workbench.store import atomic_write_netcdf, atomic_write_text

    out = _check_output(args.out, (".csv", ".nc"), "--out")
    law = _law_from_args(args)
    runs = simulate_runs(
        law,
        kind=args.kind,
        budgets=args.budgets,
        sizes=args.sizes,
        span=args.span,
        center=args.center,
        drift=args.drift,
        grid_points=args.grid_points,
        noise=args.noise,
        seeds=args.seeds,
        seed=args.seed,
    )
    if out.suffix == ".nc":
        ds = runs.to_xarray().rename({"index": "run"})
        ds.attrs.update({k: float(v) for k, v in law.as_dict().items()} | {"kind": args.kind, "noise": args.noise})
        atomic_write_netcdf(with_provenance(ds, _options(args)), out)
    else:
        atomic_write_text(out, runs.to_csv(index=False))
    emit(
        args,
        f"wrote {len(runs)} runs to {out} from {law} ({args.kind}, noise {args.noise})",
        {"path": str(out), "n_runs": len(runs), "law": law.as_dict(), "kind": args.kind},
    )
    return 0


# ---------------------------------------------------------------------------------------- allocate


def _register_allocate(verbs) -> None:
    p = add_parser(verbs, "allocate", _allocate, json=True)
    p.add_argument("--preset", choices=tuple(PRESETS), default="hoffmann", help="published constants")
    for name in ("E", "A", "B", "alpha", "beta"):
        p.add_argument(f"--{name}", type=float, help=f"override {name}")
    p.add_argument("--compute", type=float, nargs="+", default=[5.88e23], help="budgets in FLOPs")


def _allocate(args) -> int:
    """Compute-optimal N*, D* from a fitted law (Hoffmann Eq. 4).

    examples:
      workbench scaling allocate --preset hoffmann --compute 5.88e23
      workbench scaling allocate --E 1.82 --A 482 --B 2085 --alpha 0.348 --beta 0.366
    """
    law = _law_from_args(args)
    for c in args.compute:
        if not (c > 0 and np.isfinite(c)):
            raise InputError(f"--compute budgets must be finite numbers > 0, got {c}")
    rows = [law.allocation_table(c) for c in args.compute]
    for row in rows:
        bad = [k for k, v in row.items() if not np.isfinite(v)]
        if bad:
            raise InputError(
                f"--compute {row['C']:.4g}: {', '.join(bad)} overflow under this law; give a smaller budget"
            )
    text = f"L(N,D) = {law.E:.4g} + {law.A:.4g}/N^{law.alpha:.4g} + {law.B:.4g}/D^{law.beta:.4g}\n" + format_table(
        rows,
        [
            ("C", "C"),
            ("a", "a"),
            ("G", "G"),
            ("N_star", "N*"),
            ("D_star", "D*"),
            ("tokens_per_param", "D*/N*"),
            ("L_star", "L*"),
        ],
    )
    emit(args, text, rows)
    return 0


# ---------------------------------------------------------------------------------------- datasets


def _register_datasets(verbs) -> None:
    add_parser(verbs, "datasets", _datasets, json=True)


def _datasets(args) -> int:
    """List the bundled datasets.

    examples:
      workbench scaling datasets --json
    """
    from scaling.datasets import DATASETS, shared_data_dir

    rows = [{"name": d.name, "licence": d.licence, "description": d.description} for d in DATASETS.values()]
    folder = shared_data_dir()
    where = str(folder) if folder else "$WORKBENCH_SHARED_DATA (not set here)"
    rows.append(
        {
            "name": EPOCH_DATASET,
            "licence": "none (not bundled)",
            "description": f"Epoch AI digitisation of Hoffmann Fig. 4 (240 runs); read from {where}",
        }
    )
    emit(args, format_table(rows, [(k, k) for k in ("name", "licence", "description")]), rows)
    return 0
