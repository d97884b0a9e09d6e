"""PROSE's model config and the `prose` model kind's config; light to import (no torch).

    kind: prose            # in a job config (jobs/configs/prose_tiny.yaml, prose_paper.yaml)

`ProseSizes` holds what the model and the job config share (widths and depths: Liu, Zhang &
Schaeffer 2023, with the defaults of the official code's `prose_ode/parsers.py`); `ProseConfig` (the
model, operators/prose/model.py) adds the vocabulary and dropout, and `ProseTrainableConfig` (a
training job) adds the data and the optimisation. The LightningModule is
`operators.prose.module.Prose`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from workbench.config import bounds
from workbench.errors import ConfigError, InputError
from workbench.registry import Trainable

__all__ = ["TRAINABLE", "ProseConfig", "ProseSizes", "ProseTrainableConfig", "preflight_prose"]


@dataclass(frozen=True)
class ProseSizes:
    """Widths and depths of the PROSE transformer. Defaults are the tiny CPU size; the paper's
    are 512 / 8 heads / FFN 2048 with layers 2 / 4 / 8 / 8 / 8 (`ProseConfig.paper`)."""

    hidden: int = field(default=64, metadata=bounds(ge=1))
    heads: int = field(default=4, metadata=bounds(ge=1))
    ffn: int = field(default=128, metadata=bounds(ge=1))
    data_encoder_layers: int = field(default=1, metadata=bounds(ge=1))
    symbol_encoder_layers: int = field(default=1, metadata=bounds(ge=1))
    fusion_layers: int = field(default=2, metadata=bounds(ge=1))  # unused when data_only
    data_decoder_layers: int = field(default=2, metadata=bounds(ge=1))
    symbol_decoder_layers: int = field(default=2, metadata=bounds(ge=1))
    d_max: int = field(default=3, metadata=bounds(ge=1, le=5))  # 3 for the 3-D set, 5 for all 15 systems
    max_symbol_len: int = field(default=150, metadata=bounds(ge=1))  # longest generated token sequence
    data_only: bool = False  # ablation (official --no_text): no symbol encoder, fusion or symbol decoder

    def _check_heads(self) -> None:
        if self.hidden % self.heads:
            raise ConfigError(
                f"hidden = {self.hidden} is not divisible by heads = {self.heads}; "
                f"choose a hidden size that is a multiple of {self.heads}"
            )


@dataclass(frozen=True)
class ProseConfig(ProseSizes):
    """The model: its sizes plus vocabulary, dropout and the special token ids."""

    vocab_size: int = field(default=1041, metadata=bounds(ge=4))  # Vocabulary(max_dim=3).size
    dropout: float = field(default=0.0, metadata=bounds(ge=0, lt=1))
    bos_id: int = field(default=0, metadata=bounds(ge=0))
    eos_id: int = field(default=1, metadata=bounds(ge=0))
    pad_id: int = field(default=2, metadata=bounds(ge=0))

    def __post_init__(self):
        for name in (
            "hidden",
            "heads",
            "ffn",
            "d_max",
            "max_symbol_len",
            "data_encoder_layers",
            "symbol_encoder_layers",
            "fusion_layers",
            "data_decoder_layers",
            "symbol_decoder_layers",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} = {value!r} must be a positive integer")
        self._check_heads()
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout = {self.dropout!r} must be in [0, 1)")
        specials = {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id}
        if len(set(specials.values())) != 3:
            raise ConfigError(f"bos_id, eos_id and pad_id must differ, got {specials}")
        for name, value in specials.items():
            if not 0 <= value < self.vocab_size:
                raise ConfigError(f"{name} = {value} is outside the vocabulary (0..{self.vocab_size - 1})")

    @classmethod
    def paper(cls, **changes) -> ProseConfig:
        """The paper's model (official `parsers.py` defaults): d 512, 8 heads, FFN 2048, layers
        2/4/8/8/8, d_max 3 (the 3-D set)."""
        base = cls(hidden=512, heads=8, ffn=2048, data_encoder_layers=2, symbol_encoder_layers=4,
                   fusion_layers=8, data_decoder_layers=8, symbol_decoder_layers=8, d_max=3)  # fmt: skip
        return replace(base, **changes)

    @classmethod
    def tiny(cls, **changes) -> ProseConfig:
        """CPU size: d 64, 4 heads, FFN 128, layers 1/1/2/2/2."""
        return replace(cls(), **changes)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class ProseTrainableConfig(ProseSizes):
    """A PROSE training job: the model's sizes, its data and its optimiser (official `parsers.py` defaults)."""

    # data
    data: str = ""  # "" = generate in process; else a `workbench prose make-data` directory
    val_data: str = ""  # a make-data directory whose val split validates; "" = data's val split, if any,
    # else the last n_val per family of data's train split
    families: str = "thomas,rossler,dadras"  # preset (chaotic_ode_3d, chaotic_ode_all) or names
    n_train: int = field(default=200, metadata=bounds(ge=1))  # per family, in-process data only
    n_val: int = field(default=20, metadata=bounds(ge=1))  # per family
    data_seed: int = 0
    data_workers: int = field(default=1, metadata=bounds(ge=1))
    # in-process integrator: "batched" (operators/batched_solve.py, ~100x faster, same params and ICs)
    # or "solve_ivp" (the official PROSE code's per-trajectory scipy solve)
    engine: Literal["batched", "solve_ivp"] = "batched"
    input_len: int = field(default=64, metadata=bounds(ge=1))  # 64 of the 192 points are the input
    add_term_prob: float = field(default=0.15, metadata=bounds(ge=0, le=1))  # skeleton corruption
    miss_term_prob: float = field(default=0.15, metadata=bounds(ge=0, le=1))
    # optimisation (official `parsers.py`: AdamW, 20k warm-up steps to 1e-4, then inverse square root)
    batch_size: int = field(default=32, metadata=bounds(ge=1))
    lr: float = field(default=1e-4, metadata=bounds(gt=0))
    warmup_steps: int = field(default=20000, metadata=bounds(ge=1))
    warmup_init_lr: float = field(default=1e-7, metadata=bounds(ge=0))
    weight_decay: float = field(default=1e-4, metadata=bounds(ge=0))
    beta1: float = field(default=0.9, metadata=bounds(ge=0, lt=1))
    beta2: float = field(default=0.999, metadata=bounds(ge=0, lt=1))
    eps: float = field(default=1e-8, metadata=bounds(gt=0))
    grad_clip: float = field(default=1.0, metadata=bounds(ge=0))  # 0 = no clipping
    # evaluation during training
    eval_every: int = field(default=200, metadata=bounds(ge=1))
    eval_samples: int = field(default=64, metadata=bounds(ge=1))
    # DataLoader processes that build batches (corruption, padding) ahead of the GPU; worker k
    # builds steps k, k+W, ... and the loader returns them in step order, so results do not change.
    loader_workers: int = field(default=0, metadata=bounds(ge=0))

    def __post_init__(self):
        self._check_heads()
        if self.add_term_prob + self.miss_term_prob > 1:
            raise ConfigError(
                f"add_term_prob + miss_term_prob = {self.add_term_prob + self.miss_term_prob} must be <= 1"
            )
        if self.val_data and not self.data:
            raise ConfigError("val_data is set but data is not; give data: PATH too, or neither")
        if not self.data:
            # Imported here: the ODE families need sympy and scipy, which a make-data config does not.
            from operators.odes import FAMILIES, family_names

            try:
                names = family_names(self.families)
            except InputError as error:
                raise ConfigError(f"families = {self.families!r}: {error}") from None
            widest = max(FAMILIES[n].dim for n in names)
            if widest > self.d_max:
                raise ConfigError(
                    f"families include a {widest}-dimensional system but d_max = {self.d_max}; set d_max: {widest}"
                )

    def model_config(self) -> ProseConfig:
        """The model this job trains: its sizes and the vocabulary of `d_max` state variables."""
        from operators.prose.tokens import Vocabulary  # sympy: only when a model is built

        sizes = {f.name: getattr(self, f.name) for f in dataclasses.fields(ProseSizes)}
        return ProseConfig(**sizes, vocab_size=Vocabulary(max_dim=self.d_max).size)


def preflight_prose(config: ProseTrainableConfig) -> None:
    """Checked before a job is submitted: data directories exist and hold every shard."""
    if config.data:
        from operators.prose.dataset import load_dataset  # reads the shards: numpy

        for path in filter(None, (config.data, config.val_data)):
            if not Path(path).exists():
                raise InputError(f"data directory {path} does not exist; make it with `workbench prose make-data`")
            load_dataset(path)  # InputError naming a missing or bad shard


TRAINABLE = Trainable(
    "prose",
    ProseTrainableConfig,
    "operators.prose.module:Prose",
    "PROSE multimodal transformer on ODE trajectories + symbolic skeletons (operators.prose)",
    preflight=preflight_prose,
)
