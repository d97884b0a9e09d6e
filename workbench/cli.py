"""The `workbench` command: `workbench <area> <verb> ...`.

Each area module exposes `register(subparsers)` and adds its own verbs; handlers take the parsed
arguments and return an exit code. Area modules import their heavy dependencies (torch, scipy)
inside the handlers so that `workbench --help` stays fast.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from typing import Any, Sequence

from workbench.errors import InputError

# Areas in the order `workbench --help` lists them: (name, module, one-line help).
AREAS = (
    ("scaling", "scaling.cli", "fit, reconcile and simulate Kaplan / Chinchilla scaling laws"),
    ("jobs", "jobs.cli", "submit training jobs and sweeps to SLURM or this machine; status, collect, resubmit"),
    ("lm", "workbench.lm.cli", "muP language models: coordinate check, loss prediction from width sweeps"),
    ("prose", "operators.prose.cli", "PROSE: ODE families, symbolic tokens, data sets (make-data) and evaluation"),
    ("diffusion", "workbench.generative.cli", "PFGM++ and corrected-schedule diffusion: schedules, timesteps, experiments"),
    ("medida", "scaling.medida_cli", "MEDIDA: discover interpretable model errors of a KS model from sparse, noisy observations"),
    ("bench", "workbench.bench", "benchmarks against reference implementations, printed as ratios"),
    ("demo", "workbench.demo", "run the end-to-end demo: a muP width sweep as jobs, fitted and extrapolated"),
)

EXAMPLES = """examples:
  workbench demo
  workbench scaling fit runs.csv --method parametric --convention standard --json
  workbench scaling reconcile --dataset porian-rw --plot ladder.png
  workbench bench scaling
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (no usage dump)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep example blocks as written and show defaults."""


def add_parser(subparsers, name: str, *, help: str, description: str = "", examples: str = "") -> ArgumentParser:
    """Add a verb with a description and an examples epilog, using this module's conventions."""
    return subparsers.add_parser(name, help=help, description=description or help,
                                 epilog=f"example{'s' if examples.count(chr(10)) > 1 else ''}:\n{examples}"
                                 if examples else None,
                                 formatter_class=HelpFormatter)


def add_area(areas, name: str, help_text: str, example: str = ""):
    """An area's parser (`workbench NAME VERB ...`); returns the subparsers its verbs go into."""
    parser = areas.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example:\n  {example}\n" if example else None,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    return verbs


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def emit(args: argparse.Namespace, text: str, payload: Any) -> None:
    """Print the human text, or the JSON payload when --json was given."""
    if getattr(args, "json", False):
        print(json.dumps(_finite_or_null(payload), indent=2, default=_json_default, allow_nan=False))
    else:
        print(text)


def _finite_or_null(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject NaN."""
    import math

    import numpy as np

    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite_or_null(value.tolist())
    return value


def _json_default(value: Any):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="workbench", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"workbench {_version()}")
    areas = parser.add_subparsers(dest="area", metavar="AREA", parser_class=ArgumentParser)
    areas.required = True
    for name, module, help_text in AREAS:
        importlib.import_module(module).register(areas, name, help_text)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("workbench")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as error:
        print(f"workbench: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `workbench ... | head`
        return 0
    except Exception as error:  # an internal error: say so, keep the traceback on request
        if os.environ.get("WORKBENCH_DEBUG"):
            traceback.print_exc()
        print(f"workbench: internal error: {type(error).__name__}: {_one_line(error)} "
              "(set WORKBENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
