"""What a job runs: small Checkpointable classes that hold only a frozen config.

    cfg = load_job_config("jobs/configs/mlp_tiny.yaml", ["model.width=64", "job.timeout_min=30"])
    job = make_executor(cfg.job, "auto", folder).submit(TrainJob(cfg))

Training state never travels in the pickle: it lives in ``checkpoints/last.ckpt``. So
`checkpoint()` (called by submitit's USR2 handler on timeout or preemption) only resubmits the
same object, and `__call__` resumes from last.ckpt when there is one. A requeued job, a
resubmitted failed one and a rerun by hand all continue the same way.

This module must stay light to import: submitit unpickles the entry point, and only then
installs its signal handlers, so a USR2 that arrives while torch is being imported would kill
the job without a requeue. torch and Lightning are imported inside `__call__`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from workbench.config import apply_overrides, from_dict, load, to_dict
from workbench.errors import ConfigError
from workbench.jobspec import JobSpec, check_name
from workbench.locks import writer_lock
from workbench.registry import get_trainable
from workbench.store import RunDir, create_run_dir
from workbench.train import TrainConfig

__all__ = [
    "BUNDLED_CONFIGS",
    "RUNS_DIR_ENV",
    "TrainJob",
    "TrainJobConfig",
    "bundled_configs",
    "job_config_from_dict",
    "load_job_config",
    "resolve_config_path",
    "with_runs_dir",
]

# The configs shipped with the package: `workbench jobs submit mlp_tiny` finds jobs/configs/mlp_tiny.yaml.
BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
# Where runs go when neither the command line nor --set says: clusters keep runs on scratch.
RUNS_DIR_ENV = "WORKBENCH_RUNS_DIR"


def bundled_configs() -> dict[str, Path]:
    """Name → path of every bundled config."""
    return {p.stem: p for p in sorted(BUNDLED_CONFIGS.glob("*.yaml")) + sorted(BUNDLED_CONFIGS.glob("*.json"))}


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """A config file as given, or, for a bare name that is not a file here, the bundled config of
    that name (ConfigError listing the bundled names when there is none)."""
    given = Path(path)
    if given.exists() or given.suffix or len(given.parts) > 1:
        return given
    found = bundled_configs().get(given.name)
    if found is None:
        names = ", ".join(bundled_configs())
        raise ConfigError(f"{path}: no such file, and no bundled config of that name (bundled: {names})")
    return found


def with_runs_dir(config_type: type, overrides: Sequence[str]) -> list[str]:
    """`overrides` after ``root=$WORKBENCH_RUNS_DIR`` when that is set and `config_type` has a
    `root`, so --runs-dir and --set root=... (later in the list) still win."""
    chosen = os.environ.get(RUNS_DIR_ENV, "")
    has_root = any(f.name == "root" for f in dataclasses.fields(config_type))
    return [f"root={chosen}", *overrides] if chosen and has_root else list(overrides)


@dataclass(frozen=True)
class TrainJobConfig:
    """A training job: which registered model (`kind`) with which settings, where, on what.

    `model` is the trainable's own config dataclass (e.g. MLPRegressionConfig); its keys are
    checked against the type registered for `kind`. Results go to <root>/<experiment>/<run_id>/.
    """

    kind: str
    experiment: str
    model: Any = None
    train: TrainConfig = TrainConfig()
    job: JobSpec = field(default_factory=JobSpec)
    run_id: str | None = None
    root: Path = Path("runs")

    def __post_init__(self) -> None:
        check_name(self.experiment, "experiment", path=True)
        if self.run_id is not None:
            check_name(self.run_id, "run_id", path=True)

    @property
    def resolved_run_id(self) -> str:
        """run_id, or a short hash of what determines the result (kind, model, train)."""
        if self.run_id:
            return self.run_id
        what = {"kind": self.kind, "model": to_dict(self.model), "train": to_dict(self.train)}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> RunDir:
        return RunDir(Path(self.root), self.experiment, self.resolved_run_id)

    @property
    def sweep_dir(self) -> Path:
        return Path(self.root) / self.experiment

    @property
    def job_folder(self) -> Path:
        """submitit's folder template (%j = job id) for pickles and logs."""
        base = self.job.folder if self.job.folder is not None else self.sweep_dir / "submitit"
        return Path(base) / "%j"


@dataclass(frozen=True)
class _JobFile:
    """A job config file before `model` is checked against the type registered for `kind`."""

    kind: str
    experiment: str
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    job: JobSpec = field(default_factory=JobSpec)
    run_id: str | None = None
    root: Path = Path("runs")


def load_job_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), *, base_dir: Path | None = None
) -> TrainJobConfig:
    """Read a job config file, apply ``key=value`` overrides, check everything.

    A relative `root` (and job.folder) is taken relative to `base_dir` (default: the current
    directory) and stored absolute, so the job finds its run directory wherever it starts.
    Every problem is a ConfigError naming the file or the override and the key.
    """
    path = resolve_config_path(path)
    overrides = with_runs_dir(TrainJobConfig, overrides)
    kind = load(_JobFile, path).kind
    # Read again with `model` typed as the trainable's config, so that file keys and --set
    # overrides are checked, and named in errors (model.lr), like every other key.
    typed = load(_typed_job_file(get_trainable(kind).config_type), path)
    typed = apply_overrides(typed, overrides)
    if typed.kind != kind:
        raise ConfigError(
            f"--set kind={typed.kind}: the model section of {path} is for kind "
            f"{kind!r}; use a config file written for {typed.kind!r}"
        )
    return _absolute(_to_job_config(typed), base_dir)


def job_config_from_dict(data: dict[str, Any], *, source: str = "config") -> TrainJobConfig:
    """Rebuild a TrainJobConfig from `to_dict` output (a manifest record or config.json)."""
    kind = from_dict(_JobFile, data, source=source).kind
    typed = from_dict(_typed_job_file(get_trainable(kind).config_type), data, source=source)
    return _to_job_config(typed)


@functools.cache
def _typed_job_file(config_type: type) -> type:
    """_JobFile with `model` typed as `config_type` (used to validate only; never pickled)."""
    hints = typing.get_type_hints(_JobFile)
    fields = []
    for f in dataclasses.fields(_JobFile):
        if f.name == "model":
            fields.append(("model", config_type, dataclasses.field(default_factory=config_type)))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], dataclasses.field(default_factory=f.default_factory)))
        elif f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], dataclasses.field(default=f.default)))
        else:
            fields.append((f.name, hints[f.name]))
    return dataclasses.make_dataclass(f"JobFile_{config_type.__name__}", fields, frozen=True)


def _to_job_config(typed: Any) -> TrainJobConfig:
    return TrainJobConfig(**{f.name: getattr(typed, f.name) for f in dataclasses.fields(TrainJobConfig)})


def _absolute(config: TrainJobConfig, base_dir: Path | None) -> TrainJobConfig:
    base = Path.cwd() if base_dir is None else Path(base_dir)
    job = config.job
    if job.folder is not None and not job.folder.is_absolute():
        job = dataclasses.replace(job, folder=base / job.folder)
    root = config.root if config.root.is_absolute() else base / config.root
    return dataclasses.replace(config, job=job, root=root)


class TrainJob(submitit.helpers.Checkpointable):
    """Train a registered model through workbench.train; resumes from last.ckpt if present."""

    def __init__(self, config: TrainJobConfig) -> None:
        self.config = config

    def __call__(self) -> dict[str, Any]:
        cfg = self.config
        _export_local_distributed_env(cfg.job)
        from workbench.train import train  # train() imports torch + Lightning, after submitit set its handlers

        run = create_run_dir(cfg.root, cfg.experiment, cfg.resolved_run_id, cfg)
        # One trainer per run directory: a second one (a resubmission while the first still
        # runs without its controller) would interleave checkpoints and metrics. Each rank
        # holds its own lock, so under DDP every rank of a second job refuses at once.
        rank = _global_rank()
        if rank == 0:
            _link_job_logs(run)
        lock = run.writer_lock if rank == 0 else run.path / f".writer.rank{rank}.lock"
        with writer_lock(lock, description=f"job {_job_id()}, rank {rank}"):
            result = train(
                cfg.model, cfg.train, run, kind=cfg.kind, devices=cfg.job.tasks_per_node, num_nodes=cfg.job.nodes
            )
        result["job_id"] = _job_id()
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit this same object: the state to resume is already on disk (last.ckpt).

        Nothing is saved here on purpose. This runs inside a signal handler on rank 0 only,
        and a checkpoint save in DDP is a collective, so saving here could deadlock.
        """
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"TrainJob({self.config.kind}, {self.config.experiment}/{self.config.resolved_run_id})"


def _export_local_distributed_env(spec: JobSpec) -> None:
    """Under the local executor, give Lightning the torch.distributed variables.

    SLURM jobs need nothing: Lightning's SLURMEnvironment reads SLURM_PROCID and friends.
    submitit's local controller sets only SUBMITIT_LOCAL_*, which Lightning does not know.
    """
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or spec.tasks_per_node * spec.nodes < 2:
        return
    submitit.helpers.TorchDistributedEnvironment().export(
        set_cuda_visible_devices=spec.gpus_per_node > 0, overwrite=True
    )


def _link_job_logs(run: RunDir) -> None:
    """<run>/logs/job-<id>.out and .err: links to the job's submitit stdout/stderr (one pair per
    attempt), so a run directory holds its own logs. Best effort: a log it cannot link is not an
    error of the run."""
    try:
        paths = submitit.JobEnvironment().paths
        job_id = submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job (called directly)
        return
    logs = Path(run.path) / "logs"
    for target, suffix in ((paths.stdout, "out"), (paths.stderr, "err")):
        link = logs / f"job-{job_id}.{suffix}"
        try:
            logs.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(target).resolve())
        except OSError:
            pass


def _global_rank() -> int:
    for name in ("SUBMITIT_LOCAL_GLOBALID", "SLURM_PROCID", "RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def _job_id() -> str | None:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job (called directly)
        return None
