"""`workbench diffusion ...`: noise schedules, sampling timesteps and the generative experiments.

The interface other tools rely on:

- `workbench diffusion schedule --betas linear|scaled_linear [--zero-terminal-snr] --steps 1000 --json`
  prints ``{"alphas_cumprod": [...], ...}``;
- `workbench diffusion timesteps --spacing leading|linspace|trailing --train-steps 1000 --steps 10 --json`
  prints ``{"timesteps": [...]}``.
"""

from __future__ import annotations

from workbench.cli import Progress, add_area, add_job_flags, add_parser, emit
from workbench.errors import InputError

# Stable Diffusion's betas for scaled_linear, DDPM's (Ho et al. 2020, §4) for linear.
DEFAULT_BETAS = {"scaled_linear": (0.00085, 0.012), "linear": (1e-4, 0.02)}


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench diffusion timesteps --spacing trailing --steps 10")

    p = add_parser(verbs, "schedule", _schedule, json=True)
    p.add_argument("--betas", default="scaled_linear", choices=tuple(DEFAULT_BETAS), help="the beta schedule")
    p.add_argument("--steps", type=int, default=1000, help="training timesteps T")
    p.add_argument("--beta-start", type=float, help="first beta (default: 0.00085 scaled_linear, 1e-4 linear)")
    p.add_argument("--beta-end", type=float, help="last beta (default: 0.012 scaled_linear, 0.02 linear)")
    p.add_argument("--zero-terminal-snr", action="store_true", help="rescale so that ᾱ_T = 0 (Algorithm 1)")

    p = add_parser(verbs, "timesteps", _timesteps, json=True)
    p.add_argument("--spacing", required=True, help="leading, linspace or trailing")
    p.add_argument("--train-steps", type=int, default=1000, help="training timesteps T")
    p.add_argument("--steps", type=int, default=10, help="sampling steps S")
    p.add_argument("--steps-offset", type=int, default=0, help="added to leading timesteps (SD configs use 1)")

    for verb, handler in (("robustness", _robustness), ("brightness", _brightness)):
        p = add_parser(verbs, verb, handler)
        add_job_flags(p, config_help="an experiment config (YAML/JSON)", set_example="train.max_steps=500")


def _schedule(args) -> int:
    """A beta schedule's cumulative alphas (optionally zero terminal SNR).

    Print ᾱ_t = ∏(1 − β_i) for t = 0..T−1 and the terminal SNR. --zero-terminal-snr applies Lin et
    al.'s Algorithm 1 (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed").

    examples:
      workbench diffusion schedule --betas scaled_linear --zero-terminal-snr --json
      workbench diffusion schedule --betas linear --steps 1000
    """
    import math

    import numpy as np

    from workbench.generative import schedules

    if not 2 <= args.steps <= schedules.MAX_TRAIN_TIMESTEPS:  # before allocating T floats
        raise InputError(
            f"--steps {args.steps}: the training timesteps T must be in 2..{schedules.MAX_TRAIN_TIMESTEPS:,}"
        )
    start, end = DEFAULT_BETAS[args.betas]
    start = start if args.beta_start is None else args.beta_start
    end = end if args.beta_end is None else args.beta_end
    betas = schedules.make_betas(args.betas, args.steps, start, end)
    if args.zero_terminal_snr:
        betas = schedules.rescale_zero_terminal_snr(betas)
    abar = schedules.alphas_cumprod(betas)
    terminal = float(schedules.snr(abar)[-1])
    if not (np.all(np.isfinite(abar)) and math.isfinite(terminal)):  # never print NaN as a result
        raise InputError(
            f"--betas {args.betas} --beta-start {start:g} --beta-end {end:g} --steps {args.steps}"
            f"{' --zero-terminal-snr' if args.zero_terminal_snr else ''}: the schedule is not finite"
        )
    payload = {
        "betas": args.betas,
        "steps": args.steps,
        "zero_terminal_snr": args.zero_terminal_snr,
        "alphas_cumprod": abar.tolist(),
        "terminal_snr": terminal,
    }
    text = (
        f"{args.betas}, T = {args.steps}{', zero terminal SNR' if args.zero_terminal_snr else ''}: "
        f"ᾱ_0 = {abar[0]:.6f}, ᾱ_T−1 = {abar[-1]:.6g}, sqrt(ᾱ_T−1) = {abar[-1] ** 0.5:.6f}, "
        f"SNR(T−1) = {terminal:.6g}"
    )
    emit(args, text, payload)
    return 0


def _timesteps(args) -> int:
    """The sampler's timesteps for a spacing (leading, linspace, trailing).

    The S timesteps a DDIM/DDPM sampler visits, first (noisiest) first, as diffusers' set_timesteps
    computes them; Lin et al. 2024, §3.3, argue for trailing (sampling starts at t = T).

    examples:
      workbench diffusion timesteps --spacing trailing --train-steps 1000 --steps 10 --json
      workbench diffusion timesteps --spacing leading --steps 10 --steps-offset 1
    """
    from workbench.generative import schedules

    # The library's message cannot know the flags; name the one that is wrong.
    if not 1 <= args.train_steps <= schedules.MAX_TRAIN_TIMESTEPS:
        raise InputError(
            f"--train-steps {args.train_steps}: the training timesteps T must be in "
            f"1..{schedules.MAX_TRAIN_TIMESTEPS:,}"
        )
    if not 1 <= args.steps <= args.train_steps:
        raise InputError(
            f"--steps {args.steps}: the sampling steps must be in 1..{args.train_steps} (at most --train-steps)"
        )
    steps = schedules.timesteps(args.spacing, args.train_steps, args.steps, args.steps_offset).tolist()
    emit(
        args, " ".join(map(str, steps)), {"spacing": args.spacing, "train_steps": args.train_steps, "timesteps": steps}
    )
    return 0


def _robustness(args) -> int:
    """Train PFGM++ at several D and score samples under noise, fewer steps and quantisation.

    Each (D, seed) is one member of a job array (SLURM, local processes or this process); finished
    runs are reused, so a rerun resumes. Writes <root>/<experiment>/{results.nc, robustness.png} and a
    sample grid per D.

    examples:
      workbench diffusion robustness jobs/configs/diffusion_robustness.yaml
      workbench diffusion robustness jobs/configs/diffusion_robustness.yaml --set seeds=2 --executor debug --json
    """
    return _run_experiment(args, "robustness")


def _brightness(args) -> int:
    """Train the four schedule/prediction/spacing arms and compare sample brightness to data.

    Arms that share a schedule and prediction type share one trained model per seed, each such
    (arms, seed) group is one member of a job array; finished runs are reused, so a rerun resumes.
    Writes <root>/<experiment>/{results.nc, brightness.png} and sample grids.

    examples:
      workbench diffusion brightness jobs/configs/diffusion_brightness.yaml
      workbench diffusion brightness jobs/configs/diffusion_brightness.yaml --set seeds=2 --executor debug --json
    """
    return _run_experiment(args, "brightness")


def _run_experiment(args, name: str) -> int:
    from jobs.experiment import Experiment, load_experiment_config, run_experiment
    from workbench.generative.config import BrightnessConfig, RobustnessConfig

    # The config is checked before the experiment's modules (torch, samplers, metrics) load: bad input is quick.
    config_type = RobustnessConfig if name == "robustness" else BrightnessConfig
    config = load_experiment_config(config_type, args.config, args.overrides)
    from workbench.generative import experiments as ex
    from workbench.generative import robustness as rob

    # (items, member, finish); a brightness member returns the runs of several arms
    items, member, finish = {
        "robustness": (rob.robustness_items, rob.robustness_member, rob.finish_robustness),
        "brightness": (ex.brightness_groups, ex.brightness_member, ex.finish_brightness),
    }[name]
    folder = lambda config: ex.output_dir(config) / "submitit"
    experiment = Experiment(items, member, finish, folder=folder, flatten=name == "brightness")
    waiting = Progress(args)
    try:
        result = run_experiment(experiment, config, args.executor, waiting=waiting)
    finally:
        waiting.close()
    emit(args, *result)
    return 0
