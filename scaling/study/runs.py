"""A trained sweep of `gpt_lm` runs as a table of runs (N, D, C, loss, seed, ...) for the fits.

The sweep is the Dataset that `workbench jobs collect` writes (sweep.nc): sweep parameters as
dimensions, `state` and `run_id` over them, each member's metrics, and each member's resolved
config under the `provenance_config` attribute. For every member that is done:

- N and the FLOPs per token follow the chosen convention (`scaling.conventions`) from the shape
  the member trained (width, depth, MLP width, sequence length, the 256-byte vocabulary, heads);
- D = tokens per step × the steps it trained, read from its record (the last evaluation step);
- C = FLOPs per token × D; loss = the final held-out loss; seed = its training seed;
- `budget` = the planned compute when the sweep was laid out by `workbench scaling plan`.

A member that ended with a non-finite loss, stopped before its planned steps, or has a shape the
conventions cannot count (doping, Monarch MLPs) is refused with its run id named.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np

from scaling.conventions import check_convention, flops_per_token, param_count
from workbench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["VOCAB", "is_sweep", "runs_from_sweep"]

VOCAB = 256  # the gpt_lm kind is byte-level (workbench.lm.config.GPTLMConfig.gpt_config)
CONFIGS = "provenance_config"


def is_sweep(ds: xr.Dataset) -> bool:
    """Whether `ds` is a collected sweep (rather than a table of runs stored as netCDF)."""
    return CONFIGS in ds.attrs and "state" in ds and "run_id" in ds


def runs_from_sweep(ds: xr.Dataset, convention: str, *, name: str) -> pd.DataFrame:
    """The done members of a collected gpt_lm sweep as a table of runs (see the module docstring)."""
    import pandas as pd

    check_convention(convention)
    if not is_sweep(ds):
        raise InputError(f"{name}: not a collected sweep (no member states or configs); run `workbench jobs collect`")
    configs = json.loads(ds.attrs[CONFIGS])
    for needed in ("final_val_loss", "val_loss", "tokens_per_step"):
        if needed not in ds:
            raise InputError(f"{name}: no member records {needed!r}; scaling fits need gpt_lm runs")
    dims = list(ds["state"].dims)
    flat = ds.stack(point=dims) if dims else ds.expand_dims(point=[0])
    rows = []
    for i in range(flat.sizes["point"]):
        member = flat.isel(point=i)
        if str(member["state"].values) != "done":
            continue
        run_id = str(member["run_id"].values)
        rows.append(_row(member, configs.get(run_id), run_id, convention, name, dims))
    if not rows:
        raise InputError(f"{name}: no member is done yet (workbench jobs status {name})")
    return pd.DataFrame(rows)


def _row(member, config, run_id: str, convention: str, name: str, dims: list[str]) -> dict:
    where = f"{name}: member {run_id}"
    if config is None or config.get("kind") != "gpt_lm":
        raise InputError(f"{where} is not a gpt_lm run; scaling fits read gpt_lm sweeps")
    model = config["model"]
    if model.get("frozen_ratio", 0) or model.get("mlp_kind", "dense") != "dense":
        raise InputError(f"{where}: doped or Monarch MLPs are not counted by the conventions; fit a dense sweep")
    loss = float(member["final_val_loss"])
    if not math.isfinite(loss):
        raise InputError(f"{where} ended with a non-finite held-out loss ({loss}); rerun or drop it")
    evaluated = member["val_loss"].dropna("eval_step")
    steps = int(evaluated["eval_step"].max()) if evaluated.sizes["eval_step"] else 0
    planned = int(config["train"]["max_steps"])
    if steps != planned:
        raise InputError(f"{where} trained {steps} of its {planned} steps; resubmit it before fitting")
    width, depth = int(model["width"]), int(model["depth"])
    shape = {
        "width": width,
        "depth": depth,
        "vocab": VOCAB,
        "seq_len": int(model["seq_len"]),
        "d_ff": int(model["mlp_ratio"]) * width,
        "ffn": "mlp",
        "n_heads": width // int(model["head_dim"]),
    }
    D = float(steps * int(member["tokens_per_step"]))
    row = {
        "run": run_id,
        "N": float(param_count(convention, **shape)),
        "D": D,
        "C": float(flops_per_token(convention, **shape)) * D,
        "loss": loss,
        "seed": int(config["train"]["seed"]),
    }
    if "budget" in dims:
        row["budget"] = float(np.asarray(member["budget"]))
    return row | {"width": width, "depth": depth}
