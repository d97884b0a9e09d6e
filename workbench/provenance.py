"""Where a result came from, as netCDF global attributes: every `metrics.nc`, collected sweep and
fit output records the workbench version, the git commit of the checkout it ran from (when there
is one), the resolved config, the torch and CUDA versions, Python and the host.

    ds = with_provenance(ds, config)        # a copy with the attributes; the caller's is unchanged
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import xarray as xr

from workbench import __version__
from workbench.config import to_dict

__all__ = ["PREFIX", "provenance", "with_provenance"]

PREFIX = "provenance_"  # every attribute this module writes starts with it


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    """HEAD of the checkout this package runs from (with "-dirty" when tracked files changed), or ""
    for an installed copy or where git is missing."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return ""
    try:
        run = lambda *args: subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("-dirty" if dirty else "")


def _torch() -> tuple[str, str]:
    """(torch version, CUDA version or "none"): from the imported torch when a run imported it,
    else from the package metadata (a scaling fit never pays for importing torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.__version__, str(torch.version.cuda or "none")
    try:
        from importlib.metadata import version

        return version("torch"), "unknown (torch not imported)"
    except Exception:
        return "not installed", "none"


def _plain(value: Any) -> Any:
    """Dataclass configs (also inside dicts and lists) as the dicts their YAML would hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def provenance(config: Any = None) -> dict[str, str]:
    """The attributes (all strings, all starting with PREFIX); `config` (a dataclass or plain data)
    is stored as sorted JSON under `provenance_config`."""
    torch_version, cuda = _torch()
    attrs = {
        "workbench_version": __version__,
        "git_commit": _git_commit(),
        "torch": torch_version,
        "cuda": cuda,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "written_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if config is not None:
        attrs["config"] = json.dumps(_plain(config), sort_keys=True, default=str)
    return {PREFIX + key: str(value) for key, value in attrs.items()}  # plain str: h5py refuses str subclasses


def with_provenance(ds: xr.Dataset, config: Any = None) -> xr.Dataset:
    """A shallow copy of `ds` with the provenance attributes set."""
    out = ds.copy()
    out.attrs = {**ds.attrs, **provenance(config)}
    return out
