"""`workbench run CONFIG`: one job, or one member of a sweep, in the foreground.

For researchers' own sbatch scripts: the batch script (or srun, or torchrun) decides the
resources and launches the processes; `workbench run` trains in them, takes its DDP rank and
world from the environment, and records the member in the sweep's manifest like a submitted one,
so `workbench jobs status`, `collect` and `resubmit` work on the results. `workbench jobs sbatch`
writes such a script for a config and a grid.
"""

from __future__ import annotations

import os

from workbench.cli import add_parser, add_set_flag, emit
from workbench.errors import InputError

ARRAY_TASK = "SLURM_ARRAY_TASK_ID"


def register(areas, name: str, help_text: str) -> None:
    p = add_parser(areas, name, run, help=help_text)
    p.add_argument("config", help="job config file (.yaml/.json) or a bundled config's name (workbench jobs configs)")
    add_set_flag(p, "model.lr=3e-4")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="the sweep's grid, as given to `workbench jobs sweep` (repeatable)")  # fmt: skip
    p.add_argument("--member", type=int, default=None,
                   help=f"which member of the grid to run (default: ${ARRAY_TASK}, the array task)")  # fmt: skip
    p.add_argument("--runs-dir", metavar="DIR", help="write runs under DIR (also $WORKBENCH_RUNS_DIR)")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON on stdout")


def run(args) -> int:
    """Run one job (or one member of a --grid sweep) here, in the foreground.

    Inside an sbatch script, under srun or under torchrun: ranks, processes per node and nodes come
    from the launch. The member is recorded in <root>/<experiment>/manifest.jsonl (executor
    "foreground"), so jobs status / collect / resubmit see it. The member index is --member, else
    $SLURM_ARRAY_TASK_ID.

    examples:
      workbench run mlp_tiny
      workbench run mlp_tiny --grid model.lr=3e-3,1e-2 --grid train.seed=0,1 --member 2
      srun workbench run jobs/configs/lm_mup_tiny.yaml --grid model.width=32,64   # in an sbatch --array script
      torchrun --nproc-per-node 2 -m workbench.cli run mlp_tiny   # 2 DDP processes, world from torchrun
    """
    from jobs.sweep import expand_grid, parse_grid, run_foreground

    overrides = ([f"root={args.runs_dir}"] if args.runs_dir else []) + list(args.overrides)
    members = expand_grid(args.config, parse_grid(args.grid) if args.grid else {}, overrides)
    index = args.member
    if index is None and len(members) > 1:
        task = os.environ.get(ARRAY_TASK, "")
        if not task.isdigit():
            raise InputError(f"--grid makes {len(members)} members: say which with --member I or ${ARRAY_TASK}")
        index = int(task)
    index = 0 if index is None else index
    if not 0 <= index < len(members):
        raise InputError(f"--member {index}: the grid has members 0..{len(members) - 1}")
    result = run_foreground(members[index])
    run_dir = result.get("run_dir", "")
    emit(args, f"{members[index].config.resolved_run_id}: {result['status']}, {result['steps']} steps, final loss "
               f"{result['final_loss']:.6g}\n  run dir: {run_dir}", result)  # fmt: skip
    return 0
