"""`workbench bench lm`: training throughput and model FLOPs utilisation of the muP GPT.

Two things are measured, side by side in this process:

- **muP overhead.** The same architecture built twice, under muP (`MuReadout`, `MuAdamW`, base
  shapes) and as plain PyTorch (`nn.Linear` readout, `torch.optim.AdamW`, no mup object
  anywhere), trained on the same random tokens. Timed steps alternate between the two in
  rounds, so machine noise hits both alike; the ratio is the median over rounds.
- **Throughput / MFU.** tokens/s of a full training step (forward, backward, optimizer) and
  MFU = tok/s × (6·N + 12·L·d·T) / peak (nanoGPT's `estimate_mfu`; N = all parameters with a
  tied or untied readout counted as stored). Peak is the dense bf16 figure
  of known GPUs (A100 312, H100/H200 989 TFLOP/s); on a CPU only GFLOP/s are given.

On CUDA the default is nanoGPT's 124M shape (12 × 768, 12 heads, vocabulary 50304, sequence
1024, batch 16), bf16 autocast, `scaled_dot_product_attention` (flash) and `torch.compile`.
On CPU a small model is used (`--quick` smaller still).

`gpu_stage` is the LM stage of `workbench bench gpu` (workbench/bench_gpu.py): the same muP vs
plain comparison at the GPT-2-small shape and the largest batch that fits (doubling from 8 to 64),
compiled in a process of its own so that the stage's time budget can stop a compilation. Its MFU
counts N without the token and position embeddings (`mfu_params`: lookups, no matmul), nanoGPT's
convention, where `run` above counts every parameter.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from workbench.lm.model import GPTConfig, build_model, make_optimizer

PEAK_BF16 = {"A100": 312e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12}


@dataclasses.dataclass(frozen=True)
class Shape:
    width: int
    depth: int
    heads: int
    vocab: int
    seq_len: int
    batch: int

    def model_config(self, parametrization: str):
        shape = {"width": self.width, "depth": self.depth, "heads": self.heads, "seq_len": self.seq_len}
        return GPTConfig(
            **shape, vocab_size=self.vocab, parametrization=parametrization, base_width=min(self.width, 256)
        )


CPU_SHAPE = Shape(width=256, depth=4, heads=8, vocab=256, seq_len=128, batch=8)
CPU_QUICK = Shape(width=128, depth=2, heads=4, vocab=256, seq_len=64, batch=8)
GPU_SHAPE = Shape(width=768, depth=12, heads=12, vocab=50304, seq_len=1024, batch=16)
GPU_QUICK = Shape(width=256, depth=4, heads=4, vocab=50304, seq_len=512, batch=8)


def flops_per_token(n_params: int, shape: Shape) -> float:
    """6·N for the weights plus 12·L·d·T for attention scores and values (nanoGPT, PaLM App. B)."""
    return 6 * n_params + 12 * shape.depth * shape.width * shape.seq_len


def peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def _model_and_optimizer(shape: Shape, parametrization: str, device: str):
    torch.manual_seed(0)
    # Built where it trains: initialising 10^8 weights on the host and copying them costs seconds.
    with torch.device(device):
        model = build_model(shape.model_config(parametrization))
    kwargs = {"fused": True} if device.startswith("cuda") else {}
    return model, make_optimizer(model, lr=1e-4, weight_decay=0.1, **kwargs)


def _tokens(shape: Shape, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randint(0, shape.vocab, (shape.batch, shape.seq_len), generator=g).to(device)
    y = torch.randint(0, shape.vocab, (shape.batch, shape.seq_len), generator=g).to(device)
    return x, y


def _step_function(step_model, optimizer, x: torch.Tensor, y: torch.Tensor, on_gpu: bool):
    def step() -> torch.Tensor:
        with torch.autocast(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu):
            _, loss = step_model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _trainer(shape: Shape, parametrization: str, device: str, compile_model: bool):
    """(a closure that runs one training step, the model); the model is built here."""
    model, optimizer = _model_and_optimizer(shape, parametrization, device)
    step_model = torch.compile(model) if compile_model else model
    x, y = _tokens(shape, device)
    return _step_function(step_model, optimizer, x, y, device.startswith("cuda")), model


def _time(step, steps: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)  # the last step's result must exist before the clock stops
    sync()
    return (time.perf_counter() - t0) / steps


def _interleave(
    steps: dict, rounds: int, steps_per_round: int, device: str, deadline: float | None = None, on_round=None
) -> dict[str, list[float]]:
    """Seconds per step of each step function, `rounds` times in turn, so machine noise hits all alike.

    With a `deadline` (time.monotonic()), a round starts only if the last one would still fit; the
    first round always runs. `on_round(times)` is called after each round (partial results).
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds):
        if deadline is not None and index:
            last_round = steps_per_round * sum(t[-1] for t in times.values())
            if time.monotonic() + last_round > deadline:
                break
        for name, step in steps.items():
            times[name].append(_time(step, steps_per_round, device))
        if on_round is not None:
            on_round(times)
    return times


def run(quick: bool = False, device: str = "cpu") -> dict:
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shape = (GPU_QUICK if quick else GPU_SHAPE) if on_gpu else (CPU_QUICK if quick else CPU_SHAPE)
    compile_model = on_gpu
    rounds, steps, warmup = (3, 3, 2) if quick else ((5, 10, 5) if on_gpu else (9, 4, 2))
    runs = {}
    for par in ("mup", "sp"):
        step, model = _trainer(shape, par, device, compile_model)
        for _ in range(warmup):  # compilation, autotuning, allocator warm-up
            step()
        runs[par] = {"step": step, "n_params": model.num_params()}
    times = _interleave({par: r["step"] for par, r in runs.items()}, rounds, steps, device)
    tokens = shape.batch * shape.seq_len
    peak = peak_flops(device)
    result = {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": dataclasses.asdict(shape),
        "bf16_autocast": on_gpu,
        "compiled": compile_model,
        "rounds": rounds,
        "steps_per_round": steps,
    }
    for par in ("mup", "sp"):
        t = statistics.median(times[par])
        fpt = flops_per_token(runs[par]["n_params"], shape)
        result[par] = {
            "params": runs[par]["n_params"],
            "step_s": t,
            "tokens_per_s": tokens / t,
            "model_tflops": tokens * fpt / t / 1e12,
            "mfu": tokens * fpt / t / peak if peak else None,
        }
    ratios = [a / b for a, b in zip(times["mup"], times["sp"])]
    result["mup_overhead"] = statistics.median(ratios) - 1
    result["overhead_rounds"] = ratios
    return result


def format_result(result: dict) -> str:
    s = result["shape"]
    lines = [
        f"muP GPT training step on {result['device']} (torch {result['torch']}, {result['threads']} threads"
        f"{', bf16 autocast' if result['bf16_autocast'] else ''}{', torch.compile' if result['compiled'] else ''})",
        f"shape: width {s['width']}, depth {s['depth']}, heads {s['heads']}, vocab {s['vocab']}, "
        f"seq {s['seq_len']}, batch {s['batch']}; median of {result['rounds']} interleaved rounds",
        f"{'':14}{'params':>12}{'ms/step':>10}{'tokens/s':>12}{'TFLOP/s':>9}{'MFU':>8}",
    ]
    for par, label in (("mup", "muP (mup)"), ("sp", "plain PyTorch")):
        r = result[par]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        lines.append(
            f"{label:14}{r['params']:>12,}{1e3 * r['step_s']:>10.2f}{r['tokens_per_s']:>12,.0f}"
            f"{r['model_tflops']:>9.3f}{mfu:>8}"
        )
    over = result["mup_overhead"]
    lines.append(
        f"muP overhead vs plain PyTorch: {100 * over:+.1f}% per step "
        f"(rounds: {', '.join(f'{100 * (r - 1):+.1f}%' for r in result['overhead_rounds'])})"
    )
    if result["mup"]["mfu"] is None:
        lines.append("MFU needs a GPU with a known bf16 peak (run with --device cuda).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# `workbench bench gpu`: the LM stage
# --------------------------------------------------------------------------------------------

PARAMETRIZATIONS = ("mup", "sp")
LABELS = {"mup": "muP", "sp": "plain PyTorch"}
BATCH_START = 8
MFU_GOAL, OVERHEAD_GOAL = 0.50, 0.01


def mfu_params(model) -> int:
    """N of the MFU formula: every parameter but the input embeddings (token and position tables).

    A lookup is no matmul, so it costs no 6 FLOPs per weight and token (nanoGPT's `estimate_mfu`
    drops its position table for that reason, and keeps the token table only as its tied readout).
    The readout is a matmul and stays, also when it is tied to the token table (then that table is
    not dropped: it is the readout).
    """
    readout = getattr(model.lm_head, "weight", None)
    lookups = [p for p in (model.wte.weight, model.wpe.weight) if p is not readout]
    return model.num_params() - sum(p.numel() for p in lookups)


def _memory_gib(device: str) -> float:
    """Peak memory so far: allocated tensors on a GPU, the process's peak RSS on a CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def _free(device: str) -> None:
    """Return the memory of dropped models to the device, so the next try starts from nothing."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _largest_batch(try_batch, cap: int, deadline: float, device: str) -> tuple[int | None, list[dict]]:
    """Double the batch from BATCH_START up to `cap` while `try_batch(batch)` (→ peak GiB) runs
    without torch.cuda.OutOfMemoryError; (the largest that ran, what each try gave).

    A try starts only if one about twice as long as the last (twice the batch) ends before
    `deadline` (time.monotonic()); the first always runs.
    """
    tried: list[dict] = []
    best, batch, last_s = None, BATCH_START, 0.0
    while batch <= cap:
        if tried and time.monotonic() + 2.5 * last_s > deadline:
            tried.append({"batch": batch, "fits": None, "reason": "time budget"})
            break
        t0 = time.monotonic()
        _free(device)
        try:
            peak = try_batch(batch)
        except torch.cuda.OutOfMemoryError:
            peak = None
        _free(device)  # after the except clause: its traceback no longer holds the try's tensors
        last_s = time.monotonic() - t0
        tried.append({"batch": batch, "fits": peak is not None, "peak_memory_gib": peak, "seconds": last_s})
        if peak is None:
            break
        best, batch = batch, 2 * batch
    return best, tried


def _search_batch(shape: Shape, device: str, cap: int, deadline: float) -> tuple[int | None, list[dict]]:
    """The largest batch at which both models train side by side (as they are measured), eager.

    The models and their AdamW moments are built once; each try only adds its tokens and
    activations. Eager rather than compiled: a compile per try would take most of the budget, and
    the compiled step (fused elementwise ops keep fewer intermediates) does not need more memory.
    """
    found = _largest_batch(_batch_trier(shape, device), cap, deadline, device)
    _free(device)  # the models went with the trier
    return found


def _batch_trier(shape: Shape, device: str):
    """batch → peak GiB of two training steps of both models at that batch (raises when out of memory)."""
    on_gpu = device.startswith("cuda")
    models = [_model_and_optimizer(shape, par, device) for par in PARAMETRIZATIONS]

    def try_batch(batch: int) -> float:
        x, y = _tokens(dataclasses.replace(shape, batch=batch), device)
        try:
            for model, optimizer in models:
                step = _step_function(model, optimizer, x, y, on_gpu)
                # Two steps: from the second on, AdamW's moments (made by the first) sit beside the
                # activations and gradients, the steady-state peak.
                step()
                float(step())
        finally:
            for _, optimizer in models:  # gradients left by a step that ran out of memory
                optimizer.zero_grad(set_to_none=True)
        return _memory_gib(device)

    return try_batch


def _measure(shape: Shape, device: str, compile_model: bool, plan: tuple[int, int, int], deadline: float,
             report=None) -> dict:  # fmt: skip
    """Both parametrizations at `shape`: warm-up (compilation), then interleaved timed rounds,
    `plan` = (rounds, steps per round, warm-up steps), ending early at `deadline`. `report(result)`
    gets the partial result after each round."""
    rounds, steps_per_round, warmup = plan
    _free(device)
    t0 = time.monotonic()
    steps, counts = {}, {}
    for par in PARAMETRIZATIONS:
        step, model = _trainer(shape, par, device, compile_model)
        for _ in range(warmup):  # compilation, autotuning, allocator warm-up
            step()
        steps[par] = step
        counts[par] = {"params": model.num_params(), "params_mfu": mfu_params(model)}
        if time.monotonic() > deadline:
            what = "compilation and warm-up" if compile_model else "warm-up"
            raise TimeoutError(f"{what} took {time.monotonic() - t0:.0f} s, past the time budget")
    result = {
        "batch": shape.batch,
        "compiled": compile_model,
        "warmup_s": time.monotonic() - t0,
        "counts": counts,
        "steps_per_round": steps_per_round,
        "times": {},
    }

    def on_round(times: dict) -> None:
        result["times"] = {par: list(t) for par, t in times.items()}
        result["peak_memory_gib"] = _memory_gib(device)
        if report is not None:
            report(result)

    _interleave(steps, rounds, steps_per_round, device, deadline, on_round)
    return result


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)  # whole or not at all, if the process is killed while writing


def _die_with_parent() -> None:
    """Linux: this process is killed when the one that started it dies (prctl PR_SET_PDEATHSIG), so
    a measurement never outlives its stage, which `workbench bench gpu` kills when its time is up."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (AttributeError, OSError):  # not Linux: the measurement's own deadline ends it
        pass


def _child_main(spec_json: str, out: str) -> int:
    """In the measuring process: `_measure` with the spec's settings; on running out of memory
    (a compiled graph can differ from the eager one it was sized with) half the batch, again."""
    _die_with_parent()
    spec = json.loads(spec_json)
    device = spec["device"]
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(spec["threads"])
    deadline = time.monotonic() + spec["deadline_epoch"] - time.time()
    shape = Shape(**spec["shape"])
    while True:
        try:
            _measure(shape, device, spec["compile"], tuple(spec["plan"]), deadline, lambda r: _write_json(Path(out), r))
            return 0
        except TimeoutError as error:
            print(error, file=sys.stderr)
            return 3
        except torch.cuda.OutOfMemoryError:
            pass
        torch._dynamo.reset()  # the compiled graphs of the models that did not fit
        _free(device)
        if shape.batch == 1 or time.monotonic() > deadline:
            print(f"out of memory down to batch {shape.batch}", file=sys.stderr)
            return 4
        shape = dataclasses.replace(shape, batch=shape.batch // 2)


def _measure_in_child(shape: Shape, device: str, compile_model: bool, plan: tuple[int, int, int],
                      deadline: float) -> tuple[dict | None, str]:  # fmt: skip
    """`_measure` in a process of its own, killed at `deadline`: a compilation cannot be stopped
    from inside, so it runs where stopping it loses only what it was doing. (result with at least
    one round, or None; why not)."""
    timeout = deadline - time.monotonic()
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
        out = Path(tmp) / "measure.json"
        spec = {"shape": dataclasses.asdict(shape), "device": device, "compile": compile_model, "plan": list(plan),
                "threads": torch.get_num_threads(), "deadline_epoch": time.time() + timeout - 1.0}  # fmt: skip
        command = [sys.executable, "-m", "workbench.lm.bench", json.dumps(spec), str(out)]
        note = ""
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 1.0), env=env)
            if done.returncode:
                lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
                note = lines[-1][:300] if lines else f"exited with status {done.returncode}"
        except subprocess.TimeoutExpired:
            note = f"stopped at the time budget after {timeout:.0f} s"
        result = json.loads(out.read_text()) if out.is_file() else None
    if result is None or not result["times"].get(PARAMETRIZATIONS[-1]):
        return None, note or "no round was measured"
    return result, note


def _row(measure: str, value, unit: str, goal: str | None = None, met: bool | None = None) -> dict:
    return {"measure": measure, "value": value, "unit": unit, "goal": goal, "met": met}


def _rows(result: dict | None, shape: Shape, device: str, cap: int, reason: str) -> list[dict]:
    """The stage's table rows; every measure present, None with `reason` where none was taken."""
    mfu_goal, overhead_goal = f">= {100 * MFU_GOAL:g} %", f"<= {100 * OVERHEAD_GOAL:g} %"
    if result is None:
        return [
            *(_row(f"tokens/s {LABELS[p]}", None, reason) for p in PARAMETRIZATIONS),
            *(_row(f"MFU {LABELS[p]}", None, reason, mfu_goal) for p in PARAMETRIZATIONS),
            _row("muP overhead", None, reason, overhead_goal),
            _row("batch", None, reason),
            _row("peak memory", None, reason),
        ]
    peak = peak_flops(device)
    tokens = result["batch"] * shape.seq_len
    eager = " (eager)" if device.startswith("cuda") and not result["compiled"] else ""
    rows, mfu_rows = [], []
    for par in PARAMETRIZATIONS:
        tokens_per_s = tokens / statistics.median(result["times"][par])
        rows.append(_row(f"tokens/s {LABELS[par]}", tokens_per_s, "tokens/s" + eager))
        if peak:
            mfu = tokens_per_s * flops_per_token(result["counts"][par]["params_mfu"], shape) / peak
            mfu_rows.append(_row(f"MFU {LABELS[par]}", 100 * mfu, f"% of {peak / 1e12:g} TFLOP/s" + eager,
                                 mfu_goal, mfu >= MFU_GOAL))  # fmt: skip
        else:
            mfu_rows.append(_row(f"MFU {LABELS[par]}", None, f"n/a: no bf16 peak known for {device}", mfu_goal))
    ratios = [a / b for a, b in zip(result["times"]["mup"], result["times"]["sp"])]
    overhead = statistics.median(ratios) - 1
    memory = "GiB, both models (max allocated)" if device.startswith("cuda") else "GiB (process peak RSS)"
    return [
        *rows,
        *mfu_rows,
        _row("muP overhead", 100 * overhead, "% per step" + eager, overhead_goal, overhead <= OVERHEAD_GOAL),
        _row("batch", result["batch"], f"x {shape.seq_len} tokens, largest that fit (cap {cap})"),
        _row("peak memory", result["peak_memory_gib"], memory),
    ]


def gpu_stage(device: str = "cuda", quick: bool = False, budget_s: float = 60.0) -> dict:
    """The LM stage of `workbench bench gpu`: GPT-2 small (12 × 768, 12 heads, vocabulary 50,304,
    sequence 1,024) under muP and as plain PyTorch, at the largest batch that fits (doubling from 8
    to 64), bf16 autocast, torch.compile, fused AdamW; tokens/s, MFU, muP overhead, peak memory.

    Within `budget_s`: the batch search takes at most 30 % of it; the compiled measurement runs in a
    process of its own that is killed at the end (minus a reserve), and if it measured nothing the
    same steps are timed eager in this process with the reserve. On a CPU (`--quick`: CPU_QUICK,
    batches 8 and 16, two steps per round) the same code runs without compilation.
    """
    # The quick CPU model is so small that a second thread's fork/join per op costs more than it
    # saves, and much more on a shared machine; the measuring process inherits the count.
    threads = torch.get_num_threads()
    if quick and not device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        return _lm_stage(device, quick, budget_s)
    finally:
        torch.set_num_threads(threads)


def _lm_stage(device: str, quick: bool, budget_s: float) -> dict:
    start = time.monotonic()
    end = start + budget_s - min(5.0, 0.1 * budget_s)  # leave time to write the result and free the device
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    base = (GPU_QUICK if quick else GPU_SHAPE) if on_gpu else (CPU_QUICK if quick else CPU_SHAPE)
    cap = 64 if on_gpu and not quick else 16
    # (rounds, steps per round, warm-up steps): 10 steps of ~0.1 s per round on an H200 at batch 64
    plan = ((3, 3, 2) if quick else (5, 10, 3)) if on_gpu else ((3, 2, 1) if quick else (5, 3, 1))
    batch, search = _search_batch(base, device, cap, start + 0.3 * (end - start))
    shape = dataclasses.replace(base, batch=batch or base.batch)
    details: dict = {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "shape": {k: v for k, v in dataclasses.asdict(shape).items() if k != "batch"},
        "bf16_autocast": on_gpu,
        "fused_adamw": on_gpu,
        "batch_search": search,
        "peak_flops": peak_flops(device),
    }
    result, note = None, ""
    if batch is None:
        note = "out of memory at batch 8" if search and search[0]["fits"] is False else "time budget spent"
    else:
        # Kept for the eager fallback: its warm-up and three short rounds, about what one search try took.
        search_s = next(t["seconds"] for t in search if t["batch"] == batch)
        reserve = min(max(3.0, 2.0 * search_s), 0.4 * max(end - time.monotonic(), 0.0))
        result, note = _measure_in_child(shape, device, on_gpu, plan, end - reserve)
        if result is None and time.monotonic() < end:
            try:
                result = _measure(shape, device, False, (3, 3, 1), end)
                note = f"compiled measurement: {note}; eager in-process instead" if on_gpu else note
            except (TimeoutError, torch.cuda.OutOfMemoryError) as error:
                note = f"{note}; eager fallback: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            _free(device)
    if result is not None:
        counts = result["counts"]["sp"]
        shape = dataclasses.replace(shape, batch=result["batch"])
        details.update(
            compiled=result["compiled"],
            batch=result["batch"],
            warmup_s=result["warmup_s"],
            step_s=result["times"],
            steps_per_round=result["steps_per_round"],
            params=counts["params"],
            params_mfu=counts["params_mfu"],
            flops_per_token=flops_per_token(counts["params_mfu"], shape),
        )
    details["mfu_formula"] = (
        "MFU = tokens/s x (6 N + 12 L d T) / peak, per token 6 N for the weights (forward 2, backward 4) "
        "plus 12 L d T for attention scores and values (nanoGPT estimate_mfu; PaLM, Chowdhery et al. 2022, "
        "App. B); N = all parameters but the token and position embeddings (lookups, no matmul), the "
        "untied readout included (params_mfu); L, d, T = depth, width, sequence; peak = dense bf16 of the "
        "GPU (H100/H200 989 TFLOP/s)"
    )
    details["note"] = note
    details["seconds"] = time.monotonic() - start
    reason = note if result is None else ""
    return {"rows": _rows(result, shape, device, cap, reason or "not measured"), "details": details, "skipped": None}


__all__ = ["CPU_SHAPE", "GPU_SHAPE", "flops_per_token", "format_result", "gpu_stage", "mfu_params", "peak_flops", "run"]


if __name__ == "__main__":  # the measuring process of `gpu_stage` (see _measure_in_child)
    sys.exit(_child_main(*sys.argv[1:]))
