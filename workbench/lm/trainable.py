"""The `gpt_lm` trainable: the muP/SP GPT of workbench.lm.model trained through workbench.train.

    kind: gpt_lm           # in a job config (jobs/configs/lm_mup_tiny.yaml)

Each step's batch is drawn from a numpy generator seeded by (TrainConfig.seed, step), so a
resumed run sees the batches an uninterrupted one would. Every `eval_every` steps (and after the
last step) the mean loss over `eval_batches` fixed held-out batches is recorded; the harness's
metrics.nc then also holds

- ``val_loss`` over ``eval_step`` (loss after that many optimizer steps; step 0 = init),
- ``final_val_loss``, ``params`` (non-embedding parameter count N: everything but the token
  and position embeddings and the vocabulary readout), ``params_total``,
  ``entropy_rate`` (nats/token, NaN unless the corpus is the Markov source).

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
    tie_readout: bool = False
    init_std: float = field(default=0.02, metadata=bounds(gt=0))
    attn_mult: float = field(default=1.0, metadata=bounds(gt=0))
    output_mult: float = field(default=1.0, metadata=bounds(gt=0))
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
        if self.corpus == "file" and not self.corpus_path:
            raise ConfigError("corpus = 'file' needs corpus_path (a text file, uint16 .bin or nanoGPT directory)")

    def gpt_config(self):
        from workbench.lm.model import GPTConfig

        return GPTConfig(vocab_size=256, width=self.width, depth=self.depth, heads=self.width // self.head_dim,
                         seq_len=self.seq_len, mlp_ratio=self.mlp_ratio, parametrization=self.parametrization,
                         tie_readout=self.tie_readout, base_width=self.base_width, init_std=self.init_std,
                         attn_mult=self.attn_mult, output_mult=self.output_mult)


def count_params(model) -> dict[str, int]:
    """Non-embedding (`params`) and total (`params_total`) parameter counts; shared weights once."""
    total = sum(p.numel() for p in model.parameters())
    seen, embed = set(), 0
    for name, p in model.named_parameters():
        if name in EMBEDDING_PARAMS and id(p) not in seen:
            seen.add(id(p))
            embed += p.numel()
    return {"params": total - embed, "params_total": total}


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


def build_gpt_lm(config: GPTLMConfig, seed: int):
    return _module_class()(config, seed)


@functools.lru_cache(maxsize=None)
def _module_class():
    import lightning.pytorch as pl
    import numpy as np
    import torch

    from workbench.lm.model import build_model, make_optimizer, relative_lr_scheduler, warmup_cosine

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
            self.model = build_model(config.gpt_config())
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
            rate = self.corpus.entropy_rate
            ds["entropy_rate"] = ((), float("nan") if rate is None else float(rate))
            return ds

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["gpt_lm_val_losses"] = {int(k): float(v) for k, v in self.val_losses.items()}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.val_losses = {int(k): float(v) for k, v in checkpoint.get("gpt_lm_val_losses", {}).items()}

        def configure_optimizers(self):
            cfg = self.config
            optimizer = make_optimizer(self.model, name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay)
            total = cfg.lr_decay_steps or int(self.trainer.max_steps)
            scheduler = relative_lr_scheduler(optimizer, warmup_cosine(max(cfg.warmup_steps, 1), total,
                                                                       cfg.min_lr_factor))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return GPTLM


register_trainable("gpt_lm", GPTLMConfig, build_gpt_lm,
                   "byte-level muP/SP GPT on the Markov, stdlib or a file corpus (workbench.lm)")
