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
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
import torch

from operators.odes import PRESETS, default_t_eval, generate_samples, sample_seeds
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


__all__ = ["bench_data", "bench_train", "format_result", "run"]
