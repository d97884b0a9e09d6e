"""`workbench diffusion ...`: noise schedules, sampling timesteps and the generative experiments.

The interface other tools rely on (issue 6):

- `workbench diffusion schedule --betas linear|scaled_linear [--zero-terminal-snr] --steps 1000 --json`
  prints ``{"alphas_cumprod": [...], ...}``;
- `workbench diffusion timesteps --spacing leading|linspace|trailing --train-steps 1000 --steps 10 --json`
  prints ``{"timesteps": [...]}``.
"""

from __future__ import annotations

from workbench.cli import add_area, add_json_flag, add_parser, emit

# Stable Diffusion's betas for scaled_linear, DDPM's for linear (diffusion.md §6.3).
DEFAULT_BETAS = {"scaled_linear": (0.00085, 0.012), "linear": (1e-4, 0.02)}


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench diffusion timesteps --spacing trailing --steps 10")

    p = add_parser(verbs, "schedule", help="a beta schedule's cumulative alphas (optionally zero terminal SNR)",
                   description="Print ᾱ_t = ∏(1 − β_i) for t = 0..T−1 and the terminal SNR. --zero-terminal-snr "
                               "applies Lin et al.'s Algorithm 1 (diffusion.md §2.9).",
                   examples="  workbench diffusion schedule --betas scaled_linear --zero-terminal-snr --json\n"
                            "  workbench diffusion schedule --betas linear --steps 1000\n")
    p.add_argument("--betas", default="scaled_linear", choices=tuple(DEFAULT_BETAS), help="the beta schedule")
    p.add_argument("--steps", type=int, default=1000, help="training timesteps T")
    p.add_argument("--beta-start", type=float, help="first beta (default: 0.00085 scaled_linear, 1e-4 linear)")
    p.add_argument("--beta-end", type=float, help="last beta (default: 0.012 scaled_linear, 0.02 linear)")
    p.add_argument("--zero-terminal-snr", action="store_true", help="rescale so that ᾱ_T = 0 (Algorithm 1)")
    add_json_flag(p)
    p.set_defaults(handler=_schedule)

    p = add_parser(verbs, "timesteps", help="the sampler's timesteps for a spacing (leading, linspace, trailing)",
                   description="The S timesteps a DDIM/DDPM sampler visits, first (noisiest) first, as diffusers' "
                               "set_timesteps computes them (diffusion.md §2.11).",
                   examples="  workbench diffusion timesteps --spacing trailing --train-steps 1000 --steps 10 --json\n"
                            "  workbench diffusion timesteps --spacing leading --steps 10 --steps-offset 1\n")
    p.add_argument("--spacing", required=True, help="leading, linspace or trailing")
    p.add_argument("--train-steps", type=int, default=1000, help="training timesteps T")
    p.add_argument("--steps", type=int, default=10, help="sampling steps S")
    p.add_argument("--steps-offset", type=int, default=0, help="added to leading timesteps (SD configs use 1)")
    add_json_flag(p)
    p.set_defaults(handler=_timesteps)

    for verb, text, example in (
            ("robustness", "train PFGM++ at several D and score samples under noise, fewer steps and quantisation",
             "jobs/configs/diffusion_robustness.yaml"),
            ("brightness", "train the four schedule/prediction/spacing arms and compare sample brightness to data",
             "jobs/configs/diffusion_brightness.yaml")):
        p = add_parser(verbs, verb, help=text,
                       description=f"{text[0].upper()}{text[1:]}. Each (setting, seed) is one member of a job "
                                   "array (SLURM, local processes or this process); finished runs are reused, so a "
                                   "rerun resumes. Writes <root>/<experiment>/{results.nc, figure PNG}.",
                       examples=f"  workbench diffusion {verb} {example}\n"
                                f"  workbench diffusion {verb} {example} --set seeds=2 --executor debug --json\n")
        p.add_argument("config", help="an experiment config (YAML/JSON)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable), e.g. --set train.max_steps=500")
        p.add_argument("--executor", default="auto", choices=("auto", "local", "slurm", "debug"),
                       help="where members run: a SLURM array, local processes, or in this process (debug)")
        add_json_flag(p)
        p.set_defaults(handler=_robustness if verb == "robustness" else _brightness)


def _schedule(args) -> int:
    from workbench.generative import schedules

    start, end = DEFAULT_BETAS[args.betas]
    betas = schedules.make_betas(args.betas, args.steps, start if args.beta_start is None else args.beta_start,
                                 end if args.beta_end is None else args.beta_end)
    if args.zero_terminal_snr:
        betas = schedules.rescale_zero_terminal_snr(betas)
    abar = schedules.alphas_cumprod(betas)
    terminal = float(schedules.snr(abar)[-1])
    payload = {"betas": args.betas, "steps": args.steps, "zero_terminal_snr": args.zero_terminal_snr,
               "alphas_cumprod": abar.tolist(), "terminal_snr": terminal}
    text = (f"{args.betas}, T = {args.steps}{', zero terminal SNR' if args.zero_terminal_snr else ''}: "
            f"ᾱ_0 = {abar[0]:.6f}, ᾱ_T−1 = {abar[-1]:.6g}, sqrt(ᾱ_T−1) = {abar[-1] ** 0.5:.6f}, "
            f"SNR(T−1) = {terminal:.6g}")
    emit(args, text, payload)
    return 0


def _timesteps(args) -> int:
    from workbench.generative import schedules

    steps = schedules.timesteps(args.spacing, args.train_steps, args.steps, args.steps_offset).tolist()
    emit(args, " ".join(map(str, steps)), {"spacing": args.spacing, "train_steps": args.train_steps,
                                           "timesteps": steps})
    return 0


def _load_experiment(cls, args):
    from jobs.submit import JobSpec
    from workbench.config import apply_overrides, from_dict, load

    config = apply_overrides(load(cls, args.config), args.overrides)
    spec = from_dict(JobSpec, {"name": config.experiment, **config.job}, source=f"{args.config} job")
    return config, spec


def _robustness(args) -> int:
    import math
    from pathlib import Path

    import numpy as np

    from jobs.sweep import run_array
    from workbench.generative import experiments
    from workbench.store import atomic_write_netcdf

    config, spec = _load_experiment(experiments.RobustnessConfig, args)
    out = Path(config.root) / config.experiment
    items = [(config, D, seed) for D in config.D for seed in range(config.seeds)]
    executor, members = run_array(experiments.robustness_member, items, spec, args.executor, out / "submitit")
    ds = experiments.assemble_robustness(config, members)
    atomic_write_netcdf(ds, out / "results.nc")
    experiments.plot_robustness(ds, out / "robustness.png")
    for m in members:
        if m["seed"] == 0 and m.get("grid") is not None:
            name = "inf" if math.isinf(m["D"]) else f"{m['D']:g}"
            experiments.save_grid(np.asarray(m["grid"]), out / f"samples_D{name}.png")
    rows, lines = [], [f"PFGM++ robustness ({config.model.data}, {config.seeds} seeds, executor {executor}); "
                       "sliced W1 to data, mean ± 95 % t-interval"]
    for D in config.D:
        row = {"D": D}
        for probe in ("alpha", "steps", "bits"):
            values = ds[f"swd_{probe}"].sel(D=D).values  # (seed, level)
            mean, half = experiments.t_interval(values, axis=0)
            row[probe] = {"levels": list(ds[probe].values.tolist()), "mean": mean.tolist(), "ci95": half.tolist()}
        rows.append(row)
        name = "inf (EDM)" if math.isinf(D) else f"{D:g}"
        parts = [f"{p} " + ", ".join(f"{lv:g}: {m:.3f}±{h:.3f}" for lv, m, h in
                                     zip(row[p]["levels"], row[p]["mean"], row[p]["ci95"]))
                 for p in ("alpha", "steps", "bits")]
        lines.append(f"  D = {name}: " + "; ".join(parts))
    lines.append(f"wrote {out / 'results.nc'} and {out / 'robustness.png'}")
    emit(args, "\n".join(lines), {"executor": executor, "results": str(out / "results.nc"),
                                  "figure": str(out / "robustness.png"), "rows": rows})
    return 0


def _brightness(args) -> int:
    from pathlib import Path

    import numpy as np

    from jobs.sweep import run_array
    from workbench.generative import experiments
    from workbench.generative.trainable import load_data
    from workbench.store import atomic_write_netcdf

    config, spec = _load_experiment(experiments.BrightnessConfig, args)
    out = Path(config.root) / config.experiment
    items = [(config, arms, seed) for arms, seed in experiments.brightness_groups(config)]
    executor, groups = run_array(experiments.brightness_member, items, spec, args.executor, out / "submitit")
    members = [m for group in groups for m in group]
    data, _ = load_data(config.model)
    ds = experiments.assemble_brightness(config, members, data)
    atomic_write_netcdf(ds, out / "results.nc")
    experiments.plot_brightness(ds, out / "brightness.png")
    for m in members:
        if m["seed"] == 0:
            experiments.save_grid(np.asarray(m["grid"]), out / f"samples_{m['arm']}.png")
    experiments.save_grid(data[:16], out / "samples_data.png")
    rows, lines = [], [f"Brightness ({config.model.image_size}x{config.model.image_size}, {config.seeds} seeds, "
                       f"DDIM {config.sample_steps} steps, executor {executor}); mean ± 95 % t-interval"]
    for arm in config.arms:
        row = {"arm": arm}
        for name in ("w1", "spread_ratio"):
            mean, half = experiments.t_interval(ds[name].sel(arm=arm).values, axis=0)
            row[name], row[f"{name}_ci95"] = float(mean), float(half)
        row["w1_per_seed"] = ds["w1"].sel(arm=arm).values.tolist()
        rows.append(row)
        lines.append(f"  {arm:<22} W1 {row['w1']:.4f} ± {row['w1_ci95']:.4f}   spread ratio "
                     f"{row['spread_ratio']:.3f} ± {row['spread_ratio_ci95']:.3f}")
    lines.append(f"wrote {out / 'results.nc'}, {out / 'brightness.png'} and sample grids")
    emit(args, "\n".join(lines), {"executor": executor, "results": str(out / "results.nc"), "rows": rows})
    return 0
