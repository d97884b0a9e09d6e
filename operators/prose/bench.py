"""`workbench bench prose`: PROSE data generation and training throughput.

Two things are measured, side by side in this process:

- **Data generation** (≈127 ms per trajectory on 2 CPU cores with the per-trajectory scipy loop
  of the official PROSE generator, github.com/felix-lyx/prose `prose_ode/symbolicregression/envs/`).
  The batched Dormand–Prince engine (`operators/batched_solve.py`, one process and `workers=2`)
  against that reference loop (`solve_ivp` with each family's method, rtol 1e-5, atol 1e-6), on the
  SAME samples: sample i draws from child i of SeedSequence(seed) in both. The reference's cost per
  trajectory does not depend on how many are made, so it runs on the first `n_ref` samples per
  family; the batched engine makes `n_batch` per family (its cost per trajectory falls with the
  batch, which is how a shard of make-data uses it). Agreement on the common samples: the fraction
  with identical parameters and kept initial condition, and the largest |Δu| / (1 + |u|) on t ≤ 1
  (each engine is within ~2.5e-3 of a tight DOP853 solution there, tests/test_odes.py, so < 1e-2 is
  "agree").
- **Training step** of `ProseModel` (64 data tokens, 40 symbol-input tokens, 50 target tokens,
  128 query times; forward + backward (6·L_data + L_sym, the official `trainer.py` loss) +
  grad-norm clip 1.0 + AdamW). bf16 autocast on CUDA, as the official training. The paper-size
  model (~100 M parameters) at batch 256 on CUDA and batch 4 on CPU (a batch-8 step takes ≈95 s
  on a loaded 2-core VM), and the tiny CPU config.

`gpu_stage` is the PROSE stage of `workbench bench gpu` (workbench/bench_gpu.py): on CUDA the model
and batch of jobs/configs/prose_paper.yaml (the paper's 104 M parameters, batch 256; Liu, Zhang &
Schaeffer 2023) under bf16 autocast, its training samples/s on the timed workload above (goal
≥ 3,000) and peak memory, then real training on generated ODE data for most of what is left of the
stage's budget (at most 3 min; operators/prose/bench_training.py), whose loss curve goes into the
details and, when the environment variable WORKBENCH_BENCH_FIGURES names a directory, into
`prose_loss_curve.png` there. On the CPU the model is jobs/configs/prose_tiny.yaml's (the paper's
does a step in ~10-50 s there), and `--quick` keeps the training run to a few seconds.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from operators.odes import PRESETS, default_t_eval, family_names, generate_samples, sample_seeds
from operators.prose.model import ProseConfig, ProseModel, count_parameters, prose_loss


def _gen(names, per_family, seed, engine, workers):
    order = [names[j] for _ in range(per_family) for j in range(len(names))]
    t = default_t_eval()
    start = time.perf_counter()
    results = generate_samples(order, sample_seeds(seed, 0, len(order)), t, engine=engine, workers=workers)
    return results, time.perf_counter() - start


def bench_data(quick: bool = False, seed: int = 0) -> dict:
    names = ("lorenz_3d", "rossler", "sprott_B") if quick else PRESETS["chaotic_ode_all"]
    n_ref, n_batch = (2, 32) if quick else (6, 256)
    ref, t_ref = _gen(names, n_ref, seed, "solve_ivp", 1)
    fast, t_fast = _gen(names, n_batch, seed, "batched", 1)
    fast2, t_fast2 = _gen(names, n_batch, seed, "batched", 2)
    same_draws, worst = 0, 0.0
    for r, f in zip(ref, fast):  # the first n_ref * F samples are the same samples
        same = np.array_equal(r[0], f[0]) and (
            (r[1] is None and f[1] is None) or (r[1] is not None and f[1] is not None and np.array_equal(r[1], f[1]))
        )
        same_draws += same
        if same and r[2] is not None:
            worst = max(worst, float(np.max(np.abs(f[2][:33] - r[2][:33]) / (1 + np.abs(r[2][:33])))))
    identical_workers = all(
        (a[2] is None and b[2] is None) or (a[2] is not None and b[2] is not None and np.array_equal(a[2], b[2]))
        for a, b in zip(fast, fast2)
    )
    rate = {"solve_ivp": len(ref) / t_ref, "batched": len(fast) / t_fast, "batched_workers2": len(fast2) / t_fast2}
    return {
        "families": list(names),
        "n_ref_per_family": n_ref,
        "n_batch_per_family": n_batch,
        "trajectories_per_s": rate,
        "ms_per_trajectory": {k: 1e3 / v for k, v in rate.items()},
        "ratio": rate["batched"] / rate["solve_ivp"],
        "ratio_workers2": rate["batched_workers2"] / rate["solve_ivp"],
        "same_draws_fraction": same_draws / len(ref),
        "max_rel_diff_t_le_1": worst,
        "workers_identical": identical_workers,
        "engines_agree": same_draws == len(ref) and worst < 1e-2 and identical_workers,
    }


# The timed workload: the 64-token input window, typical skeleton and target lengths, 128 queries.
DATA_TOKENS, SYMBOL_TOKENS, TARGET_TOKENS, QUERIES = 64, 40, 50, 128


def _train_step(cfg, batch: int, device: str):
    torch.manual_seed(0)
    model = ProseModel(cfg).to(device)
    on_gpu = device.startswith("cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, **({"fused": True} if on_gpu else {}))
    g = torch.Generator().manual_seed(1)
    d = cfg.d_max
    times = torch.linspace(0, 2, DATA_TOKENS).expand(batch, -1).contiguous()
    values = torch.randn(batch, DATA_TOKENS, d, generator=g)
    symbols = torch.randint(4, cfg.vocab_size, (batch, SYMBOL_TOKENS), generator=g)
    mask = torch.ones(batch, SYMBOL_TOKENS, dtype=torch.bool)
    targets = torch.randint(4, cfg.vocab_size, (batch, TARGET_TOKENS), generator=g)
    targets[:, 0], targets[:, -1] = cfg.bos_id, cfg.eos_id
    queries = torch.linspace(2, 6, QUERIES)
    target_u = torch.randn(batch, QUERIES, d, generator=g)
    dim_mask = torch.ones(batch, d, dtype=torch.bool)
    tensors = [x.to(device) for x in (times, values, symbols, mask, targets, queries, target_u, dim_mask)]
    times, values, symbols, mask, targets, queries, target_u, dim_mask = tensors

    def step():
        with torch.autocast(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu):
            out = model(times, values, symbols, mask, query_times=queries, target_ids=targets)
            loss = prose_loss(out, target_u, dim_mask, targets, cfg.pad_id).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the official code
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step, count_parameters(model)["total"]


def _time_steps(step, steps: int, device: str) -> list[float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        float(step())
        sync()
        out.append(time.perf_counter() - t0)
    return out


def bench_train(quick: bool = False, device: str = "cpu") -> dict:
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    runs = {}
    # (name, config, batch, warm-up steps, timed steps)
    plan = [("tiny", ProseConfig.tiny(), 256 if on_gpu else 32, 2 if on_gpu else 1, 10 if on_gpu else 3)]
    if on_gpu:
        plan.append(("paper", ProseConfig.paper(), 64 if quick else 256, 2, 3 if quick else 10))
    elif not quick:
        plan.append(("paper", ProseConfig.paper(), 4, 1, 2))
    for name, cfg, batch, warmup, steps in plan:
        step, n_params = _train_step(cfg, batch, device)
        _time_steps(step, warmup, device)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        times = _time_steps(step, steps, device)
        t = statistics.median(times)
        runs[name] = {
            "params": n_params,
            "batch": batch,
            "steps": steps,
            "step_s": t,
            "samples_per_s": batch / t,
            "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 1e9 if on_gpu else None,
        }
        del step
    if "paper" not in runs:
        runs["paper"] = None  # skipped: --quick on CPU (one paper-size CPU step takes ~10-50 s)
    return {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bf16_autocast": on_gpu,
        "workload": {
            "data_tokens": DATA_TOKENS,
            "symbol_tokens": SYMBOL_TOKENS,
            "target_tokens": TARGET_TOKENS,
            "queries": QUERIES,
        },
        "models": runs,
    }


def run(quick: bool = False, device: str = "cpu") -> dict:
    data = bench_data(quick)
    # `same_optimum` is what `workbench bench` checks for its exit status: 1 when the engines disagree.
    return {
        "cpus": os.cpu_count(),
        "data": data,
        "train": bench_train(quick, device),
        "same_optimum": data["engines_agree"],
    }


def format_result(result: dict) -> str:
    d = result["data"]
    lines = [
        f"PROSE data generation, {len(d['families'])} families ({result['cpus']} CPUs): reference loop on "
        f"{d['n_ref_per_family']}/family, batched on {d['n_batch_per_family']}/family (same seeds)",
        f"{'':26}{'traj/s':>10}{'ms/traj':>10}{'ratio':>8}",
    ]
    for key, label in (
        ("solve_ivp", "solve_ivp loop (ref.)"),
        ("batched", "batched DOPRI5"),
        ("batched_workers2", "batched DOPRI5, 2 workers"),
    ):
        ratio = d["trajectories_per_s"][key] / d["trajectories_per_s"]["solve_ivp"]
        lines.append(
            f"{label:26}{d['trajectories_per_s'][key]:>10,.1f}{d['ms_per_trajectory'][key]:>10.2f}{ratio:>7.1f}x"
        )
    lines.append(
        f"agreement: same params/ICs {100 * d['same_draws_fraction']:.0f}%, max |du|/(1+|u|) on t<=1 "
        f"{d['max_rel_diff_t_le_1']:.1e}, workers=2 identical: {d['workers_identical']} -> "
        f"{'agree' if d['engines_agree'] else 'DISAGREE'}"
    )
    t = result["train"]
    w = t["workload"]
    lines.append(
        f"ProseModel training step on {t['device']} (torch {t['torch']}, {t['threads']} threads"
        f"{', bf16 autocast' if t['bf16_autocast'] else ''}); {w['data_tokens']} data, "
        f"{w['symbol_tokens']} symbol, {w['target_tokens']} target tokens, {w['queries']} queries"
    )
    lines.append(f"{'':8}{'params':>13}{'batch':>7}{'s/step':>10}{'samples/s':>11}{'peak GB':>9}")
    for name, r in t["models"].items():
        if r is None:
            lines.append(f"{name:8}  skipped (--quick on CPU)")
            continue
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "n/a"
        lines.append(
            f"{name:8}{r['params']:>13,}{r['batch']:>7}{r['step_s']:>10.3f}{r['samples_per_s']:>11,.1f}{mem:>9}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# `workbench bench gpu`: the PROSE stage
# --------------------------------------------------------------------------------------------

GOAL_SAMPLES_PER_S = 3000.0  # paper model, batch 256, bf16, one GPU
TRAIN_CAP_S = 180.0  # the training run: about 3 minutes when the budget allows
FIGURES_ENV = "WORKBENCH_BENCH_FIGURES"  # a directory: the loss curve is saved there as a PNG
QUICK_CPU_STEPS = 30  # the training run of `--device cpu --quick`: ~3 s on 2 free cores
POOL_CAP = 100_000  # samples: ~0.9 GB of float32 trajectories plus token lists
CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"


def _job_model(name: str):
    from jobs.entrypoints import load_job_config

    return load_job_config(CONFIGS / name).model


def _oom_reason(error: BaseException) -> str:
    return f"out of memory: {str(error).splitlines()[0][:120]}"


def _throughput(cfg, batch: int, device: str, warmup: int, steps: int) -> dict:
    """bench_train's timed step (the fixed synthetic workload) for one config: samples/s, peak memory."""
    on_gpu = device.startswith("cuda")
    step = None
    try:
        step, n_params = _train_step(cfg, batch, device)
        _time_steps(step, warmup, device)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        t = statistics.median(_time_steps(step, steps, device))
        return {
            "params": n_params,
            "batch": batch,
            "warmup": warmup,
            "steps": steps,
            "step_s": t,
            "samples_per_s": batch / t,
            "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 1e9 if on_gpu else None,
        }
    except torch.cuda.OutOfMemoryError as error:
        return {"params": None, "batch": batch, "error": _oom_reason(error)}
    finally:
        del step  # the closure holds the model and the optimizer state
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()


def _row(measure: str, value, unit: str, goal: str | None = None, met: bool | None = None) -> dict:
    if value is not None and not math.isfinite(value):
        value, unit = None, f"non-finite ({unit})"
    return {"measure": measure, "value": value, "unit": unit, "goal": goal, "met": met}


def gpu_stage(device: str = "cuda", quick: bool = False, budget_s: float = 200.0) -> dict:
    """The PROSE stage of `workbench bench gpu` (see the module doc) within `budget_s` seconds."""
    from operators.prose.bench_training import bench_config, loss_curve_figure, make_pool, save_figure, train_for

    start = time.monotonic()
    on_gpu = device.startswith("cuda")
    # Kept back for the held-out evaluation, the figure, the JSON and the CUDA teardown.
    deadline = start + budget_s - max(4.0, 0.05 * budget_s)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    name = "prose_paper.yaml" if on_gpu else "prose_tiny.yaml"
    job = _job_model(name)
    # The paper's data are the 12 3-D chaotic families (jobs/configs/prose_data_paper.yaml); the
    # tiny config generates its own 3 families in process.
    config = bench_config(job, families="chaotic_ode_3d" if on_gpu else job.families)
    label = "paper" if on_gpu else "tiny"
    rows, details = [], {"config": f"jobs/configs/{name}", "device": device, "bf16_autocast": on_gpu}

    # 1. Throughput of the timed workload, and peak memory.
    warmup, steps = ((2, 5) if quick else (3, 10)) if on_gpu else ((1, 2) if quick else (1, 3))
    thr = _throughput(config.model_config(), config.batch_size, device, warmup, steps)
    details["throughput"] = thr | {"workload": {"data_tokens": DATA_TOKENS, "symbol_tokens": SYMBOL_TOKENS,
                                                "target_tokens": TARGET_TOKENS, "queries": QUERIES}}  # fmt: skip
    params = f"{thr['params'] / 1e6:.3g} M" if thr["params"] else "?"
    what = f"train samples/s ({label} {params}, batch {config.batch_size}{', bf16' if on_gpu else ''})"
    goal = f">= {GOAL_SAMPLES_PER_S:,.0f}" if on_gpu else None  # stated for the paper model on a GPU
    if "error" in thr:
        rows += [_row(what, None, thr["error"], goal), _row("peak memory, train step", None, thr["error"])]
    else:
        rate = thr["samples_per_s"]
        rows.append(_row(what, rate, "samples/s", goal, rate >= GOAL_SAMPLES_PER_S if goal else None))
        peak = thr["peak_mem_gb"]
        rows.append(_row("peak memory, train step", peak, "GB (max_memory_allocated)" if on_gpu else "n/a on CPU"))

    # 2. A pool of generated samples, then 3. real training on it until the deadline.
    n_fam = len(family_names(config.families))
    if on_gpu:
        # 64 per family per chunk (768 samples, ~3 s on one core: ~1 ms to integrate and ~2-3 ms to
        # tokenize a sample) amortises the batched solver's per-family cost; the host's cores make
        # chunks in parallel for ~25 s, up to POOL_CAP samples, a few hundred steps' worth of rows.
        pool_s = min(10.0 if quick else 25.0, 0.12 * budget_s)
        pool_kw = {"per_family": 64, "workers": min(16, os.cpu_count() or 1), "val_per_family": 16}
    else:
        pool_s = 2.0 if quick else min(20.0, 0.1 * budget_s)
        pool_kw = {"per_family": 40, "workers": 0, "val_per_family": 8}
    pool_kw["max_chunks"] = 1 if quick and not on_gpu else max(1, POOL_CAP // (pool_kw["per_family"] * n_fam))
    # On the CPU with --quick the run is a fixed number of steps (so that what it shows does not
    # depend on how loaded the machine is), with the stage's budget as the only time limit.
    cap_s = (30.0 if on_gpu else math.inf) if quick else TRAIN_CAP_S
    quick_cpu_steps = QUICK_CPU_STEPS if quick and not on_gpu else None
    setup_s = 6.0 if on_gpu else 1.0  # model build and the held-out evaluation before training
    training = None
    try:
        if deadline - time.monotonic() - pool_s - setup_s < (10.0 if on_gpu else 2.0):
            raise TimeoutError(f"time budget spent ({max(0.0, deadline - time.monotonic()):.0f} s left)")
        train, heldout, pool = make_pool(config, seconds=pool_s, **pool_kw)
        details["pool"] = pool
        train_s = min(cap_s, deadline - time.monotonic() - setup_s)
        if train_s < (5.0 if on_gpu else 1.0):
            raise TimeoutError(f"time budget spent after the pool ({train_s:.0f} s left to train)")
        # The official 20,000-step warm-up is never reached in minutes: warm up over ~10% of the
        # steps this run is expected to take (from the timed workload), then decay as 1/sqrt(step).
        rate = thr.get("samples_per_s") or config.batch_size
        expected = quick_cpu_steps or max(10, int(0.8 * train_s * rate / config.batch_size))
        training = train_for(config, train, heldout, device=device, seconds=train_s,
                             warmup_steps=min(config.warmup_steps, max(1, expected // 10)),
                             log_every=max(1, expected // 100 if on_gpu else 5),
                             max_steps=quick_cpu_steps)  # fmt: skip
    except Exception as error:  # the throughput above is still reported; the reason goes in the rows
        if isinstance(error, torch.cuda.OutOfMemoryError):
            reason = _oom_reason(error)
        elif isinstance(error, TimeoutError):
            reason = str(error)
        else:
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        details["training_error"] = reason
        rows += [_row("training run samples/s", None, reason), _row("training loss, last point", None, reason)]
    if training is not None:
        curve = training.pop("loss_curve")  # kept once, at details["loss_curve"]
        first, last = curve[0], curve[-1]
        averaged = last["step"] - (curve[-2]["step"] if len(curve) > 1 else 0)
        details["training"] = training
        details["loss_curve"] = curve
        rows += [
            _row("training run samples/s", training["samples_per_s"],
                 f"samples/s, {training['steps']} steps in {training['seconds']:.0f} s (generated data)"),
            _row("training loss, first point", first["loss"], f"step {first['step']}"),
            _row("training loss, last point", last["loss"], f"step {last['step']}, mean of {averaged} steps"),
            _row("held-out loss after the run", training["heldout_loss_after"]["total"],
                 f"untrained {training['heldout_loss_before']['total']:.3g}, {len(heldout)} samples"),
        ]  # fmt: skip
        directory = os.environ.get(FIGURES_ENV)
        if directory:
            title = (
                f"PROSE {label} ({training['params'] / 1e6:.3g} M), batch {training['batch']}, {device}"
                f"{', bf16' if on_gpu else ''}: {training['steps']} steps in {training['seconds']:.0f} s"
            )
            try:
                figure = loss_curve_figure(training | {"loss_curve": curve}, title)
                details["figure"] = save_figure(figure, directory, "prose_loss_curve.png")
            except OSError as error:  # OutputError too: a figure that cannot be written loses only itself
                details["figure_error"] = str(error)
    details["seconds"] = time.monotonic() - start
    return {"rows": rows, "details": details, "skipped": None}


__all__ = ["bench_data", "bench_train", "format_result", "gpu_stage", "run"]
