"""A short, real PROSE training run for `workbench bench gpu` (operators/prose/bench.py: gpu_stage).

PROSE (Liu, Zhang & Schaeffer 2023, "PROSE: Predicting Operators and Symbolic Expressions using
Multimodal Transformers"; the official code is github.com/felix-lyx/prose, folder `prose_ode/`)
trained on freshly generated ODE samples for a fixed wall time, with the loss of
`operators.prose.module` (6 · relative L² of the trajectory + token cross-entropy), its optimiser
(AdamW, gradient-norm clip) and its warm-up / inverse-square-root schedule, and the batches and
skeleton corruption of `operators.prose.samples`. It is not a `workbench.train` job: no Lightning,
no checkpoints, just steps until a deadline, so that the benchmark knows where its time goes.

Data: a **pool** is generated once, before training (`make_pool`), in chunks of the
`operators.odes.generate` batched engine plus `prepare_data`'s tokenization (~1 ms + ~2 ms per
sample on one core, the tokenization being the larger part); with ``workers`` > 0 the chunks are
made by that many spawned processes until a time limit, else in this process. Each step then
draws its rows from the pool, a fresh skeleton corruption for each row and fresh data noise on the
clean trajectories (`operators.prose.module.training_batch`, as the official `enc_dec_step`), so the
GPU never waits for an ODE solver; the CPU only pads and copies a batch (from pinned memory, asynchronously),
which overlaps the previous step's GPU work because nothing synchronises between log points.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from operators.odes import generate
from operators.prose.config import ProseTrainableConfig
from operators.prose.model import ProseModel, count_parameters
from operators.prose.module import (
    NOISE_STREAM,
    TEST_CORRUPTION_SEED,
    data_noise_gamma,
    forward_losses,
    inverse_sqrt_lr,
    training_batch,
)
from operators.prose.samples import ProseData, corrupted_inputs, make_batch, prepare_data
from operators.prose.skeleton import SkeletonCorruptor
from operators.prose.tokens import Vocabulary
from workbench.figures import new_figure

__all__ = ["bench_config", "loss_curve_figure", "make_pool", "save_figure", "train_for"]


# --------------------------------------------------------------------------------------------
# The pool of samples
# --------------------------------------------------------------------------------------------


def _chunk(families: str, per_family: int, seed: int, d_max: int) -> tuple[ProseData, float]:
    """One chunk of prepared samples (run in a worker process or in this one) and its seconds."""
    start = time.perf_counter()
    raw = generate(families, per_family, seed, engine="batched")
    return prepare_data(raw, d_max, source="generated data"), time.perf_counter() - start


def _concat(parts: list[ProseData]) -> ProseData:
    first = parts[0]
    if any(p.families != first.families for p in parts):  # generate() orders families by name list
        raise RuntimeError("pool chunks list different families")
    return ProseData(
        first.t,
        np.concatenate([p.noisy for p in parts]),
        np.concatenate([p.clean for p in parts]),
        np.concatenate([p.dim for p in parts]),
        np.concatenate([p.family for p in parts]),
        first.families,
        [t for p in parts for t in p.tokens],
        [t for p in parts for t in p.target_ids],
        [t for p in parts for t in p.terms],
    )


def make_pool(
    config: ProseTrainableConfig,
    *,
    seconds: float,
    per_family: int,
    max_chunks: int,
    workers: int = 0,
    val_per_family: int = 8,
    seed: int = 0,
) -> tuple[ProseData, ProseData, dict]:
    """(training pool, held-out samples, how they were made).

    Chunk 0 (``val_per_family`` per family, seed ``seed``) is held out; training chunks k = 1, 2, ...
    (``per_family`` per family each, seed ``seed + k``: independent SeedSequence streams) are made
    until ``max_chunks`` are done or ``seconds`` have passed: a chunk is only started when it is
    expected to end in time. With ``workers`` = 0 everything runs in this process, else in that many
    spawned processes (spawn, not fork: this process may already hold a CUDA context).
    """
    start = time.perf_counter()
    families = config.families
    val, _ = _chunk(families, val_per_family, seed, config.d_max)
    parts: dict[int, ProseData] = {}
    chunk_s: list[float] = []
    if workers == 0:
        for k in range(1, max_chunks + 1):
            mean = float(np.mean(chunk_s)) if chunk_s else 0.0
            if parts and time.perf_counter() + mean > start + seconds:
                break
            parts[k], took = _chunk(families, per_family, seed + k, config.d_max)
            chunk_s.append(took)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            pending = {pool.submit(_chunk, families, per_family, seed + k, config.d_max): k
                       for k in range(1, min(workers, max_chunks) + 1)}  # fmt: skip
            next_k = len(pending) + 1
            while pending:
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    parts[pending.pop(future)], took = future.result()
                    chunk_s.append(took)
                mean = float(np.mean(chunk_s))
                while (len(pending) < workers and next_k <= max_chunks
                       and time.perf_counter() + mean < start + seconds):  # fmt: skip
                    pending[pool.submit(_chunk, families, per_family, seed + next_k, config.d_max)] = next_k
                    next_k += 1
    train = _concat([parts[k] for k in sorted(parts)])
    info = {
        "generator": "in-process" if workers == 0 else f"{workers} spawned processes",
        "engine": "batched (operators.batched_solve) + sympy tokenization (prepare_data)",
        "families": list(train.families),
        "chunks": len(parts),
        "per_family_per_chunk": per_family,
        "train_samples": len(train),
        "heldout_samples": len(val),
        "seconds": time.perf_counter() - start,
        "chunk_s_mean": float(np.mean(chunk_s)) if chunk_s else None,
        "sampling": "rows uniformly with replacement from the pool, fresh skeleton corruption and data noise per draw",
    }
    return train, val, info


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _to_device(batch: dict, device: str) -> dict:
    if device.startswith("cuda"):  # pinned host memory: the copy runs asynchronously
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return batch


@torch.no_grad()
def _evaluate(model, data: ProseData, inputs, config: ProseTrainableConfig, vocabulary, device: str, batch: int):
    """Sample-weighted (total, trajectory, symbol) losses on `data` with fixed corrupted inputs."""
    was_training = model.training
    model.eval()
    on_gpu = device.startswith("cuda")
    totals = np.zeros(3)
    for lo in range(0, len(data), batch):
        rows = np.arange(lo, min(len(data), lo + batch))
        tensors = make_batch(data, rows, [inputs[i] for i in rows], input_len=config.input_len,
                             d_max=config.d_max, vocabulary=vocabulary, with_symbols=True)  # fmt: skip
        with torch.autocast(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu):
            losses = forward_losses(model, _to_device(tensors, device))
        totals += len(rows) * np.array([float(losses.total), float(losses.trajectory), float(losses.symbol)])
    model.train(was_training)
    total, trajectory, symbol = (float(x) / len(data) for x in totals)
    return {"total": total, "trajectory": trajectory, "symbol": symbol}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # the result is strict JSON (no NaN)


def train_for(
    config: ProseTrainableConfig,
    train: ProseData,
    heldout: ProseData,
    *,
    device: str,
    seconds: float,
    warmup_steps: int,
    log_every: int,
    max_steps: int | None = None,
    seed: int = 0,
) -> dict:
    """Train a fresh `config.model_config()` model on batches of `train` for `seconds` (or
    `max_steps`); the loss curve (step, mean loss since the previous point, elapsed s; the first
    point is step 1 alone) and the held-out loss before and after.

    The schedule is the official one (linear warm-up from ``warmup_init_lr`` to ``lr``, then
    ``lr · sqrt(warmup / step)``) with ``warmup_steps`` in place of the paper's 20,000, which a run
    of minutes never reaches. bf16 autocast on CUDA, as the official training.
    """
    on_gpu = device.startswith("cuda")
    torch.manual_seed(seed)
    model = ProseModel(config.model_config()).to(device)
    vocabulary = Vocabulary(max_dim=config.d_max)
    corruptor = SkeletonCorruptor(vocabulary, config.add_term_prob, config.miss_term_prob)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                                  eps=config.eps, weight_decay=config.weight_decay,
                                  **({"fused": True} if on_gpu else {}))  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: inverse_sqrt_lr(s, config.lr, warmup_steps, config.warmup_init_lr) / config.lr
    )
    heldout_inputs = corrupted_inputs(
        heldout, range(len(heldout)), corruptor, np.random.default_rng(TEST_CORRUPTION_SEED)
    )
    batch = config.batch_size
    before = _evaluate(model, heldout, heldout_inputs, config, vocabulary, device, batch)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    rng = np.random.default_rng(seed)
    noise_rng, gamma = np.random.default_rng([seed, NOISE_STREAM]), data_noise_gamma(config)
    noise_shape = (batch, len(train.t), config.d_max)
    autocast = dict(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu)
    curve: list[dict] = []
    running, count, step, build_s, stopped = torch.zeros((), device=device), 0, 0, 0.0, "time"
    start = time.perf_counter()
    end = start + seconds
    while True:
        t0 = time.perf_counter()
        rows = rng.integers(len(train), size=batch)
        inputs = corrupted_inputs(train, rows, corruptor, rng)
        tensors = training_batch(train, rows, inputs, noise_rng.standard_normal(noise_shape), gamma=gamma,
                                 input_len=config.input_len, d_max=config.d_max, vocabulary=vocabulary,
                                 with_symbols=True)  # fmt: skip
        tensors = _to_device(tensors, device)
        build_s += time.perf_counter() - t0
        with torch.autocast(**autocast):
            loss = forward_losses(model, tensors).total
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach()
        count += 1
        step += 1
        done = time.perf_counter() >= end or (max_steps is not None and step >= max_steps)
        if step == 1 or step % log_every == 0 or done:
            mean = float(running) / count  # the one synchronisation: at log points only
            curve.append({"step": step, "loss": _finite(mean), "elapsed_s": time.perf_counter() - start})
            running.zero_()
            count = 0
            if not math.isfinite(mean):
                stopped = "non-finite loss"
                break
            if done:
                stopped = "time" if time.perf_counter() >= end else "max_steps"
                break
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if on_gpu else None
    after = _evaluate(model, heldout, heldout_inputs, config, vocabulary, device, batch)
    return {
        "params": count_parameters(model)["total"],
        "batch": batch,
        "steps": step,
        "seconds": elapsed,
        "stopped_by": stopped,
        "samples_per_s": step * batch / elapsed,
        "batch_build_s_per_step": build_s / step,
        "peak_mem_gb": peak,
        "lr": config.lr,
        "warmup_steps": warmup_steps,
        "final_lr": optimizer.param_groups[0]["lr"],
        "log_every": log_every,
        "loss_curve": curve,
        "heldout_loss_before": {k: _finite(v) for k, v in before.items()},
        "heldout_loss_after": {k: _finite(v) for k, v in after.items()},
    }


def loss_curve_figure(result: dict, title: str, *, ax=None):
    """The training loss against the step (log scale), held-out loss before and after as points."""
    curve = [p for p in result["loss_curve"] if p["loss"] is not None]
    fig, ((ax,),) = new_figure((6.4, 4.0), ax=ax, **({} if ax is not None else {"layout": "constrained"}))
    steps, losses = [p["step"] for p in curve], [p["loss"] for p in curve]
    ax.plot(steps, losses, ".-", lw=1.2, ms=3, label="training (mean since the previous point)")
    for step, key, marker, what in ((1, "heldout_loss_before", "o", "held-out, untrained"),
                                    (result["steps"], "heldout_loss_after", "s", "held-out, at the end")):  # fmt: skip
        if result[key]["total"] is not None:
            ax.plot([step], [result[key]["total"]], marker, color="C3", label=what)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (6 rel. L2 + token CE)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def save_figure(fig, directory: str | Path, name: str) -> str:
    from workbench.atomic import atomic_savefig, check_writable_dir

    path = check_writable_dir(directory, "figure directory") / name
    atomic_savefig(fig, path, dpi=120)
    return str(path)


def bench_config(config: ProseTrainableConfig, **changes) -> ProseTrainableConfig:
    """`config` with in-process data (the pool) in place of a make-data directory."""
    return replace(config, data="", val_data="", **changes)
