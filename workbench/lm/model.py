"""A GPT-style decoder with a `parametrization: "mup" | "sp"` switch (muP via Microsoft's `mup`).

One readable file in the spirit of nanoGPT's `model.py`: pre-LayerNorm blocks, causal attention
through `scaled_dot_product_attention`, GELU MLP, learned positions. Under muP (Tensor Programs V,
Yang et al. 2021; the rules as implemented in github.com/microsoft/mup, `mup/shape.py`, `layer.py`,
`optim.py`, `init.py`):

- the readout is a `MuReadout` (`MuSharedReadout` when tied), zero-initialised when untied;
- attention logits are scaled by `attn_mult / d_head`, not `1 / sqrt(d_head)`;
- the query projection starts at zero;
- base shapes come from a base model and a delta model at `base_width` / `2 * base_width`
  (`base_shapes`), and the weights are re-initialised with `mup.init` *after* `set_base_shapes`
  (fixed-std inits such as nanoGPT's 0.02 are otherwise wrong at every width but the base);
- optimizers are `MuAdamW` / `MuSGD`; under SP they are plain `torch.optim.AdamW` / `SGD`.

Two MLP options study what counts as a parameter (Chatelain et al. 2021): `frozen_ratio` > 0 adds
frozen random hidden units held in buffers (workbench.lm.doping), and `mlp_kind = "monarch"`
replaces the dense `c_fc` / `c_proj` by Monarch matrices (workbench.lm.structured) that muP scales
like hidden matrices. The defaults (0, "dense") are the plain nanoGPT MLP.

The helpers at the bottom wrap traps of mup 1.0.0: copies and EMA losing `infshape` (`deepcopy`
drops it), `state_dict` without `infshape` (its README, "Current Limitations"), schedulers that set
absolute learning rates, and `module.` name prefixes from (D)DP wrappers (mup removes them with
`str.strip`, which eats characters).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import ConfigError, InputError
from workbench.lm.config import MUP_MISSING, GPTConfig
from workbench.lm.doping import DopedMLP, frozen_units
from workbench.lm.structured import MonarchLinear

try:  # left out of the dependencies on purpose (MUP_MISSING says why)
    import mup
except ModuleNotFoundError:
    raise InputError(MUP_MISSING) from None

__all__ = [
    "GPT",
    "GPTConfig",
    "base_shapes",
    "build_model",
    "check_base_shapes",
    "check_lr_ratios",
    "copy_model",
    "ema_model",
    "load_base_shapes",
    "make_optimizer",
    "model_from_state_dict",
    "relative_lr_scheduler",
    "save_base_shapes",
    "set_base_shapes",
    "strip_module_prefix",
    "unwrap_model",
]


# --------------------------------------------------------------------------------------- modules


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        # Separate q/k/v so the query alone can be zero-initialised under muP.
        self.c_q = nn.Linear(config.width, config.width, bias=False)
        self.c_k = nn.Linear(config.width, config.width, bias=False)
        self.c_v = nn.Linear(config.width, config.width, bias=False)
        self.c_proj = nn.Linear(config.width, config.width, bias=False)
        self.heads = config.heads
        self.dropout = config.dropout
        # muP: 1/d_head keeps q·k = O(1) when q and k become correlated during training (TP5 §J.2).
        if config.parametrization == "mup":
            self.scale = config.attn_mult / config.head_dim
        else:
            self.scale = 1.0 / math.sqrt(config.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            proj(x).view(B, T, self.heads, C // self.heads).transpose(1, 2) for proj in (self.c_q, self.c_k, self.c_v)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, dropout_p=self.dropout if self.training else 0.0
        )
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


def mlp_matrix(config: GPTConfig, fan_in: int, fan_out: int) -> nn.Module:
    """`c_fc` / `c_proj`: a bias-free dense Linear, or a Monarch matrix (`mlp_kind`)."""
    if config.mlp_kind == "monarch":
        return MonarchLinear(fan_in, fan_out, config.monarch_blocks)
    return nn.Linear(fan_in, fan_out, bias=False)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = mlp_matrix(config, config.width, config.mlp_hidden)
        self.c_proj = mlp_matrix(config, config.mlp_hidden, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


def make_mlp(config: GPTConfig, layer: int) -> nn.Module:
    """The block's MLP; doped with frozen units when `frozen_ratio` > 0 (workbench.lm.doping)."""
    n_frozen = frozen_units(config.frozen_ratio, config.mlp_hidden)
    if n_frozen == 0:
        return MLP(config)
    # Frozen std ∝ 1/sqrt(fan_in): the trainable counterpart's std at the base width (fan-in ∝ width).
    shrink = math.sqrt(config.base_width / config.width)
    return DopedMLP(
        mlp_matrix(config, config.width, config.mlp_hidden),
        mlp_matrix(config, config.mlp_hidden, config.width),
        config.width,
        n_frozen,
        frozen_seed=config.frozen_seed,
        layer=layer,
        std_fc=config.init_std * shrink,
        std_proj=config.init_std / math.sqrt(2 * config.depth) * shrink,
    )


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = make_mlp(config, layer)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x)))
        return x + self.dropout(self.mlp(self.ln_2(x)))


class GPT(nn.Module):
    """Decoder-only transformer. `forward(idx, targets=None)` → (logits, loss or None)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.width)
        self.wpe = nn.Embedding(config.seq_len, config.width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.depth))
        self.ln_f = nn.LayerNorm(config.width)
        if config.parametrization == "mup":
            if config.tie_readout:
                # Not zero-initialised: that would zero the shared input embedding too.
                self.lm_head = mup.MuSharedReadout(self.wte.weight, bias=False, output_mult=config.output_mult)
            else:
                self.lm_head = mup.MuReadout(
                    config.width,
                    config.vocab_size,
                    bias=False,
                    readout_zero_init=config.readout_zero_init,
                    output_mult=config.output_mult,
                )
        else:
            self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
            if config.tie_readout:
                self.lm_head.weight = self.wte.weight
        self.init_weights()

    def init_weights(self) -> None:
        """nanoGPT's init (N(0, 0.02), residual projections ÷ sqrt(2·depth)); under muP through
        `mup.init`, which divides hidden-matrix stds by sqrt(width_mult) once base shapes are set.

        Before `set_base_shapes` (or under SP) it falls back to plain torch init. Monarch
        factors get stds that give the materialised matrix the dense layer's std
        (`MonarchLinear.factor_stds`), also through `mup.init`. Frozen doping buffers are not
        parameters and keep their own seeded init.
        """
        std = self.config.init_std
        mu = self.config.parametrization == "mup"
        structured = set()
        for name, module in self.named_modules():
            if isinstance(module, MonarchLinear):
                s = std / math.sqrt(2 * self.config.depth) if name.endswith("c_proj") else std
                infshape = getattr(module.r_blocks, "infshape", None)
                width_mult = infshape.width_mult() if infshape is not None else 1.0
                for p, s_factor in zip((module.r_blocks, module.l_blocks), module.factor_stds(s, width_mult)):
                    structured.add(id(p))
                    if hasattr(p, "infshape"):
                        mup.init.normal_(p, std=s_factor)
                    else:
                        nn.init.normal_(p, std=s_factor)
        for name, p in self.named_parameters():
            if p.ndim < 2 or id(p) in structured:  # LayerNorm gains and biases; Monarch done above
                continue
            if (
                name.endswith(("attn.c_q.weight",))
                and mu
                or name == "lm_head.weight"
                and mu
                and not self.config.tie_readout
                and self.config.readout_zero_init
            ):
                nn.init.zeros_(p)
            else:
                s = std / math.sqrt(2 * self.config.depth) if name.endswith("c_proj.weight") else std
                if hasattr(p, "infshape"):
                    mup.init.normal_(p, std=s)
                else:
                    nn.init.normal_(p, std=s)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.shape[1]
        if self.config.seq_len < T:
            raise InputError(f"sequence length {T} exceeds the model's seq_len = {self.config.seq_len}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared weights are counted once


# ----------------------------------------------------------------------------------- base shapes


def base_shapes(config: GPTConfig, savefile: str | os.PathLike | None = None) -> dict:
    """Base shapes from a base model (`base_width`) and a delta model (`2 * base_width`).

    Every width-scaled dimension (d_model, MLP hidden) differs between the two, as mup needs.
    Parameter shapes do not depend on the head count, so both are built with one head, on the
    meta device (no memory, any width).
    """

    def at(width: int) -> GPT:
        with torch.device("meta"):
            return GPT(dataclasses.replace(config, width=width, heads=1))

    infshapes = mup.make_base_shapes(at(config.base_width), at(2 * config.base_width))
    if savefile is not None:
        save_base_shapes(infshapes, savefile)
    return infshapes


def save_base_shapes(model_or_shapes: nn.Module | dict, path: str | os.PathLike) -> None:
    """Write a `.bsh` file. Wrapped models are unwrapped first (mup's `module.` handling is
    `str.strip('module.')`, which eats characters: 'module.embed.weight' → 'bed.weight')."""
    if isinstance(model_or_shapes, nn.Module):
        model_or_shapes = mup.get_infshapes(unwrap_model(model_or_shapes))
    mup.save_base_shapes(model_or_shapes, os.fspath(path))


def load_base_shapes(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return mup.shape.load_base_shapes(os.fspath(path))
    except FileNotFoundError:
        raise InputError(f"base shape file not found: {path}") from None
    except Exception as exc:  # YAML errors, wrong layout
        raise InputError(f"cannot read base shape file {path}: {' '.join(str(exc).split())}") from None


def set_base_shapes(
    model: GPT,
    base: dict | str | os.PathLike,
    *,
    rescale_params: bool = True,
    source: str = "base shape dict",
    do_assert: bool = True,
) -> GPT:
    """`mup.set_base_shapes` with a check that the base shapes describe this model.

    A mismatch (another architecture's `.bsh`, a different depth, a delta that left a width
    dimension finite) is an InputError naming the first differing parameter, not mup's bare
    AssertionError. `do_assert=False` skips mup's hidden-size check (coord-check control only).
    """
    if isinstance(base, (str, os.PathLike)):
        source = f"base shape file {base}"
        base = load_base_shapes(base)
    shapes = mup.get_shapes(model)
    missing = sorted(set(shapes) - set(base))
    extra = sorted(set(base) - set(shapes))
    if missing or extra:
        detail = (
            f"model parameter '{missing[0]}' is missing from it"
            if missing
            else f"it names '{extra[0]}', which the model does not have"
        )
        raise InputError(f"{source} does not match the model: {detail} ({len(missing)} missing, {len(extra)} extra)")
    for name, shape in shapes.items():
        if len(base[name]) != len(shape):
            raise InputError(
                f"{source} does not match the model: '{name}' has {len(shape)} dims "
                f"in the model, {len(base[name])} in the base shapes"
            )
    try:
        mup.set_base_shapes(model, base, rescale_params=rescale_params, do_assert=do_assert)
    except AssertionError as exc:  # mup's check for a width->finite Linear that is not a MuReadout
        raise InputError(f"{source} does not match the model: {' '.join(str(exc).split())}") from None
    return model


def check_base_shapes(config: GPTConfig, path: str | os.PathLike) -> None:
    """InputError unless the `.bsh` file at `path` describes the model `config` builds (checked
    on the meta device: no memory, any width)."""
    with torch.device("meta"):
        model = GPT(config)
    set_base_shapes(model, path, rescale_params=False)


def build_model(config: GPTConfig, base: dict | str | os.PathLike | None = None) -> GPT:
    """A ready-to-train model: under muP base shapes are set, then weights re-initialised."""
    model = GPT(config)
    if config.parametrization == "mup":
        set_base_shapes(model, base_shapes(config) if base is None else base)
        # After set_base_shapes: mup.init now sees infshape, and the tied embedding, which
        # set_base_shapes rescales by sqrt(width_mult) through MuSharedReadout, is drawn afresh.
        model.init_weights()
    return model


# ------------------------------------------------------------------------------------ optimizers


def make_optimizer(
    model: nn.Module,
    *,
    name: Literal["adamw", "sgd"] = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    parametrization: str | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """MuAdamW / MuSGD under muP, torch AdamW / SGD under SP.

    Weight decay applies to matrices only (not LayerNorm gains). mup 1.0.0's MuAdamW multiplies the
    hidden-matrix decay by width_mult, keeping lr·wd width-constant (other muP code, e.g.
    EleutherAI's nanoGPT-mup, leaves wd unscaled, so record which variant a run used).
    """
    if name not in ("adamw", "sgd"):
        raise ConfigError(f"optimizer = {name!r} is not a valid choice; choose one of: 'adamw', 'sgd'")
    if parametrization is None:
        parametrization = getattr(getattr(model, "config", None), "parametrization", "sp")
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if parametrization == "mup":
        factory = mup.MuAdamW if name == "adamw" else mup.MuSGD
    else:
        factory = torch.optim.AdamW if name == "adamw" else torch.optim.SGD
    return factory(groups, lr=lr, **kwargs)


# ------------------------------------------------------------------------- wrappers for mup traps


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / DataParallel / AveragedModel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(
            model, (nn.parallel.DistributedDataParallel, nn.DataParallel, torch.optim.swa_utils.AveragedModel)
        ):
            model = model.module
        else:
            return model


def strip_module_prefix(names: Mapping[str, Any]) -> dict[str, Any]:
    """Drop one leading 'module.' from every key (the (D)DP prefix), as a prefix, not characters."""
    return {key.removeprefix("module."): value for key, value in names.items()}


def _copy_infshapes(source: nn.Module, target: nn.Module) -> None:
    shapes = {name: p.infshape for name, p in unwrap_model(source).named_parameters() if hasattr(p, "infshape")}
    for name, p in unwrap_model(target).named_parameters():
        if name in shapes:
            p.infshape = copy.deepcopy(shapes[name])


def copy_model(model: nn.Module) -> nn.Module:
    """`copy.deepcopy` that keeps each parameter's `infshape` (deepcopy drops it)."""
    clone = copy.deepcopy(model)
    _copy_infshapes(model, clone)
    return clone


def ema_model(model: nn.Module, decay: float = 0.999) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of `model` whose inner copy still has `infshape`.

    Use `ema.update_parameters(model)` after each step and `ema(x)` / `ema.module` to evaluate.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    _copy_infshapes(model, ema.module)
    return ema


def model_from_state_dict(
    config: GPTConfig, state_dict: Mapping[str, torch.Tensor], base: dict | str | os.PathLike | None = None
) -> GPT:
    """A model rebuilt from a `state_dict` (which carries no `infshape`).

    Base shapes are set *without* rescaling (the saved weights are already muP-scaled), then the
    weights are loaded in place, which keeps `infshape`. `module.` prefixes are dropped.
    """
    model = GPT(config)
    if config.parametrization == "mup":
        set_base_shapes(model, base_shapes(config) if base is None else base, rescale_params=False)
    state = strip_module_prefix(state_dict)
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"checkpoint does not match the model config: {' '.join(str(exc).split())[:300]}") from None
    return model


def relative_lr_scheduler(
    optimizer: torch.optim.Optimizer, factor: Callable[[int], float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """A schedule that multiplies every group's *own* initial LR by `factor(step)`.

    muP keeps per-group LRs (hidden matrices get lr / width_mult); schedulers that set absolute
    values (OneCycleLR(max_lr=scalar), DeepSpeed's WarmupDecayLR) erase that ratio
    (mup README: schedulers must change LRs relatively).
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def warmup_cosine(warmup_steps: int, total_steps: int, min_factor: float = 0.1) -> Callable[[int], float]:
    """Linear warmup then cosine decay to `min_factor`, as a relative factor for the scheduler."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def check_lr_ratios(optimizer: torch.optim.Optimizer, initial_lrs: Iterable[float], rtol: float = 1e-6) -> None:
    """Raise ConfigError if the groups' LRs no longer stand in the ratios they started with.

    Call with `[g["lr"] for g in opt.param_groups]` recorded before any scheduler step.
    """
    initial = list(initial_lrs)
    current = [g["lr"] for g in optimizer.param_groups]
    if len(initial) != len(current) or not initial:
        raise ConfigError("optimizer param groups changed since the learning rates were recorded")
    ref = current[0] / initial[0] if initial[0] else 0.0
    for i, (a, b) in enumerate(zip(initial, current)):
        if not math.isclose(b, ref * a, rel_tol=rtol, abs_tol=1e-30):
            raise ConfigError(
                f"the LR scheduler changed the muP ratio of learning rates: param group {i} has "
                f"lr {b:.3g}, expected {ref * a:.3g}; use workbench.lm.model.relative_lr_scheduler"
            )
