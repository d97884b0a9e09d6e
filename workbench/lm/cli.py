"""`workbench lm ...`: muP language models. Verbs: coord-check, transfer, predict, doping-report, base-shapes."""

from __future__ import annotations

from pathlib import Path

from workbench.cli import add_area, add_json_flag, add_parser, emit
from workbench.errors import InputError

_CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"
HIDDEN_SLOPE_LIMIT = 0.15  # |log-log slope| over an 8x width range (reference note §7.1)
# Same as workbench.lm.coord_check.VARIANTS, repeated so `workbench --help` need not import torch.
VARIANTS = ("mup", "sp", "mup-torch-adamw", "mup-no-reinit", "mup-bad-delta")


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench lm coord-check --json --plot coord.png")
    _register_coord_check(verbs)
    _register_predict(verbs)
    _register_doping_report(verbs)
    _register_base_shapes(verbs)
    _register_transfer(verbs)


def _register_coord_check(verbs) -> None:
    p = add_parser(
        verbs, "coord-check",
        help="activation scale vs width over a few Adam steps, for muP and its negative controls",
        description="Train tiny GPTs at several widths for a few Adam steps on one fixed batch and report, "
                    "per module, the log-log slope of mean |activation| against width (max |slope| over "
                    f"steps). Under muP hidden modules should stay within |slope| <= {HIDDEN_SLOPE_LIMIT}; "
                    "SP and the other controls should not.",
        examples="  workbench lm coord-check\n  workbench lm coord-check --json --plot coord.png\n"
                 "  workbench lm coord-check --widths 64,128,256,512 --variants mup,sp\n")
    p.add_argument("--widths", default="32,64,128,256", help="comma-separated increasing widths (first = muP base)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=4, help="Adam steps")
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged per width")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate (above a training LR, as mup advises)")
    p.add_argument("--depth", type=int, default=2, help="transformer blocks")
    p.add_argument("--head-dim", type=int, default=8, help="fixed head size; heads = width / head_dim")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of activation scale vs width")
    add_json_flag(p)
    p.set_defaults(handler=_coord_check)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"{flag} = {text!r} must be comma-separated integers, e.g. 32,64,128,256") from None
    if len(values) < 2 or any(v < 1 for v in values) or sorted(set(values)) != values:
        raise InputError(f"{flag} = {text!r} must list at least two increasing positive integers")
    return values


def _coord_check(args) -> int:
    from workbench.lm.coord_check import HIDDEN_MODULES, coord_data, plot_coord_data
    from workbench.lm.coord_check import slopes as slope_table

    widths = _int_list(args.widths, "--widths")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise InputError(f"--variants: unknown variant {unknown[0] if unknown else '(none)'!r}; "
                         f"choose from: {', '.join(VARIANTS)}")
    for flag, value in (("--steps", args.steps), ("--seeds", args.seeds), ("--depth", args.depth),
                        ("--head-dim", args.head_dim)):
        if value < 1:
            raise InputError(f"{flag} = {value} must be >= 1")
    if not args.lr > 0:
        raise InputError(f"--lr = {args.lr} must be > 0")
    if any(w % args.head_dim for w in widths):
        raise InputError(f"--widths {args.widths}: every width must be a multiple of --head-dim = {args.head_dim}")
    from tqdm import tqdm

    data = {}
    # tqdm on stderr, hidden when stderr is not a terminal.
    for variant in tqdm(variants, desc="coord-check", unit="variant", disable=None, leave=False):
        data[variant] = coord_data(variant, widths, steps=args.steps, seeds=args.seeds, lr=args.lr,
                                   depth=args.depth, head_dim=args.head_dim)
    slopes = {variant: slope_table(d, widths) for variant, d in data.items()}
    if args.plot:
        plot_coord_data(data, widths, args.plot)

    modules = list(next(iter(slopes.values())))
    lines = [f"log-log slope of mean |activation| vs width {widths[0]}..{widths[-1]} "
             f"(max |slope| over {args.steps} Adam steps, lr {args.lr:g}, {args.seeds} seeds)",
             f"{'variant':<17}" + "".join(f"{m:>12}" for m in modules) + "   hidden"]
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


def _register_predict(verbs) -> None:
    p = add_parser(
        verbs, "predict",
        help="fit L(N) = a*N^b + c on a width sweep's smaller widths and predict the held-out larger ones",
        description="Read a width sweep (a `workbench jobs sweep ... --grid model.width=...` directory, or its "
                    "collected .nc), fit L(N) = a*N^b + c (b < 0) on all but the --holdout largest widths, and "
                    "print predicted vs actual loss for the held-out ones with a bootstrap band. Seeds are "
                    "averaged; N is the non-embedding parameter count unless --count params_total.",
        examples="  workbench lm predict runs/lm_mup_tiny\n  workbench lm predict runs/lm_mup_tiny --holdout 2 --json\n")
    _sweep_arguments(p)
    p.add_argument("--holdout", type=int, default=1, help="number of largest widths to predict (default 1)")
    p.add_argument("--count", choices=("params", "params_total"), default="params",
                   help="N: non-embedding (params, default) or total parameters")
    p.add_argument("--boot", type=int, default=200, help="bootstrap refits for the band (default 200)")
    add_json_flag(p)
    p.set_defaults(handler=_predict)


def _predict(args) -> int:
    from scaling.mup_predict import predict_sweep

    if args.boot < 1:
        raise InputError(f"--boot = {args.boot} must be >= 1")
    result = predict_sweep(args.sweep, holdout=args.holdout, count=args.count, loss_var=args.loss,
                           n_boot=args.boot)
    fit = result["fit"]
    lines = [f"L(N) = {fit['a']:.4g} * N^{fit['b']:.4f} + {fit['c']:.4f}   "
             f"(N = {args.count}, fitted on {len(result['fitted'])} widths, rmse {result['rmse']:.3g})",
             f"{'width':>8}{'params':>12}{'predicted':>11}{'actual':>10}{'rel.err':>9}   95% band"]
    for row in result["predictions"]:
        lines.append(f"{row['width']:>8}{row['params']:>12}{row['predicted']:>11.4f}{row['actual']:>10.4f}"
                     f"{100 * row['rel_error']:>8.2f}%   [{row['low']:.4f}, {row['high']:.4f}]")
    emit(args, "\n".join(lines), result)
    return 0


def _register_doping_report(verbs) -> None:
    p = add_parser(
        verbs, "doping-report",
        help="does loss scale with trainable or total parameters? joint fits over a doping sweep",
        description="Read a doping sweep (widths x --grid model.frozen_ratio=... or model.mlp_kind=..., seeds "
                    "optional; a sweep directory or its collected .nc) and fit one law L = a*X^b + c over all "
                    "doping settings with X = trainable parameters, X = trainable + frozen parameters, and X = "
                    "training compute. Reports each fit's residual RMS and per-setting mean residual, and which "
                    "parameter count collapses the settings onto one curve (reference note §2.6, §7.6).",
        examples="  workbench lm doping-report runs/lm_doping_tiny\n"
                 "  workbench lm doping-report runs/lm_doping_tiny/sweep.nc --json\n")
    _sweep_arguments(p)
    add_json_flag(p)
    p.set_defaults(handler=_doping_report)


def _doping_report(args) -> int:
    from scaling.doping_report import doping_report

    result = doping_report(args.sweep, loss_var=args.loss)
    settings = result["settings"]
    names = {"trainable": "N trainable", "total": "N trainable+frozen", "compute": "C (FLOPs)"}
    lines = [f"joint fits L = a*X^b + c over {len(result['points'])} points, {result['doping_dim']} in "
             f"{{{', '.join(settings)}}}, {result['n_seeds']} seed(s) per point",
             f"{'X':<20}{'a':>11}{'b':>9}{'c':>9}{'rmse':>10}   mean residual by {result['doping_dim']}"]
    for key, fit in result["fits"].items():
        residuals = "  ".join(f"{s}: {fit['mean_residual'][s]:+.4f}" for s in settings)
        lines.append(f"{names[key]:<20}{fit['a']:>11.4g}{fit['b']:>9.4f}{fit['c']:>9.4f}{fit['rmse']:>10.3g}   "
                     f"{residuals}")
    lines.append(f"{'width':>8}{result['doping_dim']:>14}{'loss':>9}{'trainable':>11}{'frozen':>10}{'compute':>11}")
    for p in result["points"]:
        width = "-" if p["width"] is None else p["width"]
        lines.append(f"{width:>8}{p['setting']:>14}{p['loss']:>9.4f}{p['params']:>11}{p['params_frozen']:>10}"
                     f"{p['compute']:>11.3g}")
    lines.append(result["verdict"])
    emit(args, "\n".join(lines), result)
    return 0


def _register_base_shapes(verbs) -> None:
    p = add_parser(
        verbs, "base-shapes",
        help="write the muP base-shape (.bsh) file of a gpt_lm job config's model",
        description="Build the config's base model (model.base_width) and delta model (twice it) on the meta "
                    "device and save mup's base shapes as a .bsh YAML file. Name it in a config as "
                    "model.base_shapes to pin the shapes every width of a sweep is scaled against.",
        examples="  workbench lm base-shapes jobs/configs/lm_mup_tiny.yaml base32.bsh\n"
                 "  workbench jobs sweep jobs/configs/lm_mup_tiny.yaml --set model.base_shapes=base32.bsh "
                 "--grid model.width=32,64,128\n")
    p.add_argument("config", metavar="CONFIG", help="a gpt_lm job config (YAML or JSON)")
    p.add_argument("out", metavar="OUT.bsh", help="where to write the base shapes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    add_json_flag(p)
    p.set_defaults(handler=_base_shapes)


def _base_shapes(args) -> int:
    import tempfile
    from pathlib import Path

    from jobs.entrypoints import load_job_config
    from workbench.lm.model import base_shapes
    from workbench.store import atomic_write_text

    config = load_job_config(args.config, args.set)
    if config.kind != "gpt_lm":
        raise InputError(f"{args.config}: kind is {config.kind!r}; base shapes are for kind 'gpt_lm'")
    model = config.model.gpt_config()
    if model.parametrization != "mup":
        raise InputError(f"{args.config}: model.parametrization is {model.parametrization!r}; base shapes are "
                         "for 'mup'")
    out = Path(args.out)
    if out.suffix != ".bsh":
        raise InputError(f"{out}: the base-shape file must end in .bsh")
    with tempfile.TemporaryDirectory() as tmp:  # mup writes to a path: build it aside, then replace `out`
        scratch = Path(tmp) / out.name
        shapes = base_shapes(model, savefile=scratch)
        atomic_write_text(out, scratch.read_text())
    emit(args, f"wrote {out}: base width {model.base_width}, delta {2 * model.base_width}, "
               f"{len(shapes)} parameters", {"path": str(out), "base_width": model.base_width,
                                              "parameters": len(shapes)})
    return 0


def _register_transfer(verbs) -> None:
    p = add_parser(
        verbs, "transfer",
        help="learning-rate transfer across widths: best LR per width under muP and SP",
        description="Train the config's model at every width x learning rate x seed (in this process, one "
                    "thread per run; for a cluster use `workbench jobs sweep`), take the held-out loss, and "
                    "report per parametrisation the best LR per width (parabola in log2 LR), its drift in "
                    "octaves over the width range, and loss vs width at the base width's best LR.",
        examples="  workbench lm transfer --widths 32,64,128,256 --lrs 2^-8:2^-3 --steps 100 --seeds 0,1\n"
                 "  workbench lm transfer --parametrizations mup --steps 50 --json --plot transfer.png\n")
    p.add_argument("--config", default=str(_CONFIGS / "lm_transfer.yaml"),
                   help="a gpt_lm job config whose model section sets everything but width and lr "
                        "(default jobs/configs/lm_transfer.yaml, the README's protocol)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--widths", default="32,64,128,256", help="comma-separated increasing widths")
    p.add_argument("--lrs", default="2^-8:2^-3", help="learning rates: a comma list, or 2^A:2^B for every power "
                                                     "of two from 2^A to 2^B")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, averaged")
    p.add_argument("--parametrizations", default="mup,sp", help="comma-separated subset of: mup, sp")
    p.add_argument("--plot", metavar="PATH", help="write loss vs learning rate per width (PNG)")
    p.add_argument("--out", metavar="PATH", help="write the sweeps as one netCDF file (dim parametrization)")
    add_json_flag(p)
    p.set_defaults(handler=_transfer)


def _lr_list(text: str) -> list[float]:
    import re

    match = re.fullmatch(r"\s*2\^(-?\d+)\s*:\s*2\^(-?\d+)\s*", text)
    if match:
        lo, hi = int(match.group(1)), int(match.group(2))
        if hi - lo < 2:
            raise InputError(f"--lrs {text}: needs at least 3 powers of two (2^A:2^B with B >= A + 2)")
        return [2.0 ** k for k in range(lo, hi + 1)]
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"--lrs {text!r}: give a comma list (1e-3,3e-3,1e-2) or 2^A:2^B") from None
    if len(values) < 3 or any(not v > 0 for v in values) or sorted(set(values)) != values:
        raise InputError(f"--lrs {text!r}: needs at least 3 increasing positive learning rates")
    return values


def _transfer(args) -> int:
    import dataclasses

    from jobs.entrypoints import load_job_config
    from workbench.lm.transfer import lr_sweep, transfer_report

    widths = _int_list(args.widths, "--widths")
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
    if args.steps < 1:
        raise InputError(f"--steps = {args.steps} must be >= 1")
    config = load_job_config(args.config, args.set)
    if config.kind != "gpt_lm":
        raise InputError(f"{args.config}: kind is {config.kind!r}; the transfer check trains kind 'gpt_lm'")
    model = config.model
    for width in widths:  # every width must make a valid model before hours of training start
        dataclasses.replace(model, width=width)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    sweeps, reports = {}, {}
    with tqdm(total=len(pars) * len(widths) * len(lrs) * len(seeds), desc="lm transfer", unit="run",
              disable=None) as bar:
        for par in pars:
            sweeps[par] = lr_sweep(dataclasses.replace(model, parametrization=par), widths, lrs,
                                   steps=args.steps, seeds=seeds, progress=lambda *_: bar.update())
            reports[par] = transfer_report(sweeps[par]).as_dict()
    if args.out:
        import xarray as xr

        from workbench.store import atomic_write_netcdf

        atomic_write_netcdf(xr.concat(list(sweeps.values()), dim="parametrization").assign_coords(
            parametrization=pars), args.out)
    if args.plot:
        from scaling.report import plot_lr_transfer

        plot_lr_transfer(sweeps, args.plot)
    lines = [f"learning-rate transfer: widths {widths[0]}..{widths[-1]} ({widths[-1] / widths[0]:g}x), "
             f"{len(lrs)} LRs, {args.steps} steps, seeds {seeds}"]
    for par, r in reports.items():
        best = ", ".join(f"{w}: {lr:.3g}{'*' if edge else ''}" for w, lr, edge in
                         zip(r["widths"], r["best_lr"], r["on_edge"]))
        losses = ", ".join(f"{v:.4f}" for v in r["loss_at_transferred"])
        lines += [f"{par}: best LR per width {best}  -> drift {r['drift_octaves']:.2f} octaves",
                  f"{'':5}loss at lr {r['transferred_lr']:.3g} by width: {losses}"
                  f"  ({'decreasing' if r['monotone'] else 'not monotone'})"]
    if any(any(r["on_edge"]) for r in reports.values()):
        lines.append("* optimum on the grid's edge: only a bound; widen --lrs")
    if args.plot:
        lines.append(f"plot written to {args.plot}")
    emit(args, "\n".join(lines), reports)
    return 0
