"""The `gpt_lm` trainable: the muP/SP GPT of workbench.lm.model trained through workbench.train.

    kind: gpt_lm           # in a job config (jobs/configs/lm_mup_tiny.yaml)

Each step's batch is drawn from a numpy generator seeded by (TrainConfig.seed, step), so a
resumed run sees the batches an uninterrupted one would. Every `eval_every` steps (and after the
last step) the mean loss over `eval_batches` fixed held-out batches is recorded; the harness's
metrics.nc then also holds

- ``val_loss`` over ``eval_step`` (loss after that many optimizer steps; step 0 = init),
- ``final_val_loss``, ``params`` (non-embedding parameter count N: everything but the token
  and position embeddings and the vocabulary readout), ``params_total``,
  ``entropy_rate`` (nats/token, NaN unless the corpus is the Markov source),
- ``params_frozen`` (frozen doping weights, workbench.lm.doping), ``flops_per_token`` (training
  FLOPs per token, `count_params`) and ``tokens_per_step`` (batch_size · seq_len), so that
  compute = flops_per_token · tokens_per_step · steps_done.

Importing this module is cheap (no torch); the model is built inside `build_gpt_lm`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.train import register_trainable

__all__ = ["GPTLMConfig", "build_gpt_lm", "count_params"]

EMBEDDING_PARAMS = ("wte.weight", "wpe.weight", "lm_head.weight")


@dataclass(frozen=True)
class GPTLMConfig:
    """A byte-level GPT trained on one of the offline corpora (workbench.lm.corpora)."""

    # model (see workbench.lm.model.GPTConfig); heads = width / head_dim
    width: int = field(default=32, metadata=bounds(ge=1))
    depth: int = field(default=2, metadata=bounds(ge=1))
    head_dim: int = field(default=8, metadata=bounds(ge=1))
    seq_len: int = field(default=32, metadata=bounds(ge=2))
    mlp_ratio: int = field(default=4, metadata=bounds(ge=1))
    parametrization: Literal["mup", "sp"] = "mup"
    base_width: int = field(default=32, metadata=bounds(ge=1))
    base_shapes: str = ""  # a .bsh file (workbench lm base-shapes); default: made from base_width
    tie_readout: bool = False
    init_std: float = field(default=0.02, metadata=bounds(gt=0))
    attn_mult: float = field(default=1.0, metadata=bounds(gt=0))
    output_mult: float = field(default=1.0, metadata=bounds(gt=0))
    readout_zero_init: bool = True  # muP readout: zero, or N(0, init_std^2) / width_mult (GPTConfig)
    frozen_ratio: float = field(default=0.0, metadata=bounds(ge=0))  # frozen MLP units / trainable ones
    frozen_seed: int = field(default=0, metadata=bounds(ge=0))
    mlp_kind: Literal["dense", "monarch"] = "dense"
    monarch_blocks: int = field(default=4, metadata=bounds(ge=1))  # for mlp_kind: monarch
    # data
    corpus: Literal["markov", "stdlib", "file"] = "markov"
    corpus_path: str = ""  # for corpus: file
    corpus_seed: int = 0  # Markov source seed
    markov_order: int = field(default=2, metadata=bounds(ge=1))  # order 1 is learnt in far fewer steps
    markov_alphabet: int = field(default=16, metadata=bounds(ge=2, le=256))
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
            raise ConfigError(f"width = {self.width} is not divisible by head_dim = {self.head_dim}; "
                              f"choose a width that is a multiple of {self.head_dim}")
        if self.base_shapes and self.parametrization != "mup":
            raise ConfigError(f"base_shapes = {self.base_shapes!r} is for parametrization 'mup' only; "
                              f"remove it or set parametrization: mup")
        if self.corpus == "file" and not self.corpus_path:
            raise ConfigError("corpus = 'file' needs corpus_path (a text file, uint16 .bin or nanoGPT directory)")
        if self.mlp_kind == "monarch":  # checked here so a sweep fails before anything is submitted
            from workbench.lm.structured import monarch_size_error

            sizes = {"width": self.width, "mlp_hidden": self.mlp_ratio * self.width}
            if self.parametrization == "mup":
                sizes["base_width"] = self.base_width
            problem = monarch_size_error(self.monarch_blocks, **sizes)
            if problem:
                raise ConfigError(problem)

    def gpt_config(self):
        from workbench.lm.model import GPTConfig

        return GPTConfig(vocab_size=256, width=self.width, depth=self.depth, heads=self.width // self.head_dim,
                         seq_len=self.seq_len, mlp_ratio=self.mlp_ratio, parametrization=self.parametrization,
                         tie_readout=self.tie_readout, base_width=self.base_width, init_std=self.init_std,
                         attn_mult=self.attn_mult, output_mult=self.output_mult,
                         readout_zero_init=self.readout_zero_init,
                         frozen_ratio=self.frozen_ratio, frozen_seed=self.frozen_seed, mlp_kind=self.mlp_kind,
                         monarch_blocks=self.monarch_blocks)


def make_optimization(config: GPTLMConfig, model, total_steps: int):
    """(optimizer, scheduler) for `model`: MuAdamW/MuSGD or AdamW/SGD (workbench.lm.model) and a
    warmup-cosine schedule that scales each group's own LR, so muP's per-group ratios survive."""
    from workbench.lm.model import make_optimizer, relative_lr_scheduler, warmup_cosine

    extra = {"betas": (0.9, config.beta2)} if config.optimizer == "adamw" else {}
    optimizer = make_optimizer(model, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, **extra)
    total = config.lr_decay_steps or total_steps
    scheduler = relative_lr_scheduler(optimizer, warmup_cosine(max(config.warmup_steps, 1), total,
                                                               config.min_lr_factor))
    return optimizer, scheduler


def clip_gradients(config: GPTLMConfig, model) -> None:
    """Clip the global gradient norm to `grad_clip` (frozen doping buffers have no gradient)."""
    if config.grad_clip > 0:
        import torch

        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)


def count_params(model) -> dict[str, int]:
    """Parameter counts and training FLOPs per token of a workbench.lm.model.GPT.

    - ``params``: trainable non-embedding parameters (no wte, wpe, vocabulary readout);
    - ``params_total``: all trainable parameters (shared weights once);
    - ``params_frozen``: frozen doping weights (buffers, workbench.lm.doping);
    - ``flops_per_token`` = 6 · (trainable matmul weights, readout included, wte/wpe lookups not)
      + 4 · params_frozen + 12 · depth · width · seq_len (attention scores and values, nanoGPT's
      `estimate_mfu`); reference note §2.6. A tied readout is a matmul too and counts once.
    """
    from torch import nn

    from workbench.lm.doping import frozen_buffers
    from workbench.lm.structured import MonarchLinear

    total = sum(p.numel() for p in model.parameters())
    seen, embed = set(), 0
    for name, p in model.named_parameters():
        if name in EMBEDDING_PARAMS and id(p) not in seen:
            seen.add(id(p))
            embed += p.numel()
    frozen = sum(b.numel() for _, b in frozen_buffers(model))
    matmul = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):  # includes mup's MuReadout / MuSharedReadout
            matmul += module.weight.numel() if module.weight.requires_grad else 0
        elif isinstance(module, MonarchLinear):
            matmul += sum(p.numel() for p in module.parameters() if p.requires_grad)
    config = model.config
    attention = 12 * config.depth * config.width * config.seq_len
    return {"params": total - embed, "params_total": total, "params_frozen": frozen,
            "flops_per_token": 6 * matmul + 4 * frozen + attention}


def load_corpus(config: GPTLMConfig):
    from workbench.lm import corpora

    if config.corpus == "markov":
        corpus = corpora.markov_corpus(config.corpus_tokens, max(config.corpus_tokens // 16, 4 * config.seq_len),
                                       alphabet=config.markov_alphabet, order=config.markov_order,
                                       seed=config.corpus_seed)
    elif config.corpus == "stdlib":
        corpus = corpora.stdlib_corpus(max_bytes=config.corpus_tokens)
    else:
        corpus = corpora.file_corpus(Path(config.corpus_path), seq_len=config.seq_len)
    corpus.check_length(config.seq_len)
    return corpus


def build_model_for(config: GPTLMConfig):
    """The GPT of `config`, with base shapes from its `.bsh` file when one is named."""
    from workbench.lm.model import build_model

    return build_model(config.gpt_config(), base=config.base_shapes or None)


def preflight_gpt_lm(config: GPTLMConfig) -> None:
    """What `jobs` checks before submitting: a user corpus file that exists and is long enough,
    and a base-shape file that describes this model (InputError naming the problem)."""
    if config.corpus == "file":
        load_corpus(config)
    if config.base_shapes:
        from workbench.lm.model import check_base_shapes

        check_base_shapes(config.gpt_config(), config.base_shapes)


def build_gpt_lm(config: GPTLMConfig, seed: int):
    return _module_class()(config, seed)


@functools.lru_cache(maxsize=None)
def _module_class():
    import lightning.pytorch as pl
    import numpy as np
    import torch

    class StepBatches(torch.utils.data.IterableDataset):
        """This rank's share of the global batch for steps start, start+1, ..."""

        def __init__(self, corpus, config: GPTLMConfig, seed: int, start: int, rank: int, world: int):
            super().__init__()
            self.corpus, self.config, self.seed = corpus, config, seed
            self.start, self.rank, self.world = start, rank, world

        def __iter__(self):
            step = self.start
            while True:
                x, y = self.corpus.sample_batch("train", self.config.batch_size, self.config.seq_len,
                                                np.random.default_rng([self.seed, step]))
                yield x[self.rank::self.world], y[self.rank::self.world]
                step += 1

    class GPTLM(pl.LightningModule):
        def __init__(self, config: GPTLMConfig, seed: int) -> None:
            super().__init__()
            self.config, self.seed = config, seed
            self.model = build_model_for(config)
            self.counts = count_params(self.model)
            self.corpus = load_corpus(config)
            self.val_losses: dict[int, float] = {}

        def forward(self, idx, targets=None):
            return self.model(idx, targets)

        def train_dataloader(self):
            world, rank = self.trainer.world_size, self.trainer.global_rank
            if self.config.batch_size % world:
                raise ValueError(f"batch_size {self.config.batch_size} is not divisible by the "
                                 f"{world} training processes")
            batches = StepBatches(self.corpus, self.config, self.seed, int(self.trainer.global_step), rank, world)
            return torch.utils.data.DataLoader(batches, batch_size=None)

        @torch.no_grad()
        def evaluate(self) -> float:
            """Mean loss over the same `eval_batches` held-out batches every time."""
            was_training = self.model.training
            self.model.eval()
            rng = np.random.default_rng([self.config.corpus_seed, 12345])
            total = 0.0
            for _ in range(self.config.eval_batches):
                x, y = self.corpus.sample_batch("val", self.config.batch_size, self.config.seq_len, rng)
                _, loss = self.model(x.to(self.device), y.to(self.device))
                total += float(loss)
            self.model.train(was_training)
            return total / self.config.eval_batches

        def training_step(self, batch, batch_idx):
            step = int(self.trainer.global_step)  # optimizer steps taken so far
            if step % self.config.eval_every == 0:
                self.val_losses[step] = self.evaluate()
            _, loss = self.model(*batch)
            return loss

        def on_train_end(self) -> None:
            step = int(self.trainer.global_step)
            if step not in self.val_losses:
                self.val_losses[step] = self.evaluate()

        def extra_metrics(self, ds):
            """Validation loss, parameter counts and entropy rate, added to metrics.nc (harness hook)."""
            steps = sorted(self.val_losses)
            values = np.asarray([self.val_losses[s] for s in steps], dtype=float)
            ds = ds.assign_coords(eval_step=np.asarray(steps, dtype=np.int64))
            ds["val_loss"] = ("eval_step", values)
            ds["val_loss"].attrs["description"] = (f"mean held-out loss over {self.config.eval_batches} "
                                                   "fixed batches after eval_step optimizer steps")
            ds["final_val_loss"] = ((), values[-1] if values.size else np.nan)
            ds["params"] = ((), np.int64(self.counts["params"]))
            ds["params"].attrs["description"] = "non-embedding parameters (no wte, wpe, vocabulary readout)"
            ds["params_total"] = ((), np.int64(self.counts["params_total"]))
            ds["params_frozen"] = ((), np.int64(self.counts["params_frozen"]))
            ds["params_frozen"].attrs["description"] = "frozen random doping weights (buffers, not trained)"
            ds["flops_per_token"] = ((), np.int64(self.counts["flops_per_token"]))
            ds["flops_per_token"].attrs["description"] = ("training FLOPs per token: 6 x trainable matmul weights "
                                                          "+ 4 x frozen weights + 12 depth width seq_len")
            ds["tokens_per_step"] = ((), np.int64(self.config.batch_size * self.config.seq_len))
            ds["tokens_per_step"].attrs["description"] = "tokens per optimizer step (batch_size x seq_len)"
            rate = self.corpus.entropy_rate
            ds["entropy_rate"] = ((), float("nan") if rate is None else float(rate))
            return ds

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["gpt_lm_val_losses"] = {int(k): float(v) for k, v in self.val_losses.items()}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.val_losses = {int(k): float(v) for k, v in checkpoint.get("gpt_lm_val_losses", {}).items()}

        def on_before_optimizer_step(self, optimizer) -> None:
            clip_gradients(self.config, self.model)

        def configure_optimizers(self):
            optimizer, scheduler = make_optimization(self.config, self.model, int(self.trainer.max_steps))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return GPTLM


register_trainable("gpt_lm", GPTLMConfig, build_gpt_lm,
                   "byte-level muP/SP GPT on the Markov, stdlib or a file corpus (workbench.lm)",
                   preflight=preflight_gpt_lm)
