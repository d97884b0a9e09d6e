"""The `workbench` command: `workbench <area> <verb> ...`.

The areas come from one table (`workbench.areas.AREAS`); each area's CLI module exposes
`register(areas, name, help)` and adds its own verbs; handlers take the parsed arguments and return
an exit code. CLI modules import their heavy dependencies (torch, scipy) inside the handlers so
that `workbench --help` stays fast. The flags every experiment shares (`--set`, `--executor`,
`--wait`, `--dry-run`, `--json`) are declared here, once.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from workbench import __version__
from workbench.areas import AREAS
from workbench.errors import InputError
from workbench.jobspec import EXECUTORS

EXECUTOR_HELP = (
    "where the job(s) run: slurm, local (processes on this machine), debug (in this process) or "
    "auto (slurm when sbatch is on PATH and a controller answers, else local)"
)

EXAMPLES = """examples:
  workbench demo
  workbench scaling fit runs.csv --method parametric --convention standard --json
  workbench scaling reconcile --dataset porian-rw --plot ladder.png
  workbench bench scaling
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep example blocks as written and show defaults: once, and only where there is one to show
    (not None, False or an empty list) and the help text does not already state it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_parser(
    subparsers,
    name: str,
    handler: Callable[[argparse.Namespace], int] | None = None,
    *,
    help: str = "",
    description: str = "",
    examples: str = "",
    json: bool = False,
) -> ArgumentParser:
    """Add a verb that `handler` runs; `json` gives it the --json flag.

    Its texts come from the handler's docstring unless given: the first line is the one-line help,
    the whole text up to ``examples:`` the description, and the indented lines after it the
    examples shown under --help.
    """
    if handler is not None and handler.__doc__:
        summary, text, example_lines = _doc_texts(handler.__doc__)
        help, description, examples = help or summary, description or text, examples or example_lines
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"example{'s' if examples.count(chr(10)) > 1 else ''}:\n{examples}" if examples else None,
        formatter_class=HelpFormatter,
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    if json:
        add_json_flag(parser)
    return parser


def _doc_texts(doc: str) -> tuple[str, str, str]:
    """(help, description, examples) of a handler's docstring (see `add_parser`)."""
    text, _, examples = inspect.cleandoc(doc).partition("\nexamples:\n")
    summary = text.split("\n", 1)[0].rstrip(".")
    if len(summary) > 1 and summary[1].islower():  # "Submit one job." -> "submit one job", as argparse lists
        summary = summary[0].lower() + summary[1:]
    return summary, text.strip(), "".join(f"  {line.strip()}\n" for line in examples.splitlines() if line.strip())


def add_area(areas, name: str, help_text: str, example: str = ""):
    """An area's parser (`workbench NAME VERB ...`); returns the subparsers its verbs go into."""
    parser = areas.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}\n" if example else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    return verbs


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_set_flag(parser: argparse.ArgumentParser, example: str = "model.lr=3e-4") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value (repeatable), e.g. --set {example}",
    )


def add_executor_flag(parser: argparse.ArgumentParser, default: str | None = "auto", help: str = "") -> None:
    parser.add_argument("--executor", default=default, choices=EXECUTORS, help=help or EXECUTOR_HELP)


class _RunsDir(argparse.Action):
    """--runs-dir DIR: ``root=DIR`` ahead of every --set, so that an explicit --set root= wins."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [f"root={values}", *(getattr(namespace, self.dest) or [])])


def add_job_flags(
    parser: argparse.ArgumentParser,
    *,
    config_help: str,
    set_example: str = "model.lr=3e-4",
    wait: bool = False,
    dry_run: bool = False,
    runs_dir: bool = True,
) -> None:
    """The flags of every command that runs a config as jobs: CONFIG, --set, --runs-dir (where the
    config has a `root`), --executor, --json, and where the command has them, --wait and --dry-run."""
    parser.add_argument("config", help=config_help + "; or a bundled config's name (workbench jobs configs)")
    add_set_flag(parser, set_example)
    if runs_dir:
        parser.add_argument(
            "--runs-dir",
            dest="overrides",
            action=_RunsDir,
            metavar="DIR",
            help="write runs under DIR instead of the config's root (also $WORKBENCH_RUNS_DIR; --set root= wins)",
        )
    add_executor_flag(parser)
    add_verbosity_flags(parser)
    if wait:
        parser.add_argument("--wait", action="store_true", help="wait until the job(s) end, then report")
    if dry_run:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the config and print the resolved config and sbatch script; submit nothing",
        )
    add_json_flag(parser)


def int_list(text: str, flag: str) -> list[int]:
    """``"32,64,128"`` -> [32, 64, 128]: at least two increasing positive integers (InputError naming `flag`)."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"{flag} = {text!r} must be comma-separated integers, e.g. 32,64,128,256") from None
    if len(values) < 2 or any(v < 1 for v in values) or sorted(set(values)) != values:
        raise InputError(f"{flag} = {text!r} must list at least two increasing positive integers")
    return values


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress line while waiting")
    group.add_argument("-v", "--verbose", action="store_true", help="a line for every change while waiting")


class Progress:
    """Feedback on stderr while long work runs, for a person at a terminal only.

    Off when stderr is not a terminal, with --json and with -q: scripts and pipes see only the
    result. Normally one status line, rewritten in place; with -v, each new status on its own line.
    """

    def __init__(self, args: argparse.Namespace | None = None, *, stream=None) -> None:
        self.stream = stream or sys.stderr
        quiet = args is not None and (getattr(args, "quiet", False) or getattr(args, "json", False))
        self.verbose = args is not None and getattr(args, "verbose", False)
        self.enabled = not quiet and (self.stream.isatty() or os.environ.get("WORKBENCH_PROGRESS") == "1")
        self.last, self.width = "", 0

    def __call__(self, text: str) -> None:
        if not self.enabled or text == self.last:
            return
        if self.verbose:  # a new line only when something other than the elapsed time changed
            if _without_elapsed(text) == _without_elapsed(self.last):
                return
            self.last = text
            self.stream.write(text + "\n")
        else:
            self.last = text
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.last and not self.verbose:
            self.stream.write("\n")
            self.stream.flush()
        self.last, self.width = "", 0


def _without_elapsed(text: str) -> str:
    return re.sub(r" \(\d+ s\)$", "", text)


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
    parser = ArgumentParser(
        prog="workbench",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    areas = parser.add_subparsers(dest="area", metavar="AREA", parser_class=ArgumentParser)
    areas.required = True
    for area in AREAS:
        importlib.import_module(area.cli).register(areas, area.name, area.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A terminal or pipe that cannot encode a character (LANG=C, a latin-1 console) must not
    # turn finished work into a crash at the last print: such characters are escaped instead.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # Warnings (a torn manifest line skipped, a fit flagged) as one line each, like errors.
    warnings.formatwarning = lambda message, category, *rest, **kw: f"workbench: warning: {message}\n"
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as error:
        print(f"workbench: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `workbench ... | head`
        return 0
    except OSError as error:  # a path the operating system refused: bad input, not a bug
        if error.filename is None:
            return _internal_error(error)
        print(f"workbench: error: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        return _internal_error(error)


def _internal_error(error: Exception) -> int:
    """An internal error: say so, keep the traceback on request."""
    if os.environ.get("WORKBENCH_DEBUG"):
        traceback.print_exception(error)
    print(
        f"workbench: internal error: {type(error).__name__}: {_one_line(error)} "
        "(set WORKBENCH_DEBUG=1 for the traceback)",
        file=sys.stderr,
    )
    return 1


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
