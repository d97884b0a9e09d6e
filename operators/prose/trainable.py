"""The `prose` trainable: the PROSE transformer (operators.prose.model) trained through workbench.train.

    kind: prose            # in a job config (jobs/configs/prose_tiny.yaml, prose_paper.yaml)

One training sample (reference note prose.md §2.3-2.6):

- data input: the first ``input_len`` = 64 of the 192 noisy points, (t, u) per token (§2.1);
- symbol input: the target's skeleton (every constant -> ``<PLACEHOLDER>``, §2.4), corrupted per
  sample and per step (one term added with p = 0.15, one deleted with p = 0.15, §2.4);
- targets: the noisy trajectory at the other 128 times (targets are noisy, §2.4 and §5.1) and the
  target tokens with true coefficients; loss 6 · relative squared L² + cross-entropy (§2.6).

The data come either from `operators.odes.generate`, in process, cached per process
(``data: ""``, ``families``, ``n_train``/``n_val`` per family, ``data_seed``), or from a
`workbench prose make-data` directory (``data: PATH``: its train split). Validation is then the
val split of ``val_data`` or else of ``data``; if ``data`` has none, the last ``n_val`` per family
of its train split are held out. Sympy runs once per sample, at load: the corruption of every
step works on precomputed term lists (operators.prose.skeleton).

Each step's batch and corruption come from a generator seeded by (TrainConfig.seed, step), so a
resumed run sees what an uninterrupted one would. Every ``eval_every`` steps (and after the last)
the trajectory and symbol losses on the first ``eval_samples`` validation samples, with the test
corruption drawn once from seed 42 (§5.9), are recorded; metrics.nc then also holds
``val_data_loss``, ``val_symbol_loss`` (over ``eval_step``), their final values and the
parameter counts per §2.1 block.

Optimisation follows §3: AdamW (0.9, 0.999, eps 1e-8, decoupled weight decay 1e-4), LR linear
from 1e-7 to ``lr`` over ``warmup_steps`` then ``lr · sqrt(warmup_steps / step)``, gradient-norm
clip 1.0; bf16 autocast on GPU comes from the harness.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workbench.config import bounds
from workbench.errors import ConfigError, InputError
from workbench.train import register_trainable

__all__ = ["ProseData", "ProseTrainableConfig", "build_prose", "inverse_sqrt_lr", "load_data",
           "make_batch", "model_config", "prepare_data"]

TEST_CORRUPTION_SEED = 42  # §5.9: the test corruption is drawn once with seed 42


@dataclass(frozen=True)
class ProseTrainableConfig:
    """PROSE model sizes (defaults: the tiny CPU size of ProseConfig.tiny), data and optimiser."""

    # model (operators.prose.model.ProseConfig; §2.1 paper sizes: 512/8/2048, layers 2/4/8/8/8)
    hidden: int = field(default=64, metadata=bounds(ge=1))
    heads: int = field(default=4, metadata=bounds(ge=1))
    ffn: int = field(default=128, metadata=bounds(ge=1))
    data_encoder_layers: int = field(default=1, metadata=bounds(ge=1))
    symbol_encoder_layers: int = field(default=1, metadata=bounds(ge=1))
    fusion_layers: int = field(default=2, metadata=bounds(ge=1))
    data_decoder_layers: int = field(default=2, metadata=bounds(ge=1))
    symbol_decoder_layers: int = field(default=2, metadata=bounds(ge=1))
    d_max: int = field(default=3, metadata=bounds(ge=1, le=5))  # 3 for the 3-D set, 5 for all 15 (§5.4)
    max_symbol_len: int = field(default=150, metadata=bounds(ge=1))  # §2.5
    data_only: bool = False  # ablation: no symbol input, no symbol decoder (§2.1)
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
    # or "solve_ivp" (the reference's per-trajectory scipy solve)
    engine: Literal["batched", "solve_ivp"] = "batched"
    input_len: int = field(default=64, metadata=bounds(ge=1))  # §2.1: 64 of the 192 points in
    add_term_prob: float = field(default=0.15, metadata=bounds(ge=0, le=1))  # §2.4
    miss_term_prob: float = field(default=0.15, metadata=bounds(ge=0, le=1))
    # optimisation (§3)
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
        if self.hidden % self.heads:
            raise ConfigError(f"hidden = {self.hidden} is not divisible by heads = {self.heads}; "
                              f"choose a hidden size that is a multiple of {self.heads}")
        if self.add_term_prob + self.miss_term_prob > 1:
            raise ConfigError(f"add_term_prob + miss_term_prob = {self.add_term_prob + self.miss_term_prob} "
                              "must be <= 1")
        if self.val_data and not self.data:
            raise ConfigError("val_data is set but data is not; give data: PATH too, or neither")
        if not self.data:
            from operators.odes import FAMILIES, family_names

            try:
                names = family_names(self.families)
            except InputError as error:
                raise ConfigError(f"families = {self.families!r}: {error}") from None
            widest = max(FAMILIES[n].dim for n in names)
            if widest > self.d_max:
                raise ConfigError(f"families include a {widest}-dimensional system but d_max = {self.d_max}; "
                                  f"set d_max: {widest}")


def model_config(config: ProseTrainableConfig):
    """The ProseConfig of `config` (vocabulary: tokens.Vocabulary(max_dim=d_max))."""
    from operators.prose.model import ProseConfig
    from operators.prose.tokens import Vocabulary

    return ProseConfig(hidden=config.hidden, heads=config.heads, ffn=config.ffn,
                       data_encoder_layers=config.data_encoder_layers,
                       symbol_encoder_layers=config.symbol_encoder_layers,
                       fusion_layers=config.fusion_layers, data_decoder_layers=config.data_decoder_layers,
                       symbol_decoder_layers=config.symbol_decoder_layers, d_max=config.d_max,
                       vocab_size=Vocabulary(max_dim=config.d_max).size,
                       max_symbol_len=config.max_symbol_len, data_only=config.data_only)


def inverse_sqrt_lr(step: int, lr: float, warmup_steps: int, warmup_init_lr: float = 1e-7) -> float:
    """§3 `adam_inverse_sqrt`: linear warmup_init_lr -> lr over warmup_steps, then lr·sqrt(warmup/step).

    1e-4 at step 20 000 and 1e-4·sqrt(1/2) ≈ 7.07e-5 at 40 000 with the paper settings.
    """
    if step < warmup_steps:
        return warmup_init_lr + step * (lr - warmup_init_lr) / warmup_steps
    return lr * math.sqrt(warmup_steps / step)


# --------------------------------------------------------------------------------------------
# Data: arrays plus what the per-step corruption needs, prepared once per sample
# --------------------------------------------------------------------------------------------


@dataclass
class ProseData:
    """Trajectories padded to d_max and, per sample, target ids and skeleton terms.

    ``terms[i]`` are the per-component ``(sign, skeleton ids)`` terms of sample i
    (operators.prose.skeleton), ``target_ids[i]`` the target's ids with true coefficients.
    """

    t: np.ndarray  # (T,)
    noisy: np.ndarray  # (n, T, d_max) float32
    clean: np.ndarray  # (n, T, d_max) float32
    dim: np.ndarray  # (n,)
    family: np.ndarray  # (n,) index into families
    families: tuple[str, ...]
    tokens: list[list[str]]
    target_ids: list[list[int]] = field(default_factory=list)
    terms: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dim)

    def subset(self, rows) -> ProseData:
        rows = np.asarray(rows, dtype=np.int64)
        return ProseData(self.t, self.noisy[rows], self.clean[rows], self.dim[rows], self.family[rows],
                         self.families, [self.tokens[i] for i in rows],
                         [self.target_ids[i] for i in rows] if self.target_ids else [],
                         [self.terms[i] for i in rows] if self.terms else [])


def _family_tokens(raw: dict) -> list[list[str]]:
    """Target tokens of generate()'s output, one sympy -> tokens conversion per sample."""
    from operators.odes import FAMILIES
    from operators.prose.tokens import tokenize

    out = []
    for index, params in zip(raw["family"], raw["params"]):
        family = FAMILIES[raw["families"][int(index)]]
        out.append(tokenize(family.expressions(params[: len(family.params)])))
    return out


def prepare_data(raw: dict, d_max: int, *, source: str = "data") -> ProseData:
    """generate()/load_dataset() output -> ProseData (tokens made from params when absent)."""
    noisy, clean = np.asarray(raw["noisy"]), np.asarray(raw.get("clean", raw["noisy"]))
    if noisy.ndim != 3:
        raise InputError(f"{source}: trajectories must have shape (n, T, d), got {noisy.shape}")
    if noisy.shape[2] > d_max:
        raise InputError(f"{source} has {noisy.shape[2]}-dimensional states but d_max = {d_max}; "
                         f"set d_max: {noisy.shape[2]}")
    pad = ((0, 0), (0, 0), (0, d_max - noisy.shape[2]))
    tokens = raw.get("tokens")
    if tokens is None:
        tokens = _family_tokens(raw)
    tokens = [t.split() if isinstance(t, str) else list(t) for t in tokens]
    if len(tokens) != noisy.shape[0]:
        raise InputError(f"{source}: {len(tokens)} token lists for {noisy.shape[0]} trajectories")
    data = ProseData(np.asarray(raw["t"], dtype=np.float64), np.pad(noisy, pad).astype(np.float32),
                     np.pad(clean, pad).astype(np.float32), np.asarray(raw["dim"], dtype=np.int64),
                     np.asarray(raw["family"], dtype=np.int64), tuple(raw["families"]), tokens)
    from operators.prose.skeleton import SkeletonCorruptor
    from operators.prose.tokens import Vocabulary

    vocabulary = Vocabulary(max_dim=d_max)
    corruptor = SkeletonCorruptor(vocabulary)
    data.target_ids = [vocabulary.encode(t) for t in tokens]
    data.terms = [corruptor.prepare(t) for t in tokens]
    return data


_PREPARED: dict = {}  # in-process data sets, generated and prepared once per process


@functools.lru_cache(maxsize=4)
def _loaded(path: str, split: str, d_max: int) -> ProseData:
    from operators.prose.dataset import load_dataset  # written alongside; imported when used

    return prepare_data(load_dataset(path, split), d_max, source=f"{path} ({split} split)")


def _has_split(path: str, split: str) -> bool:
    """Whether a make-data directory's manifest lists shards of `split` (False if unreadable)."""
    import json

    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
        return any(record["split"] == split for record in manifest["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _hold_out(data: ProseData, n_val: int) -> tuple[ProseData, ProseData]:
    """Split round-robin data: the last n_val samples of every family are validation."""
    val_rows = []
    for index in range(len(data.families)):
        rows = np.flatnonzero(data.family == index)
        val_rows += list(rows[-n_val:]) if len(rows) > n_val else []
    is_val = np.zeros(len(data), dtype=bool)
    is_val[val_rows] = True
    if is_val.all() or not is_val.any():
        raise InputError(f"cannot hold out n_val = {n_val} samples per family from {len(data)} samples; "
                         "lower n_val or give val_data")
    return data.subset(np.flatnonzero(~is_val)), data.subset(np.flatnonzero(is_val))


def load_data(config: ProseTrainableConfig) -> tuple[ProseData, ProseData]:
    """(train, validation) data of `config`; in-process sets are generated once per process."""
    if not config.data:
        key = (config.families, config.n_train + config.n_val, config.data_seed, config.data_workers, config.engine)
        if (key, config.d_max) not in _PREPARED:
            from operators.odes import generate

            raw = generate(config.families, key[1], config.data_seed, workers=config.data_workers,
                           engine=config.engine)
            _PREPARED[(key, config.d_max)] = _hold_out(prepare_data(raw, config.d_max, source="generated data"),
                                                       config.n_val)
        train, val = _PREPARED[(key, config.d_max)]
    elif config.val_data or _has_split(config.data, "val"):
        train, val = _loaded(config.data, "train", config.d_max), _loaded(config.val_data or config.data, "val",
                                                                         config.d_max)
    else:
        train, val = _hold_out(_loaded(config.data, "train", config.d_max), config.n_val)
    for name, part in (("data", train), ("validation data", val)):
        if config.input_len >= len(part.t):
            raise InputError(f"{name} has {len(part.t)} time points; input_len = {config.input_len} "
                             "must leave query times")
    return train, val


def preflight_prose(config: ProseTrainableConfig) -> None:
    """Checked before a job is submitted: data directories exist and hold every shard."""
    if config.data:
        from operators.prose.dataset import load_dataset

        for path in filter(None, (config.data, config.val_data)):
            if not Path(path).exists():
                raise InputError(f"data directory {path} does not exist; make it with `workbench prose make-data`")
            load_dataset(path)  # InputError naming a missing or bad shard


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def pad_ids(sequences, pad_id: int, *, bos_id: int | None = None, eos_id: int | None = None):
    """Right-padded (ids, mask) numpy arrays; optional <BOS> ... <EOS> wrapping (§2.6)."""
    head = [bos_id] if bos_id is not None else []
    tail = [eos_id] if eos_id is not None else []
    length = max(len(s) for s in sequences) + len(head) + len(tail)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        ids[row, : len(s) + len(head) + len(tail)] = head + list(s) + tail
    return ids, ids != pad_id


def make_batch(data: ProseData, rows, symbol_inputs, *, input_len: int, d_max: int, vocabulary,
               with_symbols: bool) -> dict:
    """Tensors of one batch. `symbol_inputs` are the (corrupted) skeleton ids of `rows`."""
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    t = data.t.astype(np.float32)
    batch = {
        "data_times": torch.from_numpy(np.broadcast_to(t[:input_len], (len(rows), input_len)).copy()),
        "data_values": torch.from_numpy(data.noisy[rows, :input_len]),
        "query_times": torch.from_numpy(t[input_len:].copy()),
        "target": torch.from_numpy(data.noisy[rows, input_len:]),  # noisy targets (§2.4, §5.1)
        "dim_mask": torch.from_numpy(np.arange(d_max)[None, :] < data.dim[rows][:, None]),
    }
    if with_symbols:
        ids, mask = pad_ids(symbol_inputs, vocabulary.pad_id)
        target, _ = pad_ids([data.target_ids[i] for i in rows], vocabulary.pad_id,
                            bos_id=vocabulary.bos_id, eos_id=vocabulary.eos_id)
        batch.update(symbol_ids=torch.from_numpy(ids), symbol_mask=torch.from_numpy(mask),
                     target_ids=torch.from_numpy(target))
    return batch


def corrupted_inputs(data: ProseData, rows, corruptor, rng: np.random.Generator) -> list[list[int]]:
    """One §2.4 corruption draw per row, in row order, from `rng`."""
    return [corruptor.corrupt(data.terms[i], rng, int(data.dim[i]))[0] for i in rows]


def forward_losses(model, batch: dict):
    """ProseLosses of one batch (the trajectory in float32 for the relative L², §2.6)."""
    from operators.prose.model import ProseOutput, prose_loss

    symbols = "symbol_ids" in batch
    output = model(batch["data_times"], batch["data_values"], batch.get("symbol_ids"), batch.get("symbol_mask"),
                   query_times=batch["query_times"], target_ids=batch.get("target_ids") if symbols else None)
    output = ProseOutput(output.trajectory.float(), output.symbol_logits)
    return prose_loss(output, batch["target"].float(), batch["dim_mask"], batch.get("target_ids"),
                      pad_id=model.cfg.pad_id)


# --------------------------------------------------------------------------------------------
# The LightningModule
# --------------------------------------------------------------------------------------------


def build_prose(config: ProseTrainableConfig, seed: int):
    return _module_class()(config, seed)


@functools.lru_cache(maxsize=None)
def _module_class():
    import lightning.pytorch as pl
    import torch

    from operators.prose.model import ProseModel, count_parameters
    from operators.prose.skeleton import SkeletonCorruptor
    from operators.prose.tokens import Vocabulary

    class StepBatches(torch.utils.data.IterableDataset):
        """This rank's share of the global batch for steps start, start+1, ... (rng from (seed, step)).

        With DataLoader workers, worker k of W yields steps start+k, start+k+W, ...; the loader
        takes one batch from each worker in turn, so the batches arrive in step order.
        """

        def __init__(self, data: ProseData, config: ProseTrainableConfig, corruptor, seed: int, start: int,
                     rank: int, world: int):
            super().__init__()
            self.data, self.config, self.corruptor, self.seed = data, config, corruptor, seed
            self.start, self.rank, self.world = start, rank, world

        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            step, stride = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
            c, symbols = self.config, not self.config.data_only
            mine = slice(self.rank, None, self.world)
            while True:
                rng = np.random.default_rng([self.seed, step])
                rows = rng.integers(len(self.data), size=c.batch_size)
                inputs = corrupted_inputs(self.data, rows, self.corruptor, rng) if symbols else None
                yield make_batch(self.data, rows[mine], inputs[mine] if symbols else None, input_len=c.input_len,
                                 d_max=c.d_max, vocabulary=self.corruptor.vocabulary, with_symbols=symbols)
                step += stride

    class Prose(pl.LightningModule):
        def __init__(self, config: ProseTrainableConfig, seed: int) -> None:
            super().__init__()
            self.config, self.seed = config, seed
            self.model = ProseModel(model_config(config))
            self.counts = count_parameters(self.model)
            self.with_symbols = not config.data_only
            self.vocabulary = Vocabulary(max_dim=config.d_max)
            self.corruptor = SkeletonCorruptor(self.vocabulary, config.add_term_prob, config.miss_term_prob)
            self.train_data, val = load_data(config)
            self.val_data = val.subset(np.arange(min(config.eval_samples, len(val))))
            # §5.9: the validation corruption is drawn once, from seed 42.
            self.val_inputs = corrupted_inputs(self.val_data, range(len(self.val_data)), self.corruptor,
                                               np.random.default_rng(TEST_CORRUPTION_SEED))
            self.val_losses: dict[int, tuple[float, float]] = {}

        def train_dataloader(self):
            world, rank = self.trainer.world_size, self.trainer.global_rank
            if self.config.batch_size % world:
                raise ValueError(f"batch_size {self.config.batch_size} is not divisible by the "
                                 f"{world} training processes")
            batches = StepBatches(self.train_data, self.config, self.corruptor, self.seed,
                                  int(self.trainer.global_step), rank, world)
            workers = self.config.loader_workers
            return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers,
                                               persistent_workers=False, pin_memory=False,
                                               prefetch_factor=4 if workers else None)

        @torch.no_grad()
        def evaluate(self) -> tuple[float, float]:
            """(trajectory loss, symbol loss) on the fixed validation subset, sample-weighted means."""
            was_training = self.model.training
            self.model.eval()
            totals, n = np.zeros(2), len(self.val_data)
            for start in range(0, n, self.config.batch_size):
                rows = np.arange(start, min(n, start + self.config.batch_size))
                batch = make_batch(self.val_data, rows, [self.val_inputs[i] for i in rows],
                                   input_len=self.config.input_len, d_max=self.config.d_max,
                                   vocabulary=self.vocabulary, with_symbols=self.with_symbols)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                losses = forward_losses(self.model, batch)
                sym = float("nan") if losses.symbol is None else float(losses.symbol)
                totals += len(rows) * np.array([float(losses.trajectory), sym])
            self.model.train(was_training)
            return float(totals[0] / n), float(totals[1] / n)

        def training_step(self, batch, batch_idx):
            step = int(self.trainer.global_step)
            if step % self.config.eval_every == 0:
                self.val_losses[step] = self.evaluate()
            return forward_losses(self.model, batch).total

        def on_train_end(self) -> None:
            step = int(self.trainer.global_step)
            if step not in self.val_losses:
                self.val_losses[step] = self.evaluate()

        def extra_metrics(self, ds):
            """Validation losses and parameter counts, added to metrics.nc (harness hook)."""
            steps = sorted(self.val_losses)
            values = np.asarray([self.val_losses[s] for s in steps], dtype=float).reshape(-1, 2)
            ds = ds.assign_coords(eval_step=np.asarray(steps, dtype=np.int64))
            ds["val_data_loss"] = ("eval_step", values[:, 0])
            ds["val_data_loss"].attrs["description"] = (
                f"relative squared L2 of the trajectory (§2.6) on {len(self.val_data)} fixed validation "
                "samples (noisy targets), after eval_step optimizer steps")
            ds["val_symbol_loss"] = ("eval_step", values[:, 1])
            ds["val_symbol_loss"].attrs["description"] = (
                "teacher-forced token cross-entropy (§2.6) on the same samples, skeleton corruption "
                "drawn once with seed 42 (§5.9); NaN for data_only")
            ds["final_val_data_loss"] = ((), values[-1, 0] if len(values) else np.nan)
            ds["final_val_symbol_loss"] = ((), values[-1, 1] if len(values) else np.nan)
            ds["params"] = ((), np.int64(self.counts["total"]))
            ds["params"].attrs["description"] = "trainable parameters (a tied weight once)"
            for block, count in self.counts.items():
                if block != "total":
                    ds[f"params_{block}"] = ((), np.int64(count))
            ds["samples_per_step"] = ((), np.int64(self.config.batch_size))
            return ds

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["prose_val_losses"] = {int(k): [float(x) for x in v] for k, v in self.val_losses.items()}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.val_losses = {int(k): tuple(float(x) for x in v)
                               for k, v in checkpoint.get("prose_val_losses", {}).items()}

        def on_before_optimizer_step(self, optimizer) -> None:
            if self.config.grad_clip > 0:  # §3: gradient-norm clip 1.0
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)

        def configure_optimizers(self):
            c = self.config
            optimizer = torch.optim.AdamW(self.model.parameters(), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps,
                                          weight_decay=c.weight_decay)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: inverse_sqrt_lr(step, c.lr, c.warmup_steps, c.warmup_init_lr) / c.lr)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    Prose.StepBatches = StepBatches
    return Prose


register_trainable("prose", ProseTrainableConfig, build_prose,
                   "PROSE multimodal transformer on ODE trajectories + symbolic skeletons (operators.prose)",
                   preflight=preflight_prose)
