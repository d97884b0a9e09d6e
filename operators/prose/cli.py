"""`workbench prose ...`: PROSE's ODE families and symbolic tokens, its data sets and evaluation.
Verbs: families, tokenize, detokenize, make-data, evaluate.

The interface other tools rely on (issue 5):

- `workbench prose families --json` lists each family's name, dimension and sympy right-hand side;
- `workbench prose tokenize "EXPR|EXPR|..." --json` prints the token list;
- `workbench prose detokenize TOKENS... --json` prints ``{"valid": bool, "expr": [...]}``.
- `workbench prose make-data CONFIG [--set k=v ...] [--executor E] [--check] [--json]` builds (or
  resumes) a sharded data set, operators/prose/dataset.py.
"""

from __future__ import annotations


from workbench.cli import add_area, add_json_flag, add_parser, emit
from workbench.errors import InputError


def register(areas, name: str, help_text: str) -> None:
    verbs = add_area(areas, name, help_text, "workbench prose families --preset chaotic_ode_3d")

    p = add_parser(verbs, "families", help="the ODE families: name, dimension, right-hand side, method",
                   description="List PROSE's ODE families (reference note prose.md §2.2) with their free "
                               "parameters at nominal values and the solver each uses.",
                   examples="  workbench prose families\n  workbench prose families --preset chaotic_ode_3d --json\n")
    p.add_argument("--preset", default="chaotic_ode_all",
                   help="a preset (chaotic_ode_3d, chaotic_ode_all) or comma-separated family names")
    add_json_flag(p)
    p.set_defaults(handler=_families)

    p = add_parser(verbs, "tokenize", help="sympy right-hand side -> PROSE prefix tokens",
                   description="Parse one expression per component in the state symbols u_0, u_1, ..., "
                               "separated by '|', and print the prefix tokens (floats as sign, 3-digit "
                               "mantissa, exponent).",
                   examples='  workbench prose tokenize "10*(u_1 - u_0)|u_0*(28 - u_2) - u_1|u_0*u_1 - 8/3*u_2"\n'
                            '  workbench prose tokenize "sin(u_1) - 0.17*u_0" --skeleton --json\n')
    p.add_argument("expr", metavar="EXPR|EXPR|...", help="one expression per component, '|'-separated")
    p.add_argument("--skeleton", action="store_true", help="replace every constant with <PLACEHOLDER>")
    add_json_flag(p)
    p.set_defaults(handler=_tokenize)

    p = add_parser(verbs, "detokenize", help="PROSE prefix tokens -> sympy expressions, or 'invalid'",
                   description="Decode a token sequence (as a model would emit it) into one sympy expression per "
                               "component. Malformed sequences are reported as invalid, never as an error.",
                   examples="  workbench prose detokenize add mul + N100 E-1 u_1 mul - N100 E-1 u_0 --json\n")
    p.add_argument("tokens", nargs="+", metavar="TOKEN", help="the tokens, space-separated")
    add_json_flag(p)
    p.set_defaults(handler=_detokenize)

    p = add_parser(verbs, "make-data", help="build (or resume) a sharded PROSE data set as a job array",
                   description="Generate trajectories (reference note prose.md §2.3-2.4) and target tokens "
                               "(§2.5) into OUT/shard-*.npz + .tokens.jsonl and OUT/manifest.json. Shards are "
                               "deterministic in (seed, shard index) and written atomically, so rerunning the "
                               "same command builds only the missing ones. Read back with "
                               "operators.prose.dataset.load_dataset(OUT, split='train'|'val').",
                   examples="  workbench prose make-data jobs/configs/prose_data_tiny.yaml\n"
                            "  workbench prose make-data jobs/configs/prose_data_tiny.yaml --set out=/tmp/d --executor debug\n"
                            "  workbench prose make-data jobs/configs/prose_data_paper.yaml --executor slurm --json\n"
                            "  workbench prose make-data jobs/configs/prose_data_tiny.yaml --check\n")
    p.add_argument("config", help="a make-data config (YAML/JSON), e.g. jobs/configs/prose_data_tiny.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set out=/tmp/prose --set n_per_family=50")
    p.add_argument("--executor", default="auto", choices=("auto", "local", "slurm", "debug"),
                   help="where shards run: a SLURM array, local processes, or in this process (debug)")
    p.add_argument("--check", action="store_true",
                   help="build nothing: verify that OUT holds every shard (exit 2 naming the first bad one)")
    add_json_flag(p)
    p.set_defaults(handler=_make_data)

    from operators.prose.evaluate import register_evaluate

    register_evaluate(verbs)


def _families(args) -> int:
    from operators.odes import family_names, get_family

    rows = []
    for name in family_names(args.preset):
        family = get_family(name)
        rows.append({"name": family.name, "dim": family.dim, "method": family.method,
                     "params": {str(s): v for s, v in zip(family.params, family.nominal)},
                     "rhs": [str(e) for e in family.rhs]})
    lines = []
    for row in rows:
        params = ", ".join(f"{k}={v:g}" for k, v in row["params"].items())
        lines.append(f"{row['name']} (d={row['dim']}, {row['method']}; {params})")
        lines += [f"    du_{i}/dt = {e}" for i, e in enumerate(row["rhs"])]
    emit(args, "\n".join(lines), rows)
    return 0


def parse_system(text: str) -> list:
    """'EXPR|EXPR|...' in u_0..u_4 -> sympy expressions; InputError naming the bad component."""
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    from operators.prose.tokens import MAX_DIM

    names = {f"u_{i}": sympy.Symbol(f"u_{i}") for i in range(MAX_DIM)}
    names.update({"sin": sympy.sin, "cos": sympy.cos})
    parts = text.split("|")
    exprs = []
    for index, part in enumerate(parts):
        if not part.strip():
            raise InputError(f"component {index} of {text!r} is empty")
        try:
            expr = parse_expr(part, local_dict=names, global_dict={"__builtins__": {}, **_sympy_globals()},
                              transformations=standard_transformations)
        except Exception as error:  # noqa: BLE001 - parse errors come in many types
            raise InputError(f"component {index} ({part.strip()!r}) is not an expression: "
                             f"{' '.join(str(error).split()) or type(error).__name__}") from None
        unknown = sorted(str(s) for s in getattr(expr, "free_symbols", ()) if str(s) not in names)
        if unknown:
            raise InputError(f"component {index} uses {', '.join(unknown)}; the states are u_0 .. u_{MAX_DIM - 1}")
        exprs.append(expr)
    return exprs


def _sympy_globals() -> dict:
    import sympy

    return {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational, "Symbol": sympy.Symbol}


def _tokenize(args) -> int:
    from operators.prose.tokens import tokenize

    tokens = tokenize(parse_system(args.expr), skeleton=args.skeleton)
    emit(args, " ".join(tokens), tokens)
    return 0


def _detokenize(args) -> int:
    from operators.prose.tokens import detokenize

    decoded = detokenize(args.tokens)
    exprs = [str(e) for e in decoded.exprs] if decoded.valid else None
    text = (" | ".join(exprs) if decoded.valid else f"invalid: {decoded.error}")
    emit(args, text, {"valid": decoded.valid, "expr": exprs, "error": decoded.error})
    return 0


def _make_data(args) -> int:
    from operators.prose.dataset import load_data_config, load_dataset, make_data, print_progress

    config = load_data_config(args.config, args.overrides)
    if args.check:
        counts = {}
        for split in ("train", "val"):
            if split == "val" and config.val_per_family == 0:
                continue
            counts[split] = len(load_dataset(config.out, split)["family"])
        emit(args, f"{config.out}: complete ({', '.join(f'{k} {v} samples' for k, v in counts.items())})",
             {"out": str(config.out), "complete": True, "samples": counts})
        return 0
    summary = make_data(config, args.executor, config_path=args.config, overrides=args.overrides,
                        progress=print_progress)
    rate = summary["trajectories_per_s"]
    text = (f"{summary['out']}: built {len(summary['built'])} shard(s), skipped {summary['skipped']} complete; "
            f"samples train {summary['samples']['train']}, val {summary['samples']['val']}; "
            f"{summary['built_samples']} trajectories in {summary['seconds']:.1f} s"
            + (f" ({rate:,.0f} trajectories/s, engine {summary['engine']})" if rate else ""))
    emit(args, text, summary)
    return 0
