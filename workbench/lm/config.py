"""The GPT's config and the `gpt_lm` model kind's config; light to import (no torch).

    kind: gpt_lm           # in a job config (jobs/configs/lm_mup_tiny.yaml)

`GPTShape` holds what the model and the job config share; `GPTConfig` (the model,
workbench/lm/model.py) adds the vocabulary, heads and dropout, and `GPTLMConfig` (a training job)
adds the head size, the corpus and the optimisation. The LightningModule is
`workbench.lm.module.GPTLM`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.registry import Trainable

__all__ = ["MUP_MISSING", "TRAINABLE", "GPTConfig", "GPTLMConfig", "GPTShape", "monarch_size_error"]

# mup is not among the package's dependencies: its metadata declares torchvision, and resolving
# that replaces a cluster's own torch with the newest PyPI build. Installed on its own, it needs
# only torch, numpy, pandas and pyyaml.
MUP_MISSING = (
    "the muP language model needs the mup package, which installing this project leaves out: "
    "pip install --no-deps 'mup>=1.0' (without --no-deps, its declared torchvision would replace your torch)"
)


def monarch_size_error(blocks: int, **sizes: int) -> str | None:
    """A one-line complaint if any named size is not divisible by `blocks`, else None."""
    for name, size in sizes.items():
        if size % blocks:
            return (
                f"mlp_kind = 'monarch' needs {name} = {size} divisible by monarch_blocks = {blocks}; "
                f"choose monarch_blocks from the common divisors of the sizes, or another {name}"
            )
    return None


@dataclass(frozen=True)
class GPTShape:
    """The GPT's widths, parametrization and MLP options (shared by GPTConfig and GPTLMConfig)."""

    width: int = field(default=64, metadata=bounds(ge=1))  # d_model
    depth: int = field(default=2, metadata=bounds(ge=1))  # number of blocks
    seq_len: int = field(default=64, metadata=bounds(ge=1))  # context length (learned positions)
    mlp_ratio: int = field(default=4, metadata=bounds(ge=1))  # MLP hidden = mlp_ratio * width
    parametrization: Literal["mup", "sp"] = "mup"
    tie_readout: bool = False
    base_width: int = field(default=32, metadata=bounds(ge=1))  # muP base model width
    init_std: float = field(default=0.02, metadata=bounds(gt=0))  # std at base width (nanoGPT)
    attn_mult: float = field(default=1.0, metadata=bounds(gt=0))  # muP logits: attn_mult / d_head
    output_mult: float = field(default=1.0, metadata=bounds(gt=0))  # muP readout multiplier
    # muP readout: zero (mup's recommendation) or N(0, init_std²), which MuReadout's 1/width_mult
    # makes an O(1/width) init. Zero + Adam can sit on a unigram plateau in short runs (README).
    readout_zero_init: bool = True
    # doping (workbench.lm.doping): round(frozen_ratio * mlp_hidden) frozen random MLP units per block
    frozen_ratio: float = field(default=0.0, metadata=bounds(ge=0))
    frozen_seed: int = field(default=0, metadata=bounds(ge=0))
    # MLP matrices: dense, or Monarch with a width-independent number of blocks (workbench.lm.structured)
    mlp_kind: Literal["dense", "monarch"] = "dense"
    monarch_blocks: int = field(default=4, metadata=bounds(ge=1))

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_ratio * self.width

    def _check_monarch(self) -> None:
        if self.mlp_kind == "monarch":
            sizes = {"width": self.width, "mlp_hidden": self.mlp_hidden}
            if self.parametrization == "mup":  # base shapes are built at base_width (and twice it)
                sizes["base_width"] = self.base_width
            problem = monarch_size_error(self.monarch_blocks, **sizes)
            if problem:
                raise ConfigError(problem)


@dataclass(frozen=True)
class GPTConfig(GPTShape):
    """The model: a shape plus vocabulary, heads and dropout."""

    vocab_size: int = field(default=256, metadata=bounds(ge=2))  # byte-level tokens
    heads: int = field(default=8, metadata=bounds(ge=1))
    dropout: float = field(default=0.0, metadata=bounds(ge=0, lt=1))

    def __post_init__(self):
        if self.width % self.heads:
            raise ConfigError(
                f"width = {self.width} is not divisible by heads = {self.heads}; "
                f"choose heads from the divisors of {self.width}"
            )
        if not self.frozen_ratio >= 0:  # also NaN, for configs built in Python rather than loaded
            raise ConfigError(f"frozen_ratio = {self.frozen_ratio} must be >= 0")
        self._check_monarch()

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class GPTLMConfig(GPTShape):
    """A byte-level GPT trained on one of the offline corpora (workbench.lm.corpora)."""

    # model: heads = width / head_dim, so one head size serves a whole width sweep
    width: int = field(default=32, metadata=bounds(ge=1))
    seq_len: int = field(default=32, metadata=bounds(ge=2))
    head_dim: int = field(default=8, metadata=bounds(ge=1))
    base_shapes: str = ""  # a .bsh file (workbench lm base-shapes); default: made from base_width
    # data
    corpus: Literal["markov", "spectral", "stdlib", "file"] = "markov"
    corpus_path: str = ""  # for corpus: file
    corpus_seed: int = 0  # Markov source seed
    markov_order: int = field(default=2, metadata=bounds(ge=1))  # order 1 is learnt in far fewer steps
    markov_alphabet: int = field(default=16, metadata=bounds(ge=2, le=256))  # also the spectral source's
    # corpus: spectral (workbench.lm.corpora.SpectralMarkovSource): singular values ∝ k^-decay
    spectral_decay: float = field(default=0.3, metadata=bounds(ge=0))
    spectral_scale: float = field(default=3.0, metadata=bounds(ge=0))
    spectral_zipf: float = field(default=1.0, metadata=bounds(ge=0))
    corpus_tokens: int = field(default=1 << 18, metadata=bounds(ge=2))  # Markov train tokens / stdlib bytes
    # optimisation
    batch_size: int = field(default=16, metadata=bounds(ge=1))
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = field(default=1e-2, metadata=bounds(gt=0))
    weight_decay: float = field(default=0.0, metadata=bounds(ge=0))
    beta2: float = field(default=0.95, metadata=bounds(gt=0, lt=1))  # AdamW's second-moment decay (nanoGPT)
    grad_clip: float = field(default=1.0, metadata=bounds(ge=0))  # max global grad norm; 0 = no clipping
    warmup_steps: int = field(default=5, metadata=bounds(ge=0))
    min_lr_factor: float = field(default=0.1, metadata=bounds(ge=0, le=1))
    # cosine horizon; 0 = the run's max_steps. Set it when a run is stopped early and continued
    # with a larger max_steps, so both legs follow one schedule.
    lr_decay_steps: int = field(default=0, metadata=bounds(ge=0))
    # evaluation
    eval_every: int = field(default=10, metadata=bounds(ge=1))
    eval_batches: int = field(default=4, metadata=bounds(ge=1))

    def __post_init__(self):
        if self.width % self.head_dim:
            raise ConfigError(
                f"width = {self.width} is not divisible by head_dim = {self.head_dim}; "
                f"choose a width that is a multiple of {self.head_dim}"
            )
        if self.base_shapes and self.parametrization != "mup":
            raise ConfigError(
                f"base_shapes = {self.base_shapes!r} is for parametrization 'mup' only; "
                f"remove it or set parametrization: mup"
            )
        if self.corpus == "file" and not self.corpus_path:
            raise ConfigError("corpus = 'file' needs corpus_path (a text file, uint16 .bin or nanoGPT directory)")
        self._check_monarch()  # here, so a sweep fails before anything is submitted

    def gpt_config(self) -> GPTConfig:
        """The model this job trains: its shape, the 256-byte vocabulary and width / head_dim heads."""
        shape = {f.name: getattr(self, f.name) for f in dataclasses.fields(GPTShape)}
        return GPTConfig(**shape, vocab_size=256, heads=self.width // self.head_dim)


TRAINABLE = Trainable(
    "gpt_lm",
    GPTLMConfig,
    "workbench.lm.module:GPTLM",
    "byte-level muP/SP GPT on the Markov, stdlib or a file corpus (workbench.lm)",
    preflight="workbench.lm.preflight:preflight_gpt_lm",
)
