"""The `gpt_lm` LightningModule: the muP/SP GPT of workbench.lm.model on an offline corpus.

Each step's global batch comes from `workbench.batches` (seeded by (TrainConfig.seed, step)), so a
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
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from workbench.batches import step_loader
from workbench.callbacks import PeriodicEvaluation
from workbench.lm.config import GPTLMConfig
from workbench.lm.corpora import load_corpus
from workbench.lm.doping import frozen_buffers
from workbench.lm.model import build_model, make_optimizer, relative_lr_scheduler, warmup_cosine
from workbench.lm.structured import MonarchLinear

__all__ = ["GPTLM", "build_model_for", "clip_gradients", "count_params", "make_optimization"]

EMBEDDING_PARAMS = ("wte.weight", "wpe.weight", "lm_head.weight")
EVAL_STREAM = 12345  # the held-out batches come from rng [corpus_seed, EVAL_STREAM], the same every time


def build_model_for(config: GPTLMConfig):
    """The GPT of `config`, with base shapes from its `.bsh` file when one is named."""
    return build_model(config.gpt_config(), base=config.base_shapes or None)


def make_optimization(config: GPTLMConfig, model, total_steps: int):
    """(optimizer, scheduler) for `model`: MuAdamW/MuSGD or AdamW/SGD (workbench.lm.model) and a
    warmup-cosine schedule that scales each group's own LR, so muP's per-group ratios survive."""
    extra = {"betas": (0.9, config.beta2)} if config.optimizer == "adamw" else {}
    optimizer = make_optimizer(model, name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, **extra)
    total = config.lr_decay_steps or total_steps
    scheduler = relative_lr_scheduler(
        optimizer, warmup_cosine(max(config.warmup_steps, 1), total, config.min_lr_factor)
    )
    return optimizer, scheduler


def clip_gradients(config: GPTLMConfig, model) -> None:
    """Clip the global gradient norm to `grad_clip` (frozen doping buffers have no gradient)."""
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)


def count_params(model) -> dict[str, int]:
    """Parameter counts and training FLOPs per token of a workbench.lm.model.GPT.

    - ``params``: trainable non-embedding parameters (no wte, wpe, vocabulary readout);
    - ``params_total``: all trainable parameters (shared weights once);
    - ``params_frozen``: frozen doping weights (buffers, workbench.lm.doping);
    - ``flops_per_token`` = 6 · (trainable matmul weights, readout included, wte/wpe lookups not)
      + 4 · params_frozen + 12 · depth · width · seq_len (attention scores and values, as nanoGPT's
      `estimate_mfu`; Kaplan et al. 2020, Table 1). A frozen weight still costs the forward (2) and
      the input-gradient (2) matmuls but no weight gradient. A tied readout counts once.
    """
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
    return {
        "params": total - embed,
        "params_total": total,
        "params_frozen": frozen,
        "flops_per_token": 6 * matmul + 4 * frozen + attention,
    }


class GPTLM(pl.LightningModule):
    def __init__(self, config: GPTLMConfig, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        self.model = build_model_for(config)
        self.counts = count_params(self.model)
        self.corpus = load_corpus(config)
        self.evaluations: dict[int, float] = {}  # filled by PeriodicEvaluation

    def forward(self, idx, targets=None):
        return self.model(idx, targets)

    def draw(self, rng: np.random.Generator, step: int):
        """The global batch of `step`: (inputs, targets), each (batch_size, seq_len)."""
        return self.corpus.sample_batch("train", self.config.batch_size, self.config.seq_len, rng)

    def train_dataloader(self):
        return step_loader(self, self.draw, batch_size=self.config.batch_size)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the same `eval_batches` held-out batches every time."""
        was_training = self.model.training
        self.model.eval()
        rng = np.random.default_rng([self.config.corpus_seed, EVAL_STREAM])
        total = 0.0
        for _ in range(self.config.eval_batches):
            x, y = self.corpus.sample_batch("val", self.config.batch_size, self.config.seq_len, rng)
            _, loss = self.model(x.to(self.device), y.to(self.device))
            total += float(loss)
        self.model.train(was_training)
        return total / self.config.eval_batches

    def configure_callbacks(self):
        return [PeriodicEvaluation(self.config.eval_every)]

    def training_step(self, batch, batch_idx):
        _, loss = self.model(*batch)
        return loss

    def extra_metrics(self, ds):
        """Validation loss, parameter counts and entropy rate, added to metrics.nc (harness hook)."""
        steps = sorted(self.evaluations)
        values = np.asarray([self.evaluations[s] for s in steps], dtype=float)
        ds = ds.assign_coords(eval_step=np.asarray(steps, dtype=np.int64))
        ds["val_loss"] = ("eval_step", values)
        ds["val_loss"].attrs["description"] = (
            f"mean held-out loss over {self.config.eval_batches} fixed batches after eval_step optimizer steps"
        )
        ds["final_val_loss"] = ((), values[-1] if values.size else np.nan)
        ds["params"] = ((), np.int64(self.counts["params"]))
        ds["params"].attrs["description"] = "non-embedding parameters (no wte, wpe, vocabulary readout)"
        ds["params_total"] = ((), np.int64(self.counts["params_total"]))
        ds["params_frozen"] = ((), np.int64(self.counts["params_frozen"]))
        ds["params_frozen"].attrs["description"] = "frozen random doping weights (buffers, not trained)"
        ds["flops_per_token"] = ((), np.int64(self.counts["flops_per_token"]))
        ds["flops_per_token"].attrs["description"] = (
            "training FLOPs per token: 6 x trainable matmul weights + 4 x frozen weights + 12 depth width seq_len"
        )
        ds["tokens_per_step"] = ((), np.int64(self.config.batch_size * self.config.seq_len))
        ds["tokens_per_step"].attrs["description"] = "tokens per optimizer step (batch_size x seq_len)"
        rate = self.corpus.entropy_rate
        ds["entropy_rate"] = ((), float("nan") if rate is None else float(rate))
        return ds

    def on_before_optimizer_step(self, optimizer) -> None:
        clip_gradients(self.config, self.model)

    def configure_optimizers(self):
        optimizer, scheduler = make_optimization(self.config, self.model, int(self.trainer.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
