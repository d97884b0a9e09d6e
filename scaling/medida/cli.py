"""`workbench medida ...`: discover the model error of an imperfect KS model (MEDIDA).

The interface other tools rely on: `workbench medida run CASE|CONFIG --json` prints
``{"true": {term: coef}, "discovered": {term: {"coef": x, "std": s}}, ...}`` with terms named like
`u*u_x`, `u_xx`, `u_xxxx` (extra keys: relative_error, spurious, corrected_lhs, sympy, diagnostics, config).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from workbench.cli import Progress, add_area, add_job_flags, add_parser, add_set_flag, emit
from workbench.errors import ConfigError, InputError

_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench medida run KS12 --set noise=0.01 --set ensemble=256")

    p = add_parser(verbs, "run", _run, json=True)
    p.add_argument("target", metavar="CASE|CONFIG", help="a built-in case name or a config file")
    add_set_flag(p, "pairs=2")

    add_parser(verbs, "cases", _cases, json=True)

    p = add_parser(verbs, "sweep", _sweep)
    add_job_flags(p, config_help="a sweep config (YAML/JSON)", set_example="base.pairs=2")


def _overrides(items: list[str]) -> list[str]:
    """`ensemble=none` means no data assimilation (YAML would read `none` as a string)."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.strip().rsplit(".", 1)[-1] == "ensemble" and value.strip().lower() == "none":
            item = f"{key}=null"
        out.append(item)
    return out


def _looks_like_file(target: str) -> bool:
    return target.lower().endswith(_CONFIG_SUFFIXES) or os.sep in target or Path(target).is_file()


def load_run_config(target: str, overrides: list[str]):
    """The MedidaConfig of `workbench medida run CASE|CONFIG --set ...`, validated (InputError otherwise)."""
    from scaling.medida.cases import CASES
    from scaling.medida.pipeline import MedidaConfig
    from scaling.medida.sweep import canonical_case, validate
    from workbench.config import apply_overrides, load

    if _looks_like_file(target):
        try:
            config = load(MedidaConfig, target)
        except ConfigError:
            raise
        except InputError as exc:  # MedidaConfig's own checks do not know the file
            raise InputError(f"{exc} (in {target})") from None
    else:
        if target.strip().lower() not in {c.lower() for c in CASES}:
            raise InputError(
                f"{target!r} is neither a built-in MEDIDA case nor a config file (.yaml/.json); "
                f"`workbench medida cases` lists the cases ({', '.join(list(CASES)[:3])}, …)"
            )
        config = MedidaConfig(case=canonical_case(target))
    if overrides:
        overrides = _overrides(overrides)
        try:
            config = apply_overrides(config, overrides)
        except ConfigError:
            raise
        except InputError as exc:
            raise InputError(f"{exc} (with --set {' --set '.join(overrides)})") from None
    if config.case:
        config = dataclasses.replace(config, case=canonical_case(config.case))
    return validate(config)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _run(args) -> int:
    """Run one case end to end: true vs discovered error, coefficient errors.

    Run MEDIDA once: truth windows, (noisy) observations, one-step error (with an EnKF when noise >
    0 and ensemble is set), sparse Bayesian regression. CASE is a built-in case (`workbench medida
    cases`); CONFIG a YAML/JSON file of MedidaConfig fields (see jobs/configs/medida_case.yaml).

    examples:
      workbench medida run KS2
      workbench medida run KS12 --set noise=0.01 --set ensemble=1024 --json
      workbench medida run jobs/configs/medida_case.yaml --set library.derivatives=fd
    """
    from scaling.medida.pipeline import equations, run

    config = load_run_config(args.target, args.overrides)
    result = run(config)
    truth, model = equations(config)
    expr, stds = result.sympy()
    truth_rhs, model_rhs = truth.rhs_terms(), model.rhs_terms()
    rel = result.relative_errors()

    # The corrected model's LHS coefficient of each term: λ_model − ξ (RHS error ξ, LHS = −RHS).
    lhs_terms = [t for t in result.terms if t in model_rhs or t in truth_rhs or t in result.discovered]
    lhs_terms += sorted((set(model_rhs) | set(truth_rhs)) - set(lhs_terms))
    corrected = {
        t: {
            "model": 0.0 - model_rhs.get(t, 0.0),
            "corrected": 0.0 - model_rhs.get(t, 0.0) - result.discovered.get(t, {"coef": 0.0})["coef"],
            "truth": 0.0 - truth_rhs.get(t, 0.0),
        }
        for t in lhs_terms
    }

    payload = result.to_json()
    payload.update(
        case=config.case or None,
        max_relative_error=result.max_relative_error(),
        corrected_lhs=corrected,
        sympy=str(expr),
        config=_plain_config(config),
    )

    da = (
        f"EnKF {config.ensemble} members"
        if config.noise > 0 and config.ensemble is not None
        else "no data assimilation"
    )
    if da.startswith("EnKF") and config.assimilation == "public":
        # The public code's filter: absolute observation error R = NOISE_MAG²·I (`experiments/KS/main.py`).
        da += f" (public filter, R = {config.noise:g}²·I)"
    lam = ", ".join(_fmt(0.0 - model_rhs.get(t, 0.0)) for t in ("u*u_x", "u_xx", "u_xxxx"))
    extra = "".join(f" + {_fmt(-model_rhs[t])}·{t}" for t in ("u_xxx", "u^2*u_x") if t in model_rhs)
    lines = [
        f"MEDIDA {config.case or Path(args.target).name}: model u_t + [{lam}]·(u·u_x, u_xx, u_xxxx){extra} = 0, "
        f"truth λ = [{', '.join(_fmt(v) for v in config.lambda_true)}]",
        f"noise {config.noise:g}·std(u), {da}, {config.pairs} pairs, Δt {config.dt:g}, {config.estimate}, "
        f"library {len(result.terms)} terms ({config.library.derivatives}), {config.regression.method}",
        "",
        f"  {'term':<10} {'true error':>12} {'discovered (coef ± std)':>30} {'rel. error':>11}",
    ]
    shown = list(result.true) + [t for t in result.discovered if t not in result.true]
    for t in shown:
        true = _fmt(result.true[t]) if t in result.true else "0"
        found = result.discovered.get(t)
        found_text = f"{found['coef']:.6g} ± {found['std']:.2g}" if found else "— (pruned)"
        err = f"{100 * rel[t]:.3g} %" if t in rel else "spurious"
        lines.append(f"  {t:<10} {true:>12} {found_text:>30} {err:>11}")
    spurious = result.spurious()
    lines.append(f"spurious terms: {', '.join(spurious) if spurious else 'none'}")
    lines.append(
        "corrected model LHS coefficients (λ_model − ξ → truth): "
        + ", ".join(
            f"{t} {_fmt(c['model'])} → {_fmt(c['corrected'])} ({_fmt(c['truth'])})" for t, c in corrected.items()
        )
    )
    lines.append(f"discovered error (RHS): u_t(truth) − u_t(model) = {expr}")
    d = result.diagnostics
    parts = [f"state relative rmse {d['state_relative_rmse']:.3g}", f"residual std {d['residual_std']:.3g}"]
    if "analysis_spread" in d:
        parts.append(f"analysis spread {d['analysis_spread']:.3g}")
    parts.append("time " + ", ".join(f"{k[:-2]} {d[k]:.2f} s" for k in ("truth_s", "estimate_s", "regression_s")))
    lines.append("diagnostics: " + "; ".join(parts))
    emit(args, "\n".join(lines), payload)
    return 0


def _plain_config(config) -> dict:
    from workbench.config import to_dict

    return to_dict(config)


def _cases(args) -> int:
    """List the built-in cases: model coefficients, true error, note.

    The built-in imperfect models (the truth is standard KS, λ = [1, 1, 1]): the model's LHS
    coefficients [λ0, λ1, λ2] of u_t + λ0·u·u_x + λ1·u_xx + λ2·u_xxxx (+ extra terms) = 0 and the
    RHS error u_t(truth) − u_t(model) MEDIDA should find.

    examples:
      workbench medida cases
      workbench medida cases --json
    """
    from scaling.medida.cases import CASES
    from scaling.medida.pipeline import MedidaConfig, equations, true_error

    rows, lines = [], [f"  {'case':<14} {'model [λ0, λ1, λ2] + extra':<32} {'true error (RHS)':<34} note"]
    for name, case in CASES.items():
        error = true_error(*equations(MedidaConfig(case=name)))
        rows.append(
            {
                "case": name,
                "lambda_model": case["lambda_model"],
                "extra_model": case["extra_model"],
                "true_error": error,
                "note": case["note"],
            }
        )
        model = f"[{', '.join(_fmt(v) for v in case['lambda_model'])}]" + "".join(
            f" + {_fmt(v)}·{t}" for t, v in case["extra_model"].items()
        )
        err = " ".join(f"{'+' if c >= 0 else '−'}{_fmt(abs(c))}·{t}" for t, c in error.items()) or "0"
        lines.append(f"  {name:<14} {model:<32} {err:<34} {case['note']}")
    lines.append(
        "truth: standard KS u_t + u·u_x + u_xx + u_xxxx = 0; model: u_t + λ0·u·u_x + λ1·u_xx + λ2·u_xxxx (+ extra) = 0"
    )
    emit(args, "\n".join(lines), {"cases": rows})
    return 0


def _sweep(args) -> int:
    """Cases × noise × ensemble × seeds as a job array, results to netCDF.

    Run a MEDIDA sweep as one job array (SLURM, local processes or this process) and write
    <root>/<name>/results.nc with dims (case, noise, ensemble, seed, term); ensemble 0 means no data
    assimilation.

    examples:
      workbench medida sweep jobs/configs/medida_sweep.yaml
      workbench medida sweep jobs/configs/medida_sweep.yaml --set base.pairs=2 --executor debug --json
    """
    from jobs.experiment import Experiment, load_experiment_config, run_experiment, say
    from scaling.medida import sweep

    if not args.config.lower().endswith(_CONFIG_SUFFIXES) and not Path(args.config).is_file():
        raise InputError(f"sweep config {args.config!r} must be a .yaml/.yml/.json file")
    config = load_experiment_config(sweep.MedidaSweepConfig, args.config, _overrides(args.overrides))
    # Members run batches of cases (flatten); the job name defaults to the sweep's name.
    experiment = Experiment(sweep.items, sweep.member_batch, sweep.finish, sweep.submitit_folder, sweep.job_spec,
                            flatten=True, describe=sweep.describe_batch)  # fmt: skip
    waiting = Progress(args)
    try:
        text, payload = run_experiment(experiment, config, args.executor, progress=say, waiting=waiting)
    finally:
        waiting.close()
    emit(args, text, payload)
    return 0
