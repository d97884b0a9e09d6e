"""PROSE training data on disk: a sharded, resumable build (`workbench prose make-data`).

Follows the official PROSE code (github.com/felix-lyx/prose, `prose_ode/`): generation and noise
as in `symbolicregression/envs/generators.py` and `environment.py` (see `operators.odes`), target
tokens as in `symbolicregression/envs/encoders.py` (see `operators.prose.tokens`), and the default
sizes of `parsers.py` (512 000 training samples, 25 600 for validation). The official generator
costs ≈127 ms per trajectory on 2 CPU cores, hence a sharded build.

The data set is one global sample stream. Sample i belongs to family ``families[i % F]``
(round-robin, as the official generator visits families) and draws everything from child i of
``SeedSequence(seed)``, exactly as `operators.odes.generate` does. The first ``n_per_family * F``
samples are the **train** split, the next ``val_per_family * F`` the **val** split (so adding a val
split never changes train). Each split is cut into shards of ``shard_size`` consecutive samples; a
shard is a pure function of (config, shard index), so the build is a job array whose members can run
anywhere, in any order, and a rerun only builds the shards that are missing.

Layout of ``out/``::

    plan.json                 data settings, written first; a rerun must match them
    shard-00000.npz           train shard 0: clean, noisy (n, 192, d_max), y0, dim, family,
                              params, index (global sample ids), rejected (per family)
    shard-00000.tokens.jsonl  one line per kept sample: {"family": name, "tokens": [...]}
    val-00000.npz / val-00000.tokens.jsonl   the same for the val split
    manifest.json             written last: config, families, shard list with sample counts,
                              t grid, d_max, p_max, vocabulary max_dim

Every file is written atomically (temp file + rename), the tokens file before the npz. A rerun
reads every existing shard back whole (:func:`verify_shard`: each npz member is CRC-checked by
zipfile, the arrays must agree, the tokens file must have one JSON line per sample) and rebuilds
the missing and the corrupt ones, so a shard truncated or damaged after it was written (a full
disk during a copy, a bad sync) is repaired rather than skipped forever. The manifest lists only
shards that passed that check. Read back with :func:`load_dataset`.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from operators.odes import FAMILIES, default_t_eval, family_names, generate_samples, pack_samples, sample_seeds
from operators.prose.tokens import tokenize
from workbench.atomic import OutputError, atomic_write_bytes, atomic_write_text, check_writable, check_writable_dir
from workbench.config import bounds, to_dict
from workbench.errors import ConfigError, InputError
from workbench.jobspec import JobSpec
from workbench.store import atomic_write_json

SPLITS = ("train", "val")
PREFIX = {"train": "shard", "val": "val"}
FORMAT_VERSION = 2  # 2: targets are the expanded sums of terms (`ODEFamily.terms`); 1 had factored ones
# The settings that determine the data; `workers`, `out` and `job` only say how it is built.
DATA_KEYS = ("families", "n_per_family", "val_per_family", "shard_size", "seed", "engine", "noise_gamma")


@dataclass(frozen=True)
class ProseDataConfig:
    """What `workbench prose make-data` builds and where (defaults run on a CPU in seconds).

    families: a preset (chaotic_ode_3d, chaotic_ode_all) or a list of family names.
    n_per_family / val_per_family: samples (one parameter draw + one kept trajectory each) per
    family in the train / val split. engine: "batched" (operators/batched_solve.py) or
    "solve_ivp" (the official code's per-trajectory scipy solve). workers: processes per shard.
    """

    out: Path = Path("data/prose")
    families: str | tuple[str, ...] = "chaotic_ode_3d"
    n_per_family: int = field(default=100, metadata=bounds(ge=1))
    val_per_family: int = field(default=0, metadata=bounds(ge=0))
    shard_size: int = field(default=4096, metadata=bounds(ge=1))
    seed: int = 0
    engine: Literal["batched", "solve_ivp"] = "batched"
    workers: int = field(default=1, metadata=bounds(ge=1))
    noise_gamma: float = field(default=0.02, metadata=bounds(ge=0))
    job: JobSpec = field(default_factory=lambda: JobSpec(name="prose_data", timeout_min=60))

    def __post_init__(self) -> None:
        try:
            family_names(self.families)
        except InputError as error:
            raise ConfigError(f"families: {error}") from None

    @property
    def family_names(self) -> tuple[str, ...]:
        return family_names(self.families)

    def data_settings(self) -> dict[str, Any]:
        """The settings that determine the data (families resolved to names)."""
        settings = {key: getattr(self, key) for key in DATA_KEYS}
        settings["families"] = list(self.family_names)
        return settings


# --------------------------------------------------------------------------------------------
# Shards


@dataclass(frozen=True)
class Shard:
    split: str
    index: int
    start: int  # global sample ids start..stop-1
    stop: int

    @property
    def stem(self) -> str:
        return f"{PREFIX[self.split]}-{self.index:05d}"

    def npz(self, out: Path) -> Path:
        return Path(out) / f"{self.stem}.npz"

    def tokens(self, out: Path) -> Path:
        return Path(out) / f"{self.stem}.tokens.jsonl"


def plan_shards(settings: dict[str, Any]) -> list[Shard]:
    """All shards of both splits, in order."""
    n_fam = len(settings["families"])
    bounds_ = {"train": (0, settings["n_per_family"] * n_fam)}
    bounds_["val"] = (bounds_["train"][1], bounds_["train"][1] + settings["val_per_family"] * n_fam)
    shards = []
    for split in SPLITS:
        lo, hi = bounds_[split]
        for k, start in enumerate(range(lo, hi, settings["shard_size"])):
            shards.append(Shard(split, k, start, min(start + settings["shard_size"], hi)))
    return shards


def build_shard(settings: dict[str, Any], shard: Shard, out: str, workers: int = 1) -> dict[str, Any]:
    """Generate, tokenize and write one shard (a job-array member; deterministic in its inputs)."""
    names = settings["families"]
    ids = np.arange(shard.start, shard.stop)
    order = [names[i % len(names)] for i in ids]
    t = default_t_eval()
    started, start = time.time(), time.perf_counter()
    results = generate_samples(
        order,
        sample_seeds(settings["seed"], shard.start, shard.stop),
        t,
        settings["noise_gamma"],
        settings["engine"],
        workers,
    )
    packed = pack_samples(names, order, results, t)
    kept = np.array([r[2] is not None for r in results], dtype=bool)
    lines = []
    for fam_index, p in zip(packed["family"], packed["params"]):
        family = FAMILIES[names[fam_index]]
        tokens = target_tokens(family, p[: len(family.params)])
        lines.append(json.dumps({"family": family.name, "tokens": tokens}))
    atomic_write_text(shard.tokens(out), "".join(line + "\n" for line in lines))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        clean=packed["clean"],
        noisy=packed["noisy"],
        y0=packed["y0"],
        dim=packed["dim"],
        family=packed["family"],
        params=packed["params"],
        index=ids[kept],
        rejected=np.array([packed["rejected"][n] for n in names], dtype=np.int64),
    )
    atomic_write_bytes(shard.npz(out), buffer.getvalue())  # last: its presence marks the shard complete
    return {
        "shard": shard.stem,
        "samples": int(kept.sum()),
        "seconds": time.perf_counter() - start,
        "started": started,
        "ended": time.time(),
    }


def target_tokens(family, params) -> list[str]:
    """The target tokens of `family` with `params` = tokenize(family.expressions(params)).

    The target is the expanded sum of terms in the official code's order (`ODEFamily.terms`, e.g.
    Lorenz ρx − xz − y, 33 tokens), not the factored right-hand side that is integrated.
    """
    return tokenize(family.expressions(params))


SHARD_KEYS = ("clean", "noisy", "y0", "dim", "family", "params", "index", "rejected")


def _rebuild_hint(rebuild: str) -> str:
    return f"rerun {rebuild} to rebuild it (good shards are kept, only missing or corrupt ones are built)"


def _shard_arrays(shard: Shard, out: Path, rebuild: str, keys: Sequence[str] = SHARD_KEYS) -> dict[str, np.ndarray]:
    path = shard.npz(out)
    hint = _rebuild_hint(rebuild)
    if not path.exists():
        raise InputError(f"shard file {path} is missing; {hint}")
    try:
        with np.load(path) as z:
            arrays = {key: z[key] for key in keys}  # npz members are read lazily, one by one
    except Exception as error:  # zipfile/pickle/EOF errors of a truncated or corrupt file
        raise InputError(f"shard file {path} is truncated or corrupt ({type(error).__name__}); {hint}") from None
    return arrays


def _shard_tokens(shard: Shard, out: Path, samples: int, rebuild: str) -> list[dict]:
    path = shard.tokens(out)
    hint = _rebuild_hint(rebuild)
    if not path.exists():
        raise InputError(f"shard file {path} is missing; {hint}")
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"shard file {path} is truncated or corrupt (bad JSON line); {hint}") from None
    except OSError as error:  # e.g. a directory in its place
        raise InputError(f"shard file {path} cannot be read ({error.strerror or error}); {hint}") from None
    if not all(isinstance(row, dict) and isinstance(row.get("tokens"), list) for row in rows):
        raise InputError(f"shard file {path} is corrupt (a line without a token list); {hint}")
    if len(rows) != samples:
        raise InputError(f"shard file {path} has {len(rows)} lines, expected {samples} (truncated); {hint}")
    return rows


def verify_shard(settings: dict[str, Any], shard: Shard, out: Path, rebuild: str) -> dict[str, Any]:
    """Read one shard back whole and check it; its sample count and rejections per family.

    Reading every npz member in full makes zipfile check its CRC-32 (a truncated npz has lost its
    central directory; a flipped bit fails the CRC). The arrays must have one row per sample, the
    sample ids must lie in the shard's range, and the tokens file must hold one line per sample for
    the same family. Raises InputError naming the file and the fault.
    """
    out = Path(out)
    names = settings["families"]
    arrays = _shard_arrays(shard, out, rebuild)
    path, hint = shard.npz(out), _rebuild_hint(rebuild)
    samples = int(arrays["family"].size)
    lengths = {key: len(arrays[key]) for key in SHARD_KEYS if key != "rejected"}
    if set(lengths.values()) != {samples}:
        raise InputError(f"shard file {path} is corrupt (arrays of different lengths {lengths}); {hint}")
    index, family = arrays["index"], arrays["family"]
    if samples and (index.min() < shard.start or index.max() >= shard.stop or np.any(np.diff(index) <= 0)):
        raise InputError(f"shard file {path} holds samples outside {shard.start}..{shard.stop - 1}; {hint}")
    if arrays["rejected"].shape != (len(names),) or (samples and not 0 <= family.min() <= family.max() < len(names)):
        raise InputError(f"shard file {path} is corrupt (family ids or rejections do not match {names}); {hint}")
    rows = _shard_tokens(shard, out, samples, rebuild)
    if any(row.get("family") != names[f] for row, f in zip(rows, family.tolist())):
        raise InputError(f"shard file {shard.tokens(out)} does not match {path.name} (families differ); {hint}")
    return {"samples": samples, "rejected": dict(zip(names, arrays["rejected"].tolist()))}


# --------------------------------------------------------------------------------------------
# The build


def rebuild_command(config_path: str | None, overrides: Sequence[str]) -> str:
    if config_path is None:
        return "`workbench prose make-data CONFIG` with the same settings"
    sets = "".join(f" --set {item}" for item in overrides)
    return f"`workbench prose make-data {config_path}{sets}`"


@dataclass(frozen=True)
class BuildPlan:
    """What a (re)run of make-data has to do.

    items: the arguments of `build_shard` for every shard to build; good: the shards that passed
    `verify_shard` ({stem: its record}); corrupt: the shards found damaged ({stem: why}), whose npz
    was removed so that they are rebuilt (and read as missing should the rebuild fail).
    """

    items: list[tuple]
    good: dict[str, dict[str, Any]]
    corrupt: dict[str, str]


def plan_build(config: ProseDataConfig, rebuild: str) -> BuildPlan:
    """Check the outputs can be written, verify every existing shard, and plan the rest.

    Writes ``plan.json`` on the first build; a rerun with settings that change the data is refused
    (InputError naming them), so shards of two different data sets never mix. Unwritable outputs
    (a file where `out` should be a directory, a directory where a shard or the manifest goes) are
    an OutputError here, before any shard is built.
    """
    out = Path(config.out)
    settings = config.data_settings()
    check_writable_dir(out, "make-data out")
    check_writable(out / "manifest.json", "make-data manifest")
    shards = plan_shards(settings)
    for shard in shards:
        for path in (shard.npz(out), shard.tokens(out)):
            if path.is_dir():
                raise OutputError(f"{path} is a directory where make-data writes shard {shard.stem}; remove it")
    plan_path = out / "plan.json"
    if plan_path.exists():
        try:
            plan = json.loads(plan_path.read_text(encoding="utf-8"))
            previous = plan["data"]
        except (json.JSONDecodeError, KeyError, OSError, TypeError):
            raise InputError(f"{plan_path} is unreadable; delete {out} or choose another out") from None
        _check_format(plan.get("format", 1), out)
        changed = [k for k in DATA_KEYS if previous.get(k) != settings[k]]
        if changed:
            raise InputError(
                f"{out} holds data built with different {', '.join(changed)} "
                f"({', '.join(f'{k}={previous.get(k)!r}' for k in changed)}); "
                f"use another out or delete it"
            )
    else:
        atomic_write_json(plan_path, {"format": FORMAT_VERSION, "data": settings, "rebuild": rebuild})
    items, good, corrupt = [], {}, {}
    for shard in shards:
        if shard.npz(out).exists():
            try:
                good[shard.stem] = verify_shard(settings, shard, out, rebuild)
                continue
            except InputError as error:
                corrupt[shard.stem] = str(error).split("; rerun")[0]
                # Removed now: until the rebuild succeeds the shard reads as missing, not as corrupt.
                shard.npz(out).unlink(missing_ok=True)
        items.append((settings, shard, str(out), config.workers))
    return BuildPlan(items, good, corrupt)


def describe_shard(item: tuple, built: dict[str, Any]) -> str:
    return f"{built['shard']}: {built['samples']} samples in {built['seconds']:.1f} s"


def finish_build(
    config: ProseDataConfig,
    built: Sequence[dict[str, Any]],
    executor: str,
    rebuild: str,
    good: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write manifest.json over every shard (new and earlier ones); the build's summary.

    Each shard is verified (`verify_shard`) before it is listed: those in `good` (verified by
    `plan_build` and not rebuilt since) are taken as they are, all others are read back whole, so
    a shard that is missing or corrupt is an InputError here, never reported as complete.
    Build time is the span from the first shard's start to the last one's end (members may run in
    parallel); trajectories/s counts the trajectories built in that span.
    """
    out = Path(config.out)
    settings = config.data_settings()
    shards = plan_shards(settings)
    d_max = max(FAMILIES[n].dim for n in settings["families"])
    fresh = {b["shard"] for b in built}
    good = {stem: record for stem, record in (good or {}).items() if stem not in fresh}
    records = []
    for shard in shards:
        checked = good.get(shard.stem) or verify_shard(settings, shard, out, rebuild)
        records.append(
            {
                "file": shard.npz(out).name,
                "tokens": shard.tokens(out).name,
                "split": shard.split,
                "index": shard.index,
                "start": shard.start,
                "stop": shard.stop,
                "samples": checked["samples"],
                "rejected": checked["rejected"],
            }
        )
    manifest = {
        "format": FORMAT_VERSION,
        "config": _plain_config(config),
        "data": settings,
        "families": settings["families"],
        "rebuild": rebuild,
        "n": {split: sum(r["samples"] for r in records if r["split"] == split) for split in SPLITS},
        "shards": records,
        "t": default_t_eval().tolist(),
        "d_max": d_max,
        "p_max": max(len(FAMILIES[n].params) for n in settings["families"]),
        "vocabulary_max_dim": d_max,
    }
    atomic_write_json(out / "manifest.json", manifest)
    n_built = sum(b["samples"] for b in built)
    seconds = max(b["ended"] for b in built) - min(b["started"] for b in built) if built else 0.0
    return {
        "out": str(out),
        "shards": len(shards),
        "built": [b["shard"] for b in built],
        "skipped": len(shards) - len(built),
        "samples": manifest["n"],
        "built_samples": n_built,
        "seconds": seconds,
        "trajectories_per_s": n_built / seconds if built and seconds > 0 else None,
        "engine": settings["engine"],
        "executor": executor,
    }


def _plain_config(config: ProseDataConfig) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(config), default=str))


# --------------------------------------------------------------------------------------------
# Reading


def _check_format(fmt: Any, out: Path) -> None:
    """Data of another format version are refused: format 1 tokenised factored targets, and shards of
    two formats must never mix in one build or one training run."""
    if fmt != FORMAT_VERSION:
        raise InputError(
            f"{out} holds PROSE data of format {fmt}, this version reads and writes format {FORMAT_VERSION} "
            "(targets as the expanded sums of terms); build it again with make-data into an empty out"
        )


def load_dataset(path: str | Path, split: str = "train") -> dict[str, Any]:
    """A make-data output as `operators.odes.generate` returns it, plus ``tokens`` and ``split``.

    split is "train" or "val" (the val split exists when the build had val_per_family > 0).
    Keys: t, clean, noisy, y0, dim, family, params, families, rejected, seed (as generate) and
    tokens (one target token list per sample), index (global sample ids), split.
    A missing or truncated shard is an InputError naming the file and how to rebuild it.
    """
    out = Path(path)
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if not out.is_dir():
        raise InputError(f"{out}: no such data directory; build one with `workbench prose make-data CONFIG`")
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        if (out / "plan.json").exists():
            raise InputError(
                f"{out} is an unfinished make-data build (no manifest.json); rerun "
                f"make-data with the same config to resume it"
            )
        raise InputError(f"{out} has no manifest.json: not a `workbench prose make-data` output")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        fmt = manifest.get("format", 1)
        names, records, rebuild = tuple(manifest["families"]), manifest["shards"], manifest["rebuild"]
        d_max, p_max, t = manifest["d_max"], manifest["p_max"], np.array(manifest["t"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{manifest_path} is unreadable or incomplete; rerun make-data to rewrite it") from None
    _check_format(fmt, out)
    records = [r for r in records if r["split"] == split]
    if not records:
        raise InputError(
            f"{out} has no {split} split (make-data with "
            f"{'val_per_family > 0' if split == 'val' else 'n_per_family > 0'})"
        )
    parts, tokens = [], []
    for r in records:
        shard = Shard(split, r["index"], r["start"], r["stop"])
        arrays = _shard_arrays(shard, out, rebuild)
        if arrays["family"].size != r["samples"]:
            raise InputError(
                f"shard file {shard.npz(out)} holds {arrays['family'].size} samples, the manifest "
                f"says {r['samples']}; rerun {rebuild} to rebuild it"
            )
        rows = _shard_tokens(shard, out, r["samples"], rebuild)
        parts.append(arrays)
        tokens += [row["tokens"] for row in rows]
    cat = {
        key: np.concatenate([p[key] for p in parts])
        for key in ("clean", "noisy", "y0", "dim", "family", "params", "index")
    }
    rejected = np.sum([p["rejected"] for p in parts], axis=0)
    assert cat["clean"].shape[1:] == (t.size, d_max) and cat["params"].shape[1] == p_max
    return {
        "t": t,
        **cat,
        "families": names,
        "rejected": dict(zip(names, rejected.tolist())),
        "seed": manifest["data"]["seed"],
        "tokens": tokens,
        "split": split,
    }
