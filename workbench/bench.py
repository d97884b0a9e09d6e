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
    p.add_argument("area", choices=(*BENCHMARKS, "gpu"), help="which area to benchmark; gpu: every area on one GPU")
    p.add_argument("--quick", action="store_true", help="a reduced problem (a slice of the starts) for smoke tests")
    p.add_argument("--device", default=None, help="where the batched side runs (cpu, cuda); default cpu, cuda for gpu")
    p.add_argument("--budget", type=float, default=None,
                   help="gpu only: total time limit in seconds (default 420), shared between the stages")  # fmt: skip
    p.add_argument(
        "--stages", default=None, help="gpu only: a comma-separated subset of lm,prose,ks,generative,scaling"
    )
    p.add_argument("--out", help="write the results as JSON to this file")
    add_json_flag(p)


def run_bench(args) -> int:
    """Speed against a reference implementation, side by side in one process.

    examples:
      workbench bench scaling
      workbench bench scaling --quick --out bench.json
      workbench bench lm --device cuda
    """
    from workbench.atomic import check_writable
    from workbench.store import atomic_write_json  # xarray: not for `workbench --help`

    if args.out:
        check_writable(args.out, "--out", suffixes=(".json",))
    if args.area == "gpu":
        return _run_gpu(args)
    if args.budget is not None or args.stages is not None:
        raise InputError("--budget and --stages are for `workbench bench gpu` only")
    args.device = args.device or "cpu"
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


def _run_gpu(args) -> int:
    """`workbench bench gpu`: the stages of workbench/bench_gpu.py, one process each."""
    import math

    from workbench import bench_gpu
    from workbench.store import atomic_write_json

    budget = bench_gpu.DEFAULT_BUDGET_S if args.budget is None else args.budget
    if not math.isfinite(budget) or not 30 <= budget <= 3600:
        raise InputError(f"--budget {args.budget:g}: give seconds between 30 and 3600")
    names = tuple(s.name for s in bench_gpu.STAGES)
    stages = tuple(x.strip() for x in args.stages.split(",") if x.strip()) if args.stages else ()
    unknown = sorted(set(stages) - set(names))
    if unknown:
        raise InputError(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(names)}")
    result = bench_gpu.run(device=args.device or "cuda", quick=args.quick, budget_s=budget, stages=stages)
    if args.out:
        atomic_write_json(args.out, result)
    emit(args, bench_gpu.format_result(result), result)
    return 0
