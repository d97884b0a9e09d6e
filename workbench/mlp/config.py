"""The `mlp_regression` kind's config and declaration; light to import (no torch).

    kind: mlp_regression       # in a job config (jobs/configs/mlp_tiny.yaml)

To add a model kind, copy this folder: a config dataclass whose defaults run on a CPU (the keys
a YAML file may set, checked by `workbench.config`), a `Trainable` naming the LightningModule,
and one entry in `workbench.areas.KINDS` (or, outside the repository, `kind: package.module:NAME`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from workbench.config import bounds
from workbench.registry import Trainable

__all__ = ["TRAINABLE", "MLPRegressionConfig"]


@dataclass(frozen=True)
class MLPRegressionConfig:
    """An MLP fitted to y = sin(x·a) + (x·b)²/2 + noise, x ~ N(0, I); small enough for CI."""

    in_features: int = field(default=4, metadata=bounds(ge=1))
    width: int = field(default=32, metadata=bounds(ge=1))
    depth: int = field(default=2, metadata=bounds(ge=1))
    n_samples: int = field(default=512, metadata=bounds(ge=1))
    batch_size: int = field(default=32, metadata=bounds(ge=1))
    noise: float = field(default=0.05, metadata=bounds(ge=0))
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = field(default=1e-2, metadata=bounds(gt=0))
    data_seed: int = 0
    # Pause after each step: makes the tiny model as slow as a real one, so preemption and
    # timeouts can be exercised (tests, try-outs). It does not change any number.
    step_time_s: float = field(default=0.0, metadata=bounds(ge=0, le=60))


TRAINABLE = Trainable(
    "mlp_regression",
    MLPRegressionConfig,
    "workbench.mlp.module:MLPRegression",
    "tiny MLP regression on a synthetic smooth function (CPU, seconds)",
)
