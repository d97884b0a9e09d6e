"""Coordinate check: per-module activation scale versus width over a few optimizer steps.

Following `mup/coord_check.py` (Yang et al., TP5 §D): build the same model at several widths,
train a few Adam steps on one fixed batch, and record `l1 = mean |x|` of chosen module outputs
at every step. Under a correct muP every coordinate stays O(1) as width grows, so the log-log
slope of l1 against width is near 0; under SP it grows after the first update.

Variants (the negative controls must fail the check):
- "mup": muP model, `MuAdamW`;
- "sp": standard parametrisation, torch `AdamW`;
- "mup-torch-adamw": muP model but plain torch `AdamW` (no per-layer LR scaling);
- "mup-no-reinit": muP base shapes set, but nanoGPT's fixed-std init is not redone with `mup.init`;
- "mup-bad-delta": the delta model does not vary the MLP hidden size, so mup treats it as finite
  (mup's own hidden-size assertion would refuse this; it is switched off for the control).

The slope reported for a module is the least-squares slope of log2 l1 against log2 width at the
step where its magnitude is largest (steps with l1 = 0 at some width, e.g. a zero-initialised
readout at t = 0, are skipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from workbench.errors import InputError
from workbench.figures import finish_figure, new_figure
from workbench.lm.config import MUP_MISSING
from workbench.lm.corpora import markov_corpus
from workbench.lm.model import GPT, GPTConfig, base_shapes, build_model, make_optimizer, set_base_shapes

try:  # left out of the dependencies on purpose (MUP_MISSING says why)
    import mup
except ModuleNotFoundError:
    raise InputError(MUP_MISSING) from None

__all__ = ["HIDDEN_MODULES", "MODULES", "VARIANTS", "coord_check", "coord_data", "plot_coord_data", "slopes"]

VARIANTS = ("mup", "sp", "mup-torch-adamw", "mup-no-reinit", "mup-bad-delta")
# Module kind → how to find its modules in a GPT (averaged over layers).
MODULES = ("embedding", "attn_out", "mlp_hidden", "mlp_out", "logits")
HIDDEN_MODULES = ("attn_out", "mlp_hidden", "mlp_out")


def _modules(model: GPT) -> dict[str, list[torch.nn.Module]]:
    return {
        "embedding": [model.wte],
        "attn_out": [block.attn for block in model.blocks],
        "mlp_hidden": [block.mlp.c_fc for block in model.blocks],
        "mlp_out": [block.mlp for block in model.blocks],
        "logits": [model.lm_head],
    }


def _build(variant: str, config: GPTConfig, lr: float):
    if variant == "sp":
        model = GPT(dataclasses.replace(config, parametrization="sp"))
        return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if variant == "mup":
        model = build_model(config)
        return model, make_optimizer(model, lr=lr)
    if variant == "mup-torch-adamw":
        model = build_model(config)
        return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if variant == "mup-no-reinit":
        model = GPT(config)
        set_base_shapes(model, base_shapes(config))  # init_weights() deliberately not called again
        return model, make_optimizer(model, lr=lr)
    if variant == "mup-bad-delta":
        model = GPT(config)
        set_base_shapes(model, _delta_without_mlp(config), do_assert=False)
        model.init_weights()
        return model, make_optimizer(model, lr=lr)
    raise InputError(f"coord-check variant {variant!r} is not valid; choose from: {', '.join(VARIANTS)}")


def _delta_without_mlp(config: GPTConfig) -> dict:
    """Base shapes from a wrong delta: width doubled everywhere except the MLP hidden size."""

    def shapes(width: int) -> dict:
        with torch.device("meta"):
            return mup.get_shapes(GPT(dataclasses.replace(config, width=width, heads=1)))

    base, delta = shapes(config.base_width), shapes(2 * config.base_width)
    hidden = config.mlp_ratio * config.base_width
    for name in delta:
        if name.endswith("mlp.c_fc.weight"):
            delta[name] = torch.Size((hidden, delta[name][1]))
        elif name.endswith("mlp.c_proj.weight"):
            delta[name] = torch.Size((delta[name][0], hidden))
    return mup.make_base_shapes(base, delta)


def coord_data(
    variant: str,
    widths: Sequence[int] = (32, 64, 128, 256),
    *,
    head_dim: int = 8,
    depth: int = 2,
    steps: int = 4,
    seeds: int = 3,
    lr: float = 1e-2,
    batch_size: int = 8,
    seq_len: int = 16,
    data_seed: int = 0,
) -> np.ndarray:
    """l1 = mean |output| as an array [seed, width, step (0 = init … steps), module (MODULES order)].

    Heads grow with width (d_head fixed); the smallest width is the muP base width. One fixed
    batch of the synthetic Markov corpus is used at every step and width.
    """
    widths = list(widths)
    if len(widths) < 2 or sorted(widths) != widths or any(w % head_dim for w in widths):
        raise InputError(f"widths {widths} must be >= 2 increasing multiples of head_dim = {head_dim}")
    corpus = markov_corpus(n_tokens=max(4096, 4 * batch_size * (seq_len + 1)), val_tokens=seq_len + 1, seed=data_seed)
    x, y = corpus.sample_batch("train", batch_size, seq_len, data_seed)
    out = np.zeros((seeds, len(widths), steps + 1, len(MODULES)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend (10x slower on 2 shared cores)
    try:
        for s in range(seeds):
            _run_seed(out[s], s, variant, widths, head_dim, depth, seq_len, lr, steps, x, y)
    finally:
        torch.set_num_threads(threads)
    return out


def _run_seed(
    out: np.ndarray,
    seed: int,
    variant: str,
    widths: list[int],
    head_dim: int,
    depth: int,
    seq_len: int,
    lr: float,
    steps: int,
    x: torch.Tensor,
    y: torch.Tensor,
) -> None:
    """Fill out[width, step, module] for one seed."""
    for w_index, width in enumerate(widths):
        config = GPTConfig(
            width=width,
            heads=width // head_dim,
            depth=depth,
            seq_len=seq_len,
            base_width=widths[0],
            parametrization="mup",
        )
        torch.manual_seed(1000 * seed + 17)
        model, optimizer = _build(variant, config, lr)
        record: dict[str, list[float]] = {}

        def hook(kind, record=record):
            return lambda _module, _inputs, output: record.setdefault(kind, []).append(
                output.detach().abs().mean(dtype=torch.float64).item()
            )

        handles = [
            module.register_forward_hook(hook(kind)) for kind, modules in _modules(model).items() for module in modules
        ]
        for t in range(steps + 1):
            record.clear()
            _, loss = model(x, y)
            out[w_index, t] = [np.mean(record[kind]) for kind in MODULES]
            if t < steps:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for handle in handles:
            handle.remove()


def slopes(data: np.ndarray, widths: Sequence[int]) -> dict[str, float]:
    """Per module: log2-log2 slope of seed-mean l1 against width, at the step where it is largest."""
    log_w = np.log2(np.asarray(widths, dtype=float))
    mean = data.mean(axis=0)  # [width, step, module]
    result = {}
    for m, kind in enumerate(MODULES):
        best = 0.0
        for t in range(mean.shape[1]):
            scale = mean[:, t, m]
            if np.all(scale > 0):
                slope = float(np.polyfit(log_w, np.log2(scale), 1)[0])
                if abs(slope) > abs(best):
                    best = slope
        result[kind] = best
    return result


def coord_check(
    widths: Sequence[int] = (32, 64, 128, 256), variants: Sequence[str] = VARIANTS, **kwargs
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """({variant: {module: slope}}, {variant: l1 data}) for every variant."""
    data = {variant: coord_data(variant, widths, **kwargs) for variant in variants}
    return {variant: slopes(d, widths) for variant, d in data.items()}, data


def plot_coord_data(data: dict[str, np.ndarray], widths: Sequence[int], path=None):
    """One panel per variant: seed-mean l1 vs width (log-log), one line per module at the last step.
    Returns the figure; writes it to `path` when given."""
    fig, axes = new_figure((4 * len(data), 3.5), ncols=len(data))
    for ax in axes[0][1:]:
        ax.sharey(axes[0][0])
    for ax, (variant, d) in zip(axes[0], data.items()):
        mean = d.mean(axis=0)
        for m, kind in enumerate(MODULES):
            ax.plot(widths, mean[:, -1, m], marker="o", label=kind)
        ax.set(xscale="log", yscale="log", xlabel="width", title=f"{variant} (t = {d.shape[2] - 1})")
    axes[0][0].set_ylabel("mean |activation|")
    axes[0][-1].legend(fontsize=7)
    return finish_figure(fig, path)
