"""`workbench lm ...`: muP language models. Verbs: coord-check, transfer, predict, doping-report, base-shapes."""

from __future__ import annotations

from pathlib import Path

from workbench.atomic import check_writable
from workbench.cli import add_area, add_parser, add_set_flag, emit, int_list
from workbench.errors import InputError

_CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"
# |log-log slope| of activation size vs width that still counts as flat over an 8x width range: a
# width-independent coordinate scale is muP's promise (Yang et al. 2021, Tensor Programs V; mup's coord check)
HIDDEN_SLOPE_LIMIT = 0.15
# Same as workbench.lm.coord_check.VARIANTS, repeated so `workbench --help` need not import torch.
VARIANTS = ("mup", "sp", "mup-torch-adamw", "mup-no-reinit", "mup-bad-delta")
# The formats matplotlib's savefig writes (atomic_savefig picks the format from the suffix; none: PNG).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def check_figure_path(path: str, flag: str) -> None:
    """A figure path with a format matplotlib writes, in a writable place: checked before the work."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in FIGURE_SUFFIXES:
        raise InputError(f"{flag} {path}: unknown figure format {suffix!r}; use one of {', '.join(FIGURE_SUFFIXES)}")
    check_writable(path, flag)


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench lm coord-check --json --plot coord.png")
    p = add_parser(verbs, "coord-check", _coord_check, json=True)
    p.add_argument("--widths", default="32,64,128,256", help="comma-separated increasing widths (first = muP base)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=4, help="Adam steps")
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged per width")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate (above a training LR, as mup advises)")
    p.add_argument("--depth", type=int, default=2, help="transformer blocks")
    p.add_argument("--head-dim", type=int, default=8, help="fixed head size; heads = width / head_dim")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of activation scale vs width")

    p = add_parser(verbs, "predict", _predict, json=True)
    _sweep_arguments(p)
    p.add_argument("--holdout", type=int, default=1, help="number of largest widths to predict (default 1)")
    p.add_argument(
        "--count",
        choices=("params", "params_total"),
        default="params",
        help="N: non-embedding (params, default) or total parameters",
    )
    p.add_argument("--boot", type=int, default=200, help="bootstrap refits for the band (default 200)")

    p = add_parser(verbs, "doping-report", _doping_report, json=True)
    _sweep_arguments(p)

    p = add_parser(verbs, "base-shapes", _base_shapes, json=True)
    p.add_argument("config", metavar="CONFIG", help="a gpt_lm job config (YAML or JSON)")
    p.add_argument("out", metavar="OUT.bsh", help="where to write the base shapes")
    add_set_flag(p, "model.base_width=16")

    p = add_parser(verbs, "transfer", _transfer, json=True)
    p.add_argument(
        "--config",
        default=str(_CONFIGS / "lm_transfer.yaml"),
        help="a gpt_lm job config whose model section sets everything but width and lr "
        "(default jobs/configs/lm_transfer.yaml, the README's protocol)",
    )
    add_set_flag(p, "model.depth=4")
    p.add_argument("--widths", default="32,64,128,256", help="comma-separated increasing widths")
    p.add_argument(
        "--lrs",
        default="2^-8:2^-3",
        help="learning rates: a comma list, or 2^A:2^B for every power of two from 2^A to 2^B",
    )
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, averaged")
    p.add_argument("--parametrizations", default="mup,sp", help="comma-separated subset of: mup, sp")
    p.add_argument("--workers", type=int, default=1, help="processes that share the runs (one thread each)")
    p.add_argument("--plot", metavar="PATH", help="write loss vs learning rate per width (PNG)")
    p.add_argument("--out", metavar="PATH", help="write the sweeps as one netCDF file (dim parametrization)")


def _coord_check(args) -> int:
    """Activation scale vs width over a few Adam steps, for muP and its negative controls.

    Train tiny GPTs at several widths for a few Adam steps on one fixed batch and report, per module,
    the log-log slope of mean |activation| against width (max |slope| over steps). Under muP hidden
    modules stay within |slope| <= 0.15 (HIDDEN_SLOPE_LIMIT); SP and the other controls do not.

    examples:
      workbench lm coord-check
      workbench lm coord-check --json --plot coord.png
      workbench lm coord-check --widths 64,128,256,512 --variants mup,sp
    """
    from workbench.lm.coord_check import HIDDEN_MODULES, coord_data, plot_coord_data
    from workbench.lm.coord_check import slopes as slope_table

    widths = int_list(args.widths, "--widths")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise InputError(
            f"--variants: unknown variant {unknown[0] if unknown else '(none)'!r}; choose from: {', '.join(VARIANTS)}"
        )
    for flag, value in (
        ("--steps", args.steps),
        ("--seeds", args.seeds),
        ("--depth", args.depth),
        ("--head-dim", args.head_dim),
    ):
        if value < 1:
            raise InputError(f"{flag} = {value} must be >= 1")
    if not args.lr > 0:
        raise InputError(f"--lr = {args.lr} must be > 0")
    if any(w % args.head_dim for w in widths):
        raise InputError(f"--widths {args.widths}: every width must be a multiple of --head-dim = {args.head_dim}")
    if args.plot:
        check_figure_path(args.plot, "--plot")
    from tqdm import tqdm

    data = {}
    # tqdm on stderr, hidden when stderr is not a terminal.
    for variant in tqdm(variants, desc="coord-check", unit="variant", disable=None, leave=False):
        data[variant] = coord_data(
            variant, widths, steps=args.steps, seeds=args.seeds, lr=args.lr, depth=args.depth, head_dim=args.head_dim
        )
    slopes = {variant: slope_table(d, widths) for variant, d in data.items()}
    if args.plot:
        plot_coord_data(data, widths, args.plot)

    modules = list(next(iter(slopes.values())))
    lines = [
        f"log-log slope of mean |activation| vs width {widths[0]}..{widths[-1]} "
        f"(max |slope| over {args.steps} Adam steps, lr {args.lr:g}, {args.seeds} seeds)",
        f"{'variant':<17}" + "".join(f"{m:>12}" for m in modules) + "   hidden",
    ]
    for variant, row in slopes.items():
        worst = max(abs(row[m]) for m in HIDDEN_MODULES)
        verdict = "flat" if worst <= HIDDEN_SLOPE_LIMIT else "GROWS"
        lines.append(f"{variant:<17}" + "".join(f"{row[m]:>12.3f}" for m in modules) + f"   {verdict}")
    lines.append(f"hidden = {', '.join(HIDDEN_MODULES)}; flat means every |slope| <= {HIDDEN_SLOPE_LIMIT}")
    if args.plot:
        lines.append(f"plot written to {args.plot}")
    emit(args, "\n".join(lines), slopes)
    return 0


def _sweep_arguments(p) -> None:
    """SWEEP and --loss, shared by the verbs that read a collected sweep."""
    p.add_argument("sweep", metavar="SWEEP", help="sweep directory or collected sweep .nc file")
    p.add_argument("--loss", default="final_val_loss", help="loss variable to fit (default final_val_loss)")


def _predict(args) -> int:
    """Fit L(N) = a*N^b + c on a width sweep's smaller widths and predict the held-out larger ones.

    Read a width sweep (a `workbench jobs sweep ... --grid model.width=...` directory, or its
    collected .nc), fit L(N) = a*N^b + c (b < 0) on all but the --holdout largest widths, and print
    predicted vs actual loss for the held-out ones with a bootstrap band. Seeds are averaged; N is
    the non-embedding parameter count unless --count params_total.

    examples:
      workbench lm predict runs/lm_mup_tiny
      workbench lm predict runs/lm_mup_tiny --holdout 2 --json
    """
    from scaling.mup_predict import predict_sweep
    from scaling.report import format_table

    if args.boot < 1:
        raise InputError(f"--boot = {args.boot} must be >= 1")
    sweep = Path(args.sweep)
    if sweep.is_dir():  # a sweep directory: collect its runs here, the fit reads a Dataset
        from jobs.sweep import collect

        sweep = collect(sweep)
    result = predict_sweep(sweep, holdout=args.holdout, count=args.count, loss_var=args.loss, n_boot=args.boot)
    fit = result["fit"]
    rows = [
        {
            "width": r["width"],
            "params": r["params"],
            "predicted": f"{r['predicted']:.4f}",
            "actual": f"{r['actual']:.4f}",
            "rel.err": f"{100 * r['rel_error']:.2f}%",
            "band": f"[{r['low']:.4f}, {r['high']:.4f}]",
        }
        for r in result["predictions"]
    ]
    text = (
        f"L(N) = {fit['a']:.4g} * N^{fit['b']:.4f} + {fit['c']:.4f}   (N = {args.count}, fitted on "
        f"{len(result['fitted'])} widths, rmse {result['rmse']:.3g})\n"
        + format_table(
            rows,
            [(k, k) for k in ("width", "params", "predicted", "actual", "rel.err")]
            + [("band", f"{100 * result['level']:.0f}% band")],
        )
    )
    emit(args, text, result)
    return 0


def _doping_report(args) -> int:
    """Does the loss follow trainable or total parameters? Joint fits over a doping sweep.

    Read a doping sweep (widths x --grid model.frozen_ratio=... or model.mlp_kind=..., seeds
    optional; a sweep directory or its collected .nc) and fit one law L = a*X^b + c over all doping
    settings with X = trainable parameters, X = trainable + frozen parameters, and X = training
    compute. Reports each fit's residual RMS and per-setting mean residual, and which parameter
    count collapses the settings onto one curve. FLOPs per token count 6 per trainable weight and
    4 per frozen one (a frozen weight still costs its forward and input-gradient matmuls).

    examples:
      workbench lm doping-report runs/lm_doping_tiny
      workbench lm doping-report runs/lm_doping_tiny/sweep.nc --json
    """
    from scaling.doping_report import doping_report
    from scaling.report import format_table

    sweep = Path(args.sweep)
    if sweep.is_dir():  # a sweep directory: collect its runs here, the report reads a Dataset
        from jobs.sweep import collect

        sweep = collect(sweep)
    result = doping_report(sweep, loss_var=args.loss)
    settings, dim = result["settings"], result["doping_dim"]
    names = {"trainable": "N trainable", "total": "N trainable+frozen", "compute": "C (FLOPs)"}
    fits = [
        {
            "X": names[key],
            "a": f"{fit['a']:.4g}",
            "b": f"{fit['b']:.4f}",
            "c": f"{fit['c']:.4f}",
            "rmse": f"{fit['rmse']:.3g}",
            "residual": "  ".join(f"{s}: {fit['mean_residual'][s]:+.4f}" for s in settings),
        }
        for key, fit in result["fits"].items()
    ]
    points = [
        {
            "width": "-" if p["width"] is None else p["width"],
            dim: p["setting"],
            "loss": f"{p['loss']:.4f}",
            "trainable": p["params"],
            "frozen": p["params_frozen"],
            "compute": f"{p['compute']:.3g}",
        }
        for p in result["points"]
    ]
    text = "\n".join(
        [
            f"joint fits L = a*X^b + c over {len(result['points'])} points, {dim} in {{{', '.join(settings)}}}, "
            f"{result['n_seeds']} seed(s) per point",
            format_table(
                fits, [(k, k) for k in ("X", "a", "b", "c", "rmse")] + [("residual", f"mean residual by {dim}")]
            ),
            format_table(points, [(k, k) for k in ("width", dim, "loss", "trainable", "frozen", "compute")]),
            result["verdict"],
        ]
    )
    emit(args, text, result)
    return 0


def _base_shapes(args) -> int:
    """Write the muP base-shape (.bsh) file of a gpt_lm job config's model.

    Build the config's base model (model.base_width) and delta model (twice it) on the meta device
    and save mup's base shapes as a .bsh YAML file. Name it in a config as model.base_shapes to pin
    the shapes every width of a sweep is scaled against.

    examples:
      workbench lm base-shapes jobs/configs/lm_mup_tiny.yaml base32.bsh
      workbench jobs sweep jobs/configs/lm_mup_tiny.yaml --set model.base_shapes=base32.bsh --grid model.width=32,64,128
    """
    import tempfile
    from pathlib import Path

    from jobs.entrypoints import load_job_config
    from workbench.lm.model import base_shapes
    from workbench.store import atomic_write_text

    out = Path(args.out)
    if out.suffix != ".bsh":
        raise InputError(f"{out}: the base-shape file must end in .bsh")
    check_writable(out, "base-shape file")
    config = load_job_config(args.config, args.overrides)
    if config.kind != "gpt_lm":
        raise InputError(f"{args.config}: kind is {config.kind!r}; base shapes are for kind 'gpt_lm'")
    model = config.model.gpt_config()
    if model.parametrization != "mup":
        raise InputError(
            f"{args.config}: model.parametrization is {model.parametrization!r}; base shapes are for 'mup'"
        )
    with tempfile.TemporaryDirectory() as tmp:  # mup writes to a path: build it aside, then replace `out`
        scratch = Path(tmp) / out.name
        shapes = base_shapes(model, savefile=scratch)
        atomic_write_text(out, scratch.read_text())
    emit(
        args,
        f"wrote {out}: base width {model.base_width}, delta {2 * model.base_width}, {len(shapes)} parameters",
        {"path": str(out), "base_width": model.base_width, "parameters": len(shapes)},
    )
    return 0


def _lr_list(text: str) -> list[float]:
    import re

    match = re.fullmatch(r"\s*2\^(-?\d+)\s*:\s*2\^(-?\d+)\s*", text)
    if match:
        lo, hi = int(match.group(1)), int(match.group(2))
        if hi - lo < 2:
            raise InputError(f"--lrs {text}: needs at least 3 powers of two (2^A:2^B with B >= A + 2)")
        return [2.0**k for k in range(lo, hi + 1)]
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"--lrs {text!r}: give a comma list (1e-3,3e-3,1e-2) or 2^A:2^B") from None
    if len(values) < 3 or any(not v > 0 for v in values) or sorted(set(values)) != values:
        raise InputError(f"--lrs {text!r}: needs at least 3 increasing positive learning rates")
    return values


def _transfer(args) -> int:
    """Learning-rate transfer across widths: best LR per width under muP and SP.

    Train the config's model at every width x learning rate x seed (in this process, one thread per
    run; for a cluster use `workbench jobs sweep`), take the held-out loss, and report per
    parametrisation the best LR per width (parabola in log2 LR), its drift in octaves over the width
    range, and loss vs width at the base width's best LR.

    examples:
      workbench lm transfer --widths 32,64,128,256 --lrs 2^-8:2^-3 --steps 100 --seeds 0,1
      workbench lm transfer --parametrizations mup --steps 50 --json --plot transfer.png
    """
    import dataclasses

    from jobs.entrypoints import load_job_config

    widths = int_list(args.widths, "--widths")
    lrs = _lr_list(args.lrs)
    try:
        seeds = [int(item) for item in args.seeds.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"--seeds {args.seeds!r} must be comma-separated integers") from None
    if not seeds:
        raise InputError("--seeds must name at least one seed")
    pars = [p.strip() for p in args.parametrizations.split(",") if p.strip()]
    if not pars or any(p not in ("mup", "sp") for p in pars):
        raise InputError(f"--parametrizations {args.parametrizations!r}: choose from mup, sp")
    if args.steps < 1 or args.workers < 1:
        raise InputError(f"--steps = {args.steps} and --workers = {args.workers} must be >= 1")
    if args.out:  # checked before hours of training
        check_writable(args.out, "--out")
    if args.plot:
        check_figure_path(args.plot, "--plot")
    config = load_job_config(args.config, args.overrides)
    if config.kind != "gpt_lm":
        raise InputError(f"{args.config}: kind is {config.kind!r}; the transfer check trains kind 'gpt_lm'")
    model = config.model
    for width in widths:  # every width must make a valid model before hours of training start
        dataclasses.replace(model, width=width)
    import torch  # only now: every argument is checked
    from tqdm import tqdm

    from workbench.lm.transfer import lr_sweep, transfer_report

    torch.set_num_threads(1)
    sweeps, reports = {}, {}
    with tqdm(
        total=len(pars) * len(widths) * len(lrs) * len(seeds), desc="lm transfer", unit="run", disable=None
    ) as bar:
        for par in pars:
            sweeps[par] = lr_sweep(
                dataclasses.replace(model, parametrization=par),
                widths,
                lrs,
                steps=args.steps,
                seeds=seeds,
                workers=args.workers,
                progress=lambda *_: bar.update(),
            )
            reports[par] = transfer_report(sweeps[par]).as_dict()
    if args.out:
        import xarray as xr

        from workbench.store import atomic_write_netcdf

        atomic_write_netcdf(
            xr.concat(list(sweeps.values()), dim="parametrization").assign_coords(parametrization=pars), args.out
        )
    if args.plot:
        from scaling.report import plot_lr_transfer

        plot_lr_transfer(sweeps, args.plot)
    lines = [
        f"learning-rate transfer: widths {widths[0]}..{widths[-1]} ({widths[-1] / widths[0]:g}x), "
        f"{len(lrs)} LRs, {args.steps} steps, seeds {seeds}"
    ]
    for par, r in reports.items():
        best = ", ".join(
            f"{w}: {lr:.3g}{'*' if edge else ''}" for w, lr, edge in zip(r["widths"], r["best_lr"], r["on_edge"])
        )
        losses = ", ".join(f"{v:.4f}" for v in r["loss_at_transferred"])
        lines += [
            f"{par}: best LR per width {best}  -> drift {r['drift_octaves']:.2f} octaves",
            f"{'':5}loss at lr {r['transferred_lr']:.3g} by width: {losses}"
            f"  ({'decreasing' if r['monotone'] else 'not monotone'})",
        ]
    if any(any(r["on_edge"]) for r in reports.values()):
        lines.append("* optimum on the grid's edge: only a bound; widen --lrs")
    if args.plot:
        lines.append(f"plot written to {args.plot}")
    emit(args, "\n".join(lines), reports)
    return 0
