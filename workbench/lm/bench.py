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
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time

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


def _trainer(shape: Shape, parametrization: str, device: str, compile_model: bool):
    """A closure that runs one training step; the model is built and warmed up here."""
    torch.manual_seed(0)
    model = build_model(shape.model_config(parametrization)).to(device)
    on_gpu = device.startswith("cuda")
    kwargs = {"fused": True} if on_gpu else {}
    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1, **kwargs)
    n_params = model.num_params()
    step_model = torch.compile(model) if compile_model else model
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randint(0, shape.vocab, (shape.batch, shape.seq_len), generator=g).to(device)
    y = torch.randint(0, shape.vocab, (shape.batch, shape.seq_len), generator=g).to(device)

    def step() -> float:
        with torch.autocast(device_type="cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu):
            _, loss = step_model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step, n_params


def _time(step, steps: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)  # the last step's result must exist before the clock stops
    sync()
    return (time.perf_counter() - t0) / steps


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
        step, n_params = _trainer(shape, par, device, compile_model)
        for _ in range(warmup):  # compilation, autotuning, allocator warm-up
            step()
        runs[par] = {"step": step, "n_params": n_params, "times": []}
    for _ in range(rounds):  # interleaved: both see the same machine state
        for par in ("mup", "sp"):
            runs[par]["times"].append(_time(runs[par]["step"], steps, device))
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
        t = statistics.median(runs[par]["times"])
        fpt = flops_per_token(runs[par]["n_params"], shape)
        result[par] = {
            "params": runs[par]["n_params"],
            "step_s": t,
            "tokens_per_s": tokens / t,
            "model_tflops": tokens * fpt / t / 1e12,
            "mfu": tokens * fpt / t / peak if peak else None,
        }
    ratios = [a / b for a, b in zip(runs["mup"]["times"], runs["sp"]["times"])]
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


__all__ = ["CPU_SHAPE", "GPU_SHAPE", "flops_per_token", "format_result", "peak_flops", "run"]
