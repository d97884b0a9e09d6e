"""`workbench bench <area>`: speed against a reference implementation, side by side in one process.

Each area's benchmark checks that both implementations reach the same answer, then prints the time
ratio and writes the numbers as JSON. Speed is never asserted by a timed test (shared machines are
noisy); it is measured here and recorded in the README.
"""

from __future__ import annotations

import importlib

from workbench.areas import AREAS
from workbench.cli import add_json_flag, add_parser, emit
from workbench.errors import InputError

BENCHMARKS = {area.name: area.bench for area in AREAS if area.bench}


def register(areas, name: str, help_text: str) -> None:
    p = add_parser(areas, name, run_bench, help=help_text)
    p.add_argument("area", choices=tuple(BENCHMARKS), help="which area to benchmark")
    p.add_argument("--quick", action="store_true", help="a reduced problem (a slice of the starts) for smoke tests")
    p.add_argument("--device", default="cpu", help="where the batched side runs (cpu, cuda)")
    p.add_argument("--out", help="write the results as JSON to this file")
    add_json_flag(p)


def run_bench(args) -> int:
    """Speed against a reference implementation, side by side in one process.

    examples:
      workbench bench scaling
      workbench bench scaling --quick --out bench.json
      workbench bench lm --device cuda
    """
    from workbench.store import atomic_write_json  # xarray: not for `workbench --help`

    module = importlib.import_module(BENCHMARKS[args.area])
    if args.device != "cpu":
        import torch  # only to ask for a GPU; the benchmarks import it themselves

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"--device {args.device}: no CUDA device is available here")
    result = module.run(quick=args.quick, device=args.device) if args.device != "cpu" else module.run(quick=args.quick)
    if args.out:
        atomic_write_json(args.out, result)
    emit(args, module.format_result(result), result)
    return 0 if result.get("same_optimum", True) else 1
