"""The one table of the workbench's areas and built-in model kinds, as module names.

Nothing here is imported until it is used: `workbench.cli` imports an area's CLI module when it
builds its parser, `workbench bench AREA` the area's benchmark, and the registry
(`workbench.registry`) a model kind's config module when a job names that kind. A new area is one
row below; a new built-in model kind is one entry in KINDS. A model kind from outside the
repository needs no row at all: a job config names it as ``kind: package.module:Name``, or a
package declares it under the ``workbench.trainables`` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AREAS", "KINDS", "Area"]


@dataclass(frozen=True)
class Area:
    """A `workbench NAME ...` command group: its CLI module (``register(areas, name, help)``) and,
    when it has one, the module behind `workbench bench NAME` (``run(quick, device)``,
    ``format_result(result)``)."""

    name: str
    cli: str
    help: str
    bench: str | None = None


# In the order `workbench --help` lists them.
AREAS = (
    Area(
        "scaling", "scaling.cli", "fit, reconcile and simulate Kaplan / Chinchilla scaling laws", bench="scaling.bench"
    ),
    Area(
        "jobs",
        "jobs.cli",
        "submit training jobs and sweeps to SLURM or this machine; status, collect, resubmit",
        bench="jobs.bench",
    ),
    Area(
        "lm",
        "workbench.lm.cli",
        "muP language models: coordinate check, loss prediction from width sweeps",
        bench="workbench.lm.bench",
    ),
    Area(
        "prose",
        "operators.prose.cli",
        "PROSE: ODE families, symbolic tokens, data sets (make-data) and evaluation",
        bench="operators.prose.bench",
    ),
    Area(
        "diffusion",
        "workbench.generative.cli",
        "PFGM++ and corrected-schedule diffusion: schedules, timesteps, experiments",
        bench="workbench.generative.bench",
    ),
    Area(
        "medida",
        "scaling.medida.cli",
        "MEDIDA: discover interpretable model errors of a KS model from sparse, noisy observations",
        bench="scaling.medida.bench",
    ),
    Area("run", "jobs.run.cli", "run one job or sweep member in the foreground (inside sbatch, srun, torchrun)"),
    Area("bench", "workbench.bench", "benchmarks against reference implementations, printed as ratios"),
    Area("demo", "workbench.demo", "run the end-to-end demo: a muP width sweep as jobs, fitted and extrapolated"),
    Area("completion", "workbench.completion", "print a shell completion script (bash or zsh)"),
)

# Built-in model kinds: `kind: NAME` in a job config -> the Trainable declared at "module:attribute".
# Each module is light (a config dataclass and the declaration); the LightningModule it names is
# imported only when a run starts.
KINDS = {
    "mlp_regression": "workbench.mlp.config:TRAINABLE",
    "gpt_lm": "workbench.lm.config:TRAINABLE",
    "prose": "operators.prose.config:TRAINABLE",
    "pfgmpp": "workbench.generative.config:PFGMPP",
    "diffusion": "workbench.generative.config:DIFFUSION",
}
