"""`workbench bench medida`: KS truth generation and EnKF analysis cost for MEDIDA.

Two things are measured, side by side in this process:

- **ETDRK4 throughput** (Kassam & Trefethen 2005; MEDIDA's preset grid L = 100, N = 1,024, truth
  step h = 1e-3, from the public code's `experiments/KS/main.py`). The batched torch solver
  (`operators/ks.py`: on the CPU, cache-sized chunks of members with one batched rfft per stage,
  spread over torch's thread count; on a GPU, the whole ensemble at once) on a batch of 1,024
  perturbed states against a loop over members of a plain numpy ETDRK4 for one state
  (`operators/ks_reference.py`, the per-member loop of the public code),
  in member-steps per second, each side the best of 3 runs. The loop's cost per member-step does
  not depend on how many members it runs, so it runs on the first `ref_members` members; the goal
  is ≥ 10× on 2 cores. Agreement: the same members after the same steps, max |Δu| (the two differ
  only by round-off, ~1e-15). The torch float32 path is timed and compared too, but only reported.
- **EnKF analysis** (`scaling/medida/enkf.py`): one stochastic analysis at state n = 1,024
  for ensembles of 128, 1,024 and 10,240 members (the public preset is 10·n), σ_b = 0.25 forecast
  spread and 1% observation noise, with the form the filter picks (`auto`: Woodbury in ensemble
  space when m < n, a Cholesky solve in state space otherwise) against the public code's explicit
  inverse K = B(B + R)⁻¹. The same generator seed gives both the same perturbed observations, so
  the analysis means agree to round-off; the largest |Δ mean| is reported. Flop counts: ensemble
  form O(nm² + m³); state form B (n²m) + Cholesky (n³/3) + K = (S⁻¹B)ᵀ (n³) + D·Kᵀ (n²m) when m > n;
  explicit B (n²m) + inverse (n³) + D·Kᵀ (n²m) — so for m ≥ n the two cost about the same; the
  spectral-localised form (`form: spectral`, a diagonal gain in Fourier space) is O(m·n log n) and
  is timed alongside (a different, localised analysis, so not compared).

`--quick` shrinks both (batch 64, ensembles up to 1,024) for the smoke test. `--device cuda` runs
the torch side (batched ETDRK4, both EnKF forms) on the GPU; the numpy loop stays on the CPU.

`gpu_stage` is the KS stage of `workbench bench gpu` (workbench/bench_gpu.py): the same batched
ETDRK4 (Kassam & Trefethen 2005) at N = 1,024 with 1,024 and 10,240 members, float64 and float32,
in member-steps per second (goal ≥ 5e6), each checked against the same solver run on the CPU in
float64 for the first 4 members; then one stochastic EnKF analysis (Evensen 1994; perturbed
observations, Burgers, van Leeuwen & Evensen 1998) at 10,240 members. On `--quick`: 64 members,
10 steps, a 256-member analysis.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from operators.ks import ETDRK4, KSEquation, KSGrid, initial_condition
from operators.ks_reference import NumpyETDRK4
from scaling.medida.enkf import EnKFConfig, analysis

L, N, H = 100.0, 1024, 1e-3  # the public MEDIDA preset (`experiments/KS/main.py`): grid and truth step
SIGMA_B, NOISE_MAG = 0.25, 0.01  # its EnKF forecast spread (`EnKF.py`) and its README's noise level
STATE_TOL, MEAN_TOL = 1e-9, 1e-8  # "agree": round-off level, far below any KS/EnKF signal


def _sync(device: str):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _perturbed_states(members: int, seed: int) -> np.ndarray:
    """MEDIDA's u0 plus N(0, 0.1²) per point: distinct members (cost does not depend on the state)."""
    u0 = initial_condition(KSGrid(L, N), "medida")
    return u0 + 0.1 * np.random.default_rng(seed).standard_normal((members, N))


def _best_time(fn, repeats: int, device: str = "cpu"):
    """(smallest wall time of `repeats` calls, last result): the least disturbed run on a shared machine."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_etdrk4(quick: bool = False, device: str = "cpu", seed: int = 0) -> dict:
    members, steps, ref_members = (64, 5, 4) if quick else (1024, 20, 16)
    repeats = 3  # both sides: best of 3 (the machine may be shared)
    states = _perturbed_states(members, seed)
    solver = ETDRK4(KSEquation(), KSGrid(L, N), H, device=device)
    batch = torch.as_tensor(states, device=device)
    solver.run(batch, 1)  # warm-up: FFT plans, allocator, worker threads
    t_batched, batched = _best_time(lambda: solver.run(batch, steps), repeats, device)
    batched = batched.cpu().numpy()

    # The float32 path (same members; not the headline: its round-off, ~1e-6 here, is far above
    # the float64 agreement tolerance, so it is reported but not part of `agree`).
    solver32 = ETDRK4(KSEquation(), KSGrid(L, N), H, device=device, dtype=torch.float32)
    batch32 = batch.to(torch.float32)
    solver32.run(batch32, 1)
    t_batched32, batched32 = _best_time(lambda: solver32.run(batch32, steps), repeats, device)
    batched32 = batched32.cpu().numpy()

    reference = NumpyETDRK4(L, N, H)
    reference.run(states[0], 1)
    t_loop, looped = _best_time(
        lambda: np.stack([reference.run(states[i], steps) for i in range(ref_members)]), repeats
    )

    diff = float(np.max(np.abs(batched[:ref_members] - looped)))
    diff32 = float(np.max(np.abs(batched32[:ref_members] - looped)))
    rate = {"numpy_loop": ref_members * steps / t_loop, "torch_batched": members * steps / t_batched}
    rate32 = members * steps / t_batched32
    return {
        "N": N,
        "L": L,
        "h": H,
        "steps": steps,
        "members": members,
        "ref_members": ref_members,
        "repeats": repeats,
        "member_steps_per_s": rate,
        "ratio": rate["torch_batched"] / rate["numpy_loop"],
        "goal_ratio": 10.0,
        "max_abs_diff": diff,
        "agree": diff < STATE_TOL,
        "float32": {"member_steps_per_s": rate32, "ratio": rate32 / rate["numpy_loop"], "max_abs_diff": diff32},
    }


def _time_analysis(forecast, obs, obs_std, form: str, seed: int, device: str):
    config = EnKFConfig(members=forecast.shape[0], form=form)
    generator = torch.Generator().manual_seed(seed)
    _sync(device)
    t0 = time.perf_counter()
    out = analysis(forecast, obs, obs_std, config, generator=generator, length=L)
    _sync(device)
    return time.perf_counter() - t0, out.mean(dim=0).cpu().numpy()


def bench_enkf(quick: bool = False, device: str = "cpu", seed: int = 0, sizes: tuple[int, ...] = ()) -> dict:
    """Analyses at the ensemble sizes `sizes` (default: 128, 1,024 and, unless quick, 10,240)."""
    truth = initial_condition(KSGrid(L, N), "medida")
    obs_std = NOISE_MAG * float(np.std(truth))
    obs = torch.as_tensor(truth, device=device)
    sizes = sizes or ((128, 1024) if quick else (128, 1024, 10240))
    runs = []
    for m in sizes:
        rng = np.random.default_rng(seed + m)
        forecast = torch.as_tensor(truth + SIGMA_B * rng.standard_normal((m, N)), device=device)
        if str(device).startswith("cuda"):  # first CUDA call pays for cuSOLVER/cuBLAS initialisation
            _time_analysis(forecast, obs, obs_std, "auto", seed, device)
        t_auto, mean_auto = _time_analysis(forecast, obs, obs_std, "auto", seed, device)
        t_explicit, mean_explicit = _time_analysis(forecast, obs, obs_std, "explicit", seed, device)
        # Spectral localisation is a different (localised) analysis: timed, not compared.
        t_spectral, _ = _time_analysis(forecast, obs, obs_std, "spectral", seed, device)
        diff = float(np.max(np.abs(mean_auto - mean_explicit)))
        runs.append(
            {
                "members": m,
                "form": "state" if m >= N else "ensemble",
                "auto_s": t_auto,
                "explicit_s": t_explicit,
                "spectral_s": t_spectral,
                "ratio": t_explicit / t_auto,
                "max_abs_mean_diff": diff,
                "agree": diff < MEAN_TOL,
            }
        )
        del forecast
    return {"n": N, "obs_std": obs_std, "sigma_b": SIGMA_B, "runs": runs, "agree": all(r["agree"] for r in runs)}


def run(quick: bool = False, device: str = "cpu") -> dict:
    on_gpu = str(device).startswith("cuda")
    ks = bench_etdrk4(quick, device)
    enkf = bench_enkf(quick, device)
    # `same_optimum` is what `workbench bench` checks for its exit status: 1 when the sides disagree.
    return {
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "etdrk4": ks,
        "enkf": enkf,
        "same_optimum": bool(ks["agree"] and enkf["agree"]),
    }


def format_result(result: dict) -> str:
    k = result["etdrk4"]
    rate = k["member_steps_per_s"]
    lines = [
        f"KS ETDRK4, N = {k['N']}, L = {k['L']:g}, h = {k['h']:g}, {k['steps']} steps on {result['device']} "
        f"(torch {result['torch']}, {result['threads']} threads, {result['cpus']} CPUs)",
        f"{'':34}{'members':>8}{'member-steps/s':>16}{'ratio':>8}   (best of {k['repeats']} runs each)",
        f"{'numpy ETDRK4, loop over members':34}{k['ref_members']:>8}{rate['numpy_loop']:>16,.0f}{1.0:>7.1f}x",
        f"{'torch ETDRK4, batched':34}{k['members']:>8}{rate['torch_batched']:>16,.0f}{k['ratio']:>7.1f}x",
        f"{'  (float32, not the headline)':34}{k['members']:>8}{k['float32']['member_steps_per_s']:>16,.0f}"
        f"{k['float32']['ratio']:>7.1f}x   max |du| {k['float32']['max_abs_diff']:.1e}",
        f"goal >= {k['goal_ratio']:.0f}x: {'met' if k['ratio'] >= k['goal_ratio'] else 'NOT met'}; "
        f"same members, max |du| {k['max_abs_diff']:.1e} -> {'agree' if k['agree'] else 'DISAGREE'}",
    ]
    e = result["enkf"]
    lines.append(
        f"EnKF analysis, n = {e['n']}, sigma_b = {e['sigma_b']}, obs std {e['obs_std']:.4f} "
        f"(auto form vs explicit inverse K = B(B+R)^-1, same seed)"
    )
    lines.append(
        f"{'members':>8}{'auto form':>11}{'auto s':>10}{'explicit s':>12}{'ratio':>8}{'max |d mean|':>14}"
        f"{'spectral-localised s':>22}"
    )
    for r in e["runs"]:
        lines.append(
            f"{r['members']:>8}{r['form']:>11}{r['auto_s']:>10.3f}{r['explicit_s']:>12.3f}"
            f"{r['ratio']:>7.1f}x{r['max_abs_mean_diff']:>14.1e}{r.get('spectral_s', float('nan')):>22.3f}"
        )
    lines.append(f"analysis means {'agree' if e['agree'] else 'DISAGREE'} (tolerance {MEAN_TOL:g})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# `workbench bench gpu`: the KS / MEDIDA stage
# --------------------------------------------------------------------------------------------

GOAL_MEMBER_STEPS = 5e6  # member-steps/s at N = 1,024 (the goal of the GPU stage)
CPU_MEMBERS = 4  # members re-run on the CPU in float64 as the reference
DEVICE_TOL = 1e-10  # float64 on the device vs the CPU: FFT round-off only (~1e-15 per step)


def _ks_rows(members: int, dtype: str, steps: int, value, diff, goals: bool, reason: str = "") -> list[dict]:
    rate_goal = f">= {GOAL_MEMBER_STEPS:.0e}" if goals else None
    diff_goal = f"<= {DEVICE_TOL:g}" if dtype == "float64" else None  # float32 round-off is ~1e-6: reported only
    return [
        {"measure": f"ETDRK4 {members:,} members {dtype}", "value": value,
         "unit": reason or "member-steps/s", "goal": rate_goal,
         "met": None if value is None or not goals else value >= GOAL_MEMBER_STEPS},
        {"measure": f"ETDRK4 {members:,} members {dtype} vs CPU", "value": diff,
         "unit": reason or (f"max |du|, {CPU_MEMBERS} members, {steps} steps" if diff is not None
                            else "not finite: the run blew up"), "goal": diff_goal,
         "met": None if diff is None or diff_goal is None else diff <= DEVICE_TOL},
    ]  # fmt: skip


def _time_etdrk4(states: np.ndarray, dtype: torch.dtype, steps: int, repeats: int, device: str):
    """(best wall time of `repeats` runs of `steps` steps, the first CPU_MEMBERS final states)."""
    solver = ETDRK4(KSEquation(), KSGrid(L, N), H, device=device, dtype=dtype)
    batch = torch.as_tensor(states, device=device).to(dtype)
    solver.run(batch, 1)  # warm-up: FFT plans, allocator
    seconds, out = _best_time(lambda: solver.run(batch, steps), repeats, device)
    return seconds, out[:CPU_MEMBERS].to(torch.float64).cpu().numpy()


def gpu_stage(device: str = "cuda", quick: bool = False, budget_s: float = 60.0, seed: int = 0) -> dict:
    """The KS stage of `workbench bench gpu`: batched ETDRK4 throughput and agreement with the CPU,
    then an EnKF analysis, within `budget_s` seconds (a size that would not fit is skipped, with
    its reason in the row)."""
    start = time.monotonic()
    deadline = start + 0.9 * budget_s - 1.0  # leave time to write the result and release the device
    on_gpu = str(device).startswith("cuda")
    # 200 steps (t = 0.2) are ≥ 0.1 s per run at 10,240 members even at 1e7 member-steps/s, long
    # enough to time, and short enough that three runs of four configurations fit in ~40 s.
    sizes, steps, repeats = ((64,), 10, 3) if quick else ((1024, 10240), 200, 3)
    goals = not quick  # the goal is stated for N = 1,024 at 1,024 and 10,240 members
    states = _perturbed_states(max(sizes), seed)  # the first rows are the same for every size

    # The reference: the same solver on the CPU in float64, for the first CPU_MEMBERS members.
    reference = ETDRK4(KSEquation(), KSGrid(L, N), H, device="cpu").run(states[:CPU_MEMBERS], steps).numpy()

    rows, runs, rate_seen = [], [], None
    for members in sizes:
        for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            left = deadline - time.monotonic()
            # Cost of warm-up + repeats, estimated from the rate already measured (larger batches
            # are at least as fast per member-step on a GPU, so this is an upper bound there).
            need = (1 + repeats) * members * steps / rate_seen + 1.0 if rate_seen else 0.0
            if need > left:
                reason = f"skipped: needs ~{need:.0f} s, {max(left, 0):.0f} s left"
                rows += _ks_rows(members, name, steps, None, None, goals, reason)
                runs.append({"members": members, "dtype": name, "skipped": reason})
                continue
            try:
                seconds, head = _time_etdrk4(states[:members], dtype, steps, repeats, device)
            except torch.cuda.OutOfMemoryError as error:
                reason = f"out of memory: {str(error).splitlines()[0][:120]}"
                rows += _ks_rows(members, name, steps, None, None, goals, reason)
                runs.append({"members": members, "dtype": name, "skipped": reason})
                torch.cuda.empty_cache()
                continue
            rate = members * steps / seconds
            rate_seen = min(rate_seen or rate, rate)
            diff = float(np.max(np.abs(head - reference)))
            diff = diff if np.isfinite(diff) else None  # a blown-up run: no number (the result is strict JSON)
            rows += _ks_rows(members, name, steps, rate, diff, goals)
            runs.append({"members": members, "dtype": name, "steps": steps, "best_s": seconds,
                         "member_steps_per_s": rate, "max_abs_diff_cpu": diff})  # fmt: skip

    # EnKF (Evensen 1994; the stochastic analysis with perturbed observations of Burgers, van
    # Leeuwen & Evensen 1998) at MEDIDA's 10·n members; auto picks the state-space form for m ≥ n.
    m = 256 if quick else 10240
    left = deadline - time.monotonic()
    enkf = None
    if left < (2.0 if quick else 5.0):
        reason = f"skipped: {max(left, 0):.0f} s left"
        rows.append(
            {"measure": f"EnKF analysis {m:,} members", "value": None, "unit": reason, "goal": None, "met": None}
        )
    else:
        try:
            enkf = bench_enkf(device=device, seed=seed, sizes=(m,))
            r = enkf["runs"][0]
            rows += [
                {"measure": f"EnKF analysis {m:,} members", "value": r["auto_s"],
                 "unit": f"s per analysis ({r['form']} form)", "goal": None, "met": None},
                {"measure": "EnKF mean vs explicit K = B(B+R)^-1", "value": r["max_abs_mean_diff"],
                 "unit": "max |d mean|", "goal": f"< {MEAN_TOL:g}", "met": bool(r["agree"])},
            ]  # fmt: skip
        except torch.cuda.OutOfMemoryError as error:
            reason = f"out of memory: {str(error).splitlines()[0][:120]}"
            rows.append(
                {"measure": f"EnKF analysis {m:,} members", "value": None, "unit": reason, "goal": None, "met": None}
            )
    details = {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "N": N,
        "L": L,
        "h": H,
        "steps": steps,
        "repeats": repeats,
        "cpu_reference": f"operators.ks.ETDRK4 on the CPU, float64, members 0-{CPU_MEMBERS - 1}",
        "etdrk4": runs,
        "enkf": enkf,
        "seconds": time.monotonic() - start,
    }
    return {"rows": rows, "details": details, "skipped": None}


__all__ = ["bench_enkf", "bench_etdrk4", "format_result", "gpu_stage", "run"]
