"""`workbench prose ...`: PROSE's ODE families and symbolic tokens, its data sets and evaluation.
Verbs: families, tokenize, detokenize, make-data, evaluate.

The interface other tools rely on:

- `workbench prose families --json` lists each family's name, dimension and sympy right-hand side;
- `workbench prose tokenize "EXPR|EXPR|..." --json` prints the token list;
- `workbench prose detokenize TOKENS... --json` prints ``{"valid": bool, "expr": [...]}``.
- `workbench prose make-data CONFIG [--set k=v ...] [--executor E] [--check] [--json]` builds (or
  resumes) a sharded data set, operators/prose/dataset.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workbench.cli import Progress, add_area, add_job_flags, add_parser, emit
from workbench.errors import InputError


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench prose families --preset chaotic_ode_3d")

    p = add_parser(verbs, "families", _families, json=True)
    p.add_argument("--preset", default="chaotic_ode_all", help="chaotic_ode_3d, chaotic_ode_all or family names")

    p = add_parser(verbs, "tokenize", _tokenize, json=True)
    p.add_argument("expr", metavar="EXPR|EXPR|...", help="one expression per component, '|'-separated")
    p.add_argument("--skeleton", action="store_true", help="replace every constant with <PLACEHOLDER>")

    p = add_parser(verbs, "detokenize", _detokenize, json=True)
    p.add_argument("tokens", nargs="+", metavar="TOKEN", help="the tokens, space-separated")

    p = add_parser(verbs, "make-data", _make_data)
    add_job_flags(
        p,
        config_help="a make-data config, e.g. jobs/configs/prose_data_tiny.yaml",
        set_example="out=/tmp/d",
        runs_dir=False,  # a data set goes to the config's `out`
    )
    p.add_argument("--check", action="store_true", help="build nothing: check that OUT holds every shard (else exit 2)")

    p = add_parser(verbs, "evaluate", _evaluate, json=True)
    p.add_argument("run", metavar="RUN", help="a finished prose run directory (config.json and model.pt)")
    p.add_argument(
        "--data", default="", help="a `workbench prose make-data` directory (default: the run's validation set)"
    )
    p.add_argument("--split", default="val", choices=("val", "train"), help="which split of --data")
    p.add_argument("--n", type=int, default=0, help="evaluate the first N samples (0: all)")
    p.add_argument("--out", default="", help="output folder (default: RUN/evaluation)")
    p.add_argument("--no-resolve", action="store_true", help="skip re-integrating the decoded ODEs (metric 4)")


def _families(args) -> int:
    """The ODE families: name, dimension, right-hand side, method.

    List PROSE's ODE families (the official code's ODEGenerator) with their free parameters at nominal
    values and the solver each uses.

    examples:
      workbench prose families
      workbench prose families --preset chaotic_ode_3d --json
    """
    from operators.odes import family_names, get_family

    rows = []
    for name in family_names(args.preset):
        family = get_family(name)
        rows.append(
            {
                "name": family.name,
                "dim": family.dim,
                "method": family.method,
                "params": {str(s): v for s, v in zip(family.params, family.nominal)},
                "rhs": [str(e) for e in family.rhs],
            }
        )
    lines = []
    for row in rows:
        params = ", ".join(f"{k}={v:g}" for k, v in row["params"].items())
        lines.append(f"{row['name']} (d={row['dim']}, {row['method']}; {params})")
        lines += [f"    du_{i}/dt = {e}" for i, e in enumerate(row["rhs"])]
    emit(args, "\n".join(lines), rows)
    return 0


SUPPORTED_FUNCTIONS = ("sin", "cos")  # the unary words of the vocabulary that are functions
# A name directly followed by "(" is a call (a method call, after ".", is left to the parser).
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")


def parse_system(text: str) -> list:
    """'EXPR|EXPR|...' in u_0..u_4 -> sympy expressions; InputError naming the bad component.

    Unmatched parentheses and calls of functions other than sin and cos are found before sympy
    parses the text, so the message names them (Python's tokenizer would only say "EOF in
    multi-line statement", sympy "name 'Function' is not defined"). Quoted input is shortened.
    """
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    from operators.prose.tokens import MAX_DIM, echo

    names = {f"u_{i}": sympy.Symbol(f"u_{i}") for i in range(MAX_DIM)}
    names.update({name: getattr(sympy, name) for name in SUPPORTED_FUNCTIONS})
    parts = text.split("|")
    exprs = []
    for index, part in enumerate(parts):
        if not part.strip():
            raise InputError(f"component {index} of {echo(text)!r} is empty")
        where = f"component {index} ({echo(part.strip())!r}) is not an expression"
        _check_parentheses(part, where)
        for match in _CALL.finditer(part):
            name = match.group(1)
            if name in names and name not in SUPPORTED_FUNCTIONS:
                raise InputError(f"{where}: {name} is a state, not a function; write {name}*(...) for a product")
            if name not in SUPPORTED_FUNCTIONS:
                raise InputError(
                    f"{where}: unsupported function {echo(name, 40)}(); the supported functions are "
                    f"{', '.join(SUPPORTED_FUNCTIONS)} (with + - * / and integer powers **)"
                )
        try:
            expr = parse_expr(
                part,
                local_dict=names,
                global_dict={"__builtins__": {}, **_sympy_globals()},
                transformations=standard_transformations,
            )
        except RecursionError:  # Python's compiler, on thousands of terms or nested parentheses
            raise InputError(f"{where}: too long or too deeply nested to parse ({len(part)} characters)") from None
        except Exception as error:
            raise InputError(f"{where}: {echo(error) or type(error).__name__}") from None
        unknown = sorted(str(s) for s in getattr(expr, "free_symbols", ()) if str(s) not in names)
        if unknown:
            raise InputError(
                f"component {index} uses {echo(', '.join(unknown))}; the states are u_0 .. u_{MAX_DIM - 1}"
            )
        exprs.append(expr)
    return exprs


def _check_parentheses(part: str, where: str) -> None:
    """InputError naming the first unmatched parenthesis of `part` (1-based character position)."""
    opened: list[int] = []
    for position, char in enumerate(part, start=1):
        if char == "(":
            opened.append(position)
        elif char == ")":
            if not opened:
                raise InputError(f"{where}: unmatched parenthesis, ')' at character {position} closes nothing")
            opened.pop()
    if opened:
        raise InputError(f"{where}: unmatched parenthesis, '(' at character {opened[-1]} is never closed")


def _sympy_globals() -> dict:
    import sympy

    return {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational, "Symbol": sympy.Symbol}


def _tokenize(args) -> int:
    """A sympy right-hand side -> PROSE prefix tokens.

    Parse one expression per component in the state symbols u_0, u_1, ..., separated by '|', and
    print the prefix tokens (floats as sign, 3-digit mantissa, exponent).

    examples:
      workbench prose tokenize "10*(u_1 - u_0)|u_0*(28 - u_2) - u_1|u_0*u_1 - 8/3*u_2"
      workbench prose tokenize "sin(u_1) - 0.17*u_0" --skeleton --json
    """
    from operators.prose.tokens import tokenize

    tokens = tokenize(parse_system(args.expr), skeleton=args.skeleton)
    emit(args, " ".join(tokens), tokens)
    return 0


def _detokenize(args) -> int:
    """PROSE prefix tokens -> sympy expressions, or 'invalid'.

    Decode a token sequence (as a model would emit it) into one sympy expression per component.
    Malformed sequences are reported as invalid, never as an error.

    examples:
      workbench prose detokenize add mul + N100 E-1 u_1 mul - N100 E-1 u_0 --json
    """
    from operators.prose.tokens import detokenize

    decoded = detokenize(args.tokens)
    exprs = [str(e) for e in decoded.exprs] if decoded.valid else None
    text = " | ".join(exprs) if decoded.valid else f"invalid: {decoded.error}"
    emit(args, text, {"valid": decoded.valid, "expr": exprs, "error": decoded.error})
    return 0


def load_data_config(path, overrides=(), *, base_dir: Path | None = None):
    """A make-data config from its file and ``--set`` overrides; `out` and job.folder made absolute."""
    from jobs.experiment import load_experiment_config
    from operators.prose.dataset import ProseDataConfig

    return load_experiment_config(ProseDataConfig, path, overrides, base_dir=base_dir, absolute=("out",))


def make_data(
    config, executor: str = "auto", *, config_path: str | None = None, overrides=(), progress=None, waiting=None
) -> dict[str, Any]:
    """Build the shards `config.out` lacks as one job array, then its manifest; the build's summary."""
    from jobs.experiment import run_members
    from operators.prose.dataset import (
        build_shard,
        describe_shard,
        finish_build,
        plan_build,
        plan_shards,
        rebuild_command,
    )
    from workbench.atomic import check_writable_dir

    rebuild = rebuild_command(config_path, overrides)
    plan = plan_build(config, rebuild)  # checks the outputs are writable and verifies existing shards
    if progress is not None:
        total = len(plan_shards(config.data_settings()))
        progress(
            f"make-data {config.out}: {total} shards, {len(plan.good)} complete, building {len(plan.items)} "
            f"(executor {executor})"
        )
        for stem, why in plan.corrupt.items():
            progress(f"  rebuilding {stem}: {why}")
    folder = config.job.folder if config.job.folder is not None else Path(config.out) / "submitit"
    if config.job.folder is not None and plan.items:
        check_writable_dir(folder, "job.folder")
    name, built = run_members(
        build_shard,
        plan.items,
        config.job,
        executor,
        folder,
        describe=describe_shard,
        progress=progress,
        waiting=waiting,
    )
    summary = finish_build(config, built, name, rebuild, good=plan.good)
    summary["rebuilt_corrupt"] = sorted(plan.corrupt)
    return summary


def _make_data(args) -> int:
    """Build (or resume) a sharded PROSE data set as a job array.

    Generate noisy trajectories and their target tokens (Liu, Zhang & Schaeffer 2023) into
    OUT/shard-*.npz + .tokens.jsonl and OUT/manifest.json. Shards are deterministic in (seed, shard
    index) and written atomically; rerunning the same command verifies the shards already there and
    builds only the missing or corrupt ones. Read
    back with operators.prose.dataset.load_dataset(OUT, split='train'|'val').

    examples:
      workbench prose make-data jobs/configs/prose_data_tiny.yaml
      workbench prose make-data jobs/configs/prose_data_tiny.yaml --set out=/tmp/d --executor debug
      workbench prose make-data jobs/configs/prose_data_paper.yaml --executor slurm --json
      workbench prose make-data jobs/configs/prose_data_tiny.yaml --check
    """
    from jobs.experiment import say
    from operators.prose.dataset import load_dataset

    config = load_data_config(args.config, args.overrides)
    if args.check:
        counts = {}
        for split in ("train", "val"):
            if split == "val" and config.val_per_family == 0:
                continue
            counts[split] = len(load_dataset(config.out, split)["family"])
        emit(
            args,
            f"{config.out}: complete ({', '.join(f'{k} {v} samples' for k, v in counts.items())})",
            {"out": str(config.out), "complete": True, "samples": counts},
        )
        return 0
    waiting = Progress(args)
    try:
        summary = make_data(
            config, args.executor, config_path=args.config, overrides=args.overrides, progress=say, waiting=waiting
        )
    finally:
        waiting.close()
    rate = summary["trajectories_per_s"]
    text = (
        f"{summary['out']}: built {len(summary['built'])} shard(s), skipped {summary['skipped']} complete"
        + (f" (rebuilt corrupt {', '.join(summary['rebuilt_corrupt'])})" if summary["rebuilt_corrupt"] else "")
        + f"; samples train {summary['samples']['train']}, val {summary['samples']['val']}; "
        f"{summary['built_samples']} trajectories in {summary['seconds']:.1f} s"
        + (f" ({rate:,.0f} trajectories/s, engine {summary['engine']})" if rate else "")
    )
    emit(args, text, summary)
    return 0


def _evaluate(args) -> int:
    """Score a trained PROSE run: trajectory, expression and re-solve errors.

    Evaluate a finished `prose` run with the metrics of the official evaluate.py: data relative L2 on (2,6],
    (2,4], (4,6] against noisy and clean targets, the last-value baseline, the valid fraction and
    expression error of greedy decoding, and re-solve errors, per family and overall. Writes
    OUT/metrics.nc and OUT/trajectories.png.

    examples:
      workbench prose evaluate runs/prose_tiny/<run id>
      workbench prose evaluate runs/prose_paper/<run id> --data data/prose_test --n 2000 --json
    """
    from operators.prose.evaluate import evaluate, format_summary, summarize

    if args.n < 0:
        raise InputError(f"--n must be >= 0, got {args.n}")
    out = Path(args.out) if args.out else Path(args.run) / "evaluation"
    ds = evaluate(
        args.run,
        args.data or None,
        split=args.split,
        n=args.n or None,
        out=out,
        resolve_ode=not args.no_resolve,
        progress=not args.json,
    )
    summary = summarize(ds)
    summary.update(out=str(out / "metrics.nc"), figure=str(out / "trajectories.png"))
    emit(args, format_summary(summary), summary)
    return 0
