"""Learning-rate transfer across widths: the test muP exists to pass and SP is expected to fail.

Protocol (after EleutherAI's nanoGPT-mup `mutransfer_lr` runs): for every width and every learning
rate on a log2 grid, train the `gpt_lm` model for a fixed number of steps with the same schedule,
seeds and batches, and record the held-out loss. The optimum per width is the grid argmin refined by
a parabola in log2 η through it and its two neighbours; transfer holds when log2 η*(w) stays within
±1 of log2 η*(base) over the width range. At the transferred rate, loss must fall with width
("wider is better", Tensor Programs V).

The runs are short and many, so they go through `train_steps`, a plain PyTorch loop that does
what the Lightning trainable does (same model, optimizer, relative warmup-cosine schedule, batch
stream and evaluation) without a process or a Trainer per run. Sweeps meant for a cluster use
`workbench jobs sweep` with the `gpt_lm` kind instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import types
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import xarray as xr

from workbench.batches import step_rng
from workbench.lm.config import GPTLMConfig
from workbench.lm.corpora import load_corpus
from workbench.lm.module import EVAL_STREAM, build_model_for, clip_gradients, count_params, make_optimization

__all__ = ["LRTransfer", "lr_sweep", "optimal_lr", "train_steps", "transfer_report"]


def train_steps(config: GPTLMConfig, steps: int, seed: int = 0, corpus=None) -> dict:
    """Train one model for `steps` optimizer steps; the held-out loss at the end and its counts.

    Batches, initialisation and evaluation batches are those of the `gpt_lm` kind
    (workbench.lm.module): step s draws from `step_rng(seed, s)`, evaluation from the fixed
    generator (corpus_seed, EVAL_STREAM); one process, no Lightning, for sweeps. A non-finite loss
    ends the run early with `val_loss = inf` (a diverged learning rate is a result in a sweep, not an
    error).
    """
    corpus = corpus if corpus is not None else load_corpus(config)
    torch.manual_seed(seed)
    model = build_model_for(config)
    optimizer, scheduler = make_optimization(config, model, steps)
    train_losses = []
    for step in range(steps):
        x, y = corpus.sample_batch("train", config.batch_size, config.seq_len, step_rng(seed, step))
        _, loss = model(x, y)
        if not torch.isfinite(loss):
            return {"val_loss": math.inf, "train_loss": math.inf, "steps": step, **count_params(model)}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(config, model)
        optimizer.step()
        scheduler.step()
        train_losses.append(float(loss.detach()))
    model.eval()
    rng = np.random.default_rng([config.corpus_seed, EVAL_STREAM])
    with torch.no_grad():
        val = [
            float(model(*corpus.sample_batch("val", config.batch_size, config.seq_len, rng))[1])
            for _ in range(config.eval_batches)
        ]
    tail = train_losses[-max(1, steps // 10) :]
    val_loss = float(np.mean(val))
    return {
        "val_loss": val_loss if math.isfinite(val_loss) else math.inf,
        "train_loss": float(np.mean(tail)) if tail else math.nan,
        "steps": steps,
        **count_params(model),
    }


def lr_sweep(
    config: GPTLMConfig,
    widths: Sequence[int],
    lrs: Sequence[float],
    *,
    steps: int,
    seeds: Iterable[int] = (0,),
    workers: int = 1,
    progress=None,
):
    """Held-out loss over a width × learning-rate × seed grid (an xarray Dataset).

    Every run uses `config` with only `width` and `lr` replaced, so the base width, schedule and
    data are shared. Variables: `val_loss`, `train_loss` (width, lr, seed); `params`,
    `params_total` (width). With `workers` > 1 the runs go to that many processes, one thread
    each; every run is the same single-threaded computation, so the numbers do not change.
    """
    seeds = list(seeds)
    points = [(i, j, k) for i in range(len(widths)) for j in range(len(lrs)) for k in range(len(seeds))]
    tasks = [(dataclasses.replace(config, width=int(widths[i]), lr=float(lrs[j])), steps, seeds[k])
             for i, j, k in points]  # fmt: skip
    shape = (len(widths), len(lrs), len(seeds))
    val, trn = np.full(shape, np.nan), np.full(shape, np.nan)
    params, total = np.zeros(len(widths), dtype=np.int64), np.zeros(len(widths), dtype=np.int64)
    with _pool(workers) as pool:
        # The widest runs first, so the pool ends with short ones.
        order = sorted(range(len(tasks)), key=lambda n: -widths[points[n][0]])
        for n, run in zip(order, pool.map(_train_point, [tasks[n] for n in order])):
            (i, j, k), (width, lr, seed) = points[n], (widths[points[n][0]], lrs[points[n][1]], seeds[points[n][2]])
            val[i, j, k], trn[i, j, k] = run["val_loss"], run["train_loss"]
            params[i], total[i] = run["params"], run["params_total"]
            if progress is not None:
                progress(width, lr, seed, run["val_loss"])
    coords = {"width": np.asarray(widths, dtype=np.int64), "lr": np.asarray(lrs, dtype=float), "seed": seeds}
    return xr.Dataset(
        {
            "val_loss": (("width", "lr", "seed"), val),
            "train_loss": (("width", "lr", "seed"), trn),
            "params": ("width", params),
            "params_total": ("width", total),
        },
        coords=coords,
        attrs={
            "parametrization": config.parametrization,
            "base_width": config.base_width,
            "steps": steps,
            "corpus": config.corpus,
            "optimizer": config.optimizer,
        },
    )


_CORPORA: dict = {}  # one corpus per process and corpus setting: every run of a sweep reads the same


def _train_point(task: tuple[GPTLMConfig, int, int]) -> dict:
    config, steps, seed = task
    key = (config.corpus, config.corpus_path, config.corpus_seed, config.markov_order, config.markov_alphabet,
           config.spectral_decay, config.spectral_scale, config.spectral_zipf, config.corpus_tokens,
           config.seq_len)  # fmt: skip
    if key not in _CORPORA:
        _CORPORA[key] = load_corpus(config)
    return train_steps(config, steps, seed, _CORPORA[key])


@contextlib.contextmanager
def _pool(workers: int):
    """map() in this process (workers = 1) or in `workers` single-threaded processes."""
    if workers <= 1:
        yield types.SimpleNamespace(map=map)
        return
    with concurrent.futures.ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield pool


def optimal_lr(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """argmin over a log-spaced grid, refined by a parabola in log2 η through the argmin and its
    neighbours; an optimum on the grid's edge is returned unrefined."""
    x = np.log2(np.asarray(lrs, dtype=float))
    y = np.asarray(losses, dtype=float)
    y = np.where(np.isfinite(y), y, np.inf)
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1 or not np.isfinite(y[i - 1 : i + 2]).all():
        return float(2.0 ** x[i])
    x0, x1, x2 = x[i - 1 : i + 2]
    y0, y1, y2 = y[i - 1 : i + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    if a <= 0:
        return float(2.0**x1)
    return float(2.0 ** np.clip(-b / (2 * a), x0, x2))


@dataclasses.dataclass(frozen=True)
class LRTransfer:
    """What one parametrisation's sweep says about transfer."""

    parametrization: str
    widths: list[int]
    best_lr: list[float]  # η*(w), parabola-refined
    on_edge: list[bool]  # the argmin sat on the grid's edge (η* is then only a bound)
    drift_octaves: float  # max |log2 η*(w) − log2 η*(w_0)|
    loss_at_transferred: list[float]  # seed-mean loss at the grid LR nearest η*(w_0)
    transferred_lr: float
    monotone: bool  # loss_at_transferred strictly decreasing in width

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def transfer_report(ds) -> LRTransfer:
    """η*(w), the drift in octaves, and loss vs width at the base width's optimum."""
    mean = ds["val_loss"].mean("seed")
    lrs = ds["lr"].values
    widths = [int(w) for w in ds["width"].values]
    best, edge = [], []
    for w in widths:
        losses = mean.sel(width=w).values
        best.append(optimal_lr(lrs, losses))
        i = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
        edge.append(i in (0, len(lrs) - 1))
    drift = float(max(abs(math.log2(b / best[0])) for b in best))
    j = int(np.argmin(np.abs(np.log2(lrs) - math.log2(best[0]))))
    at = [float(v) for v in mean.isel(lr=j).values]
    return LRTransfer(
        parametrization=str(ds.attrs.get("parametrization", "")),
        widths=widths,
        best_lr=best,
        on_edge=edge,
        drift_octaves=drift,
        loss_at_transferred=at,
        transferred_lr=float(lrs[j]),
        monotone=all(a > b for a, b in zip(at, at[1:])),
    )
