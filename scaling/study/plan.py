"""Plan an IsoFLOP study: for each compute budget, K model shapes around the expected optimum and
the tokens that make each run's FLOPs equal the budget (Hoffmann et al. 2022, §3.2, Approach 2).

For budget C the expected optimum is N₀ = sqrt(C / (6·r)) with r tokens per parameter (Hoffmann
et al.'s ≈ 20), since C = 6·N·D and D = r·N. The K target sizes are log-spaced over a factor a
little wider than `spread`, centred on N₀, so that the chosen shapes span at least `spread`; each
is matched to the nearest available shape (widths in multiples of the head size, the config's
depth unless another depth is much closer), and each run trains for D = C / FLOPs-per-token
tokens, rounded to whole steps of batch × sequence tokens. N and the FLOPs
per token follow the chosen convention (`scaling.conventions`), attention included where the
convention counts it, so the plan and the later fit measure compute the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaling.conventions import check_convention, flops_per_token, param_count
from workbench.errors import InputError

__all__ = ["MIN_STEPS", "WARMUP_SHARE", "Corrections", "PlannedRun", "plan_isoflop", "run_settings"]

# Whole steps make a run's FLOPs differ from its budget by at most half a step: 1 % needs >= 50 steps.
MIN_STEPS = 50
# The corrected warm-up never takes more than this share of a run's steps.
WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class PlannedRun:
    budget: float  # the requested compute C (FLOPs)
    width: int
    depth: int
    heads: int
    N: float  # parameters under the convention (effective N for attention / chinchilla)
    D: float  # training tokens = steps · batch · seq_len
    steps: int
    C: float  # FLOPs of the run as planned: flops_per_token · D

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("budget", "width", "depth", "heads", "N", "D", "steps", "C")}


def plan_isoflop(
    budgets: Sequence[float],
    sizes: int,
    convention: str,
    *,
    head_dim: int,
    depth: int,
    seq_len: int,
    batch_size: int,
    vocab: int,
    mlp_ratio: int = 4,
    spread: float = 8.0,
    tokens_per_param: float = 20.0,
    max_width: int = 4096,
    max_depth: int | None = None,
    centre: float | None = None,
) -> list[PlannedRun]:
    """K = `sizes` runs per budget (see the module docstring), centred on `centre` when it is given
    (a predicted N*); InputError for a budget that is not
    a positive number, one too small for its smallest planned model to train MIN_STEPS steps, or
    more sizes than distinct shapes near the optimum."""
    check_convention(convention)
    expected = centre
    if expected is not None and not (math.isfinite(expected) and expected > 0):
        raise InputError(f"--centre {expected}: must be a positive number of parameters")
    budgets = [float(c) for c in budgets]
    if not budgets or any(not (math.isfinite(c) and c > 0) for c in budgets):
        raise InputError(f"--budgets {','.join(map(str, budgets))}: every budget must be a positive number of FLOPs")
    if len(set(budgets)) != len(budgets):
        raise InputError("--budgets: a budget is listed twice")
    if sizes < 2:
        raise InputError(f"--sizes {sizes}: an IsoFLOP curve needs at least 2 sizes per budget (5 or more to fit)")
    if not spread > 1:
        raise InputError(f"--spread {spread}: the sizes must span a factor > 1")
    widths = np.arange(head_dim, max_width + 1, head_dim)
    depths = np.arange(1, (max_depth or max(4 * depth, 8)) + 1)
    W, L = (a.ravel() for a in np.meshgrid(widths, depths))
    shape = {"vocab": vocab, "seq_len": seq_len, "d_ff": mlp_ratio * W, "ffn": "mlp", "n_heads": W // head_dim}
    N = param_count(convention, width=W, depth=L, **shape)
    per_token = flops_per_token(convention, width=W, depth=L, **shape)
    tokens_per_step = batch_size * seq_len
    plan = []
    smallest = int(np.argmin(per_token))
    for C in sorted(budgets):
        steps_smallest = C / per_token[smallest] / tokens_per_step
        if steps_smallest < MIN_STEPS:
            raise InputError(
                f"--budgets {C:.3g}: too small for the smallest model (width {int(W[smallest])}, depth "
                f"{int(L[smallest])}, N = {N[smallest]:.3g}), which would train {steps_smallest:.0f} steps of "
                f"{tokens_per_step} tokens; a run needs at least {MIN_STEPS} for its FLOPs to match within 1 %"
            )
        centre = math.sqrt(C / (6.0 * tokens_per_param)) if expected is None else expected
        # targets a little wider than `spread`, so that the discrete shapes still span it
        targets = centre * (1.25 * spread) ** np.linspace(-0.5, 0.5, sizes)
        # nearest shape by log N; another depth than the config's costs as much as a 15 % miss
        score = np.abs(np.log(N[None, :] / targets[:, None])) + 0.15 * (L[None, :] != depth)
        chosen: list[int] = []
        for row in score:
            for index in np.argsort(row, kind="stable"):
                if index not in chosen:
                    chosen.append(int(index))
                    break
        chosen.sort(key=lambda i: N[i])
        if len({round(float(N[i])) for i in chosen}) < sizes or N[chosen[-1]] / N[chosen[0]] < spread:
            if centre / math.sqrt(spread) < N.min():
                raise InputError(
                    f"--budgets {C:.3g}: too small for {sizes} sizes around its optimum N ≈ {centre:.3g}: the "
                    f"smallest model has N = {N.min():.3g}; give larger budgets or fewer sizes"
                )
            raise InputError(
                f"--sizes {sizes} at C = {C:.3g}: not enough distinct shapes near the optimum "
                f"(N ≈ {centre:.3g}; head size {head_dim}, widths up to {max_width}); ask for fewer sizes"
            )
        for i in chosen:
            steps = round(C / per_token[i] / tokens_per_step)
            if steps < MIN_STEPS:
                raise InputError(
                    f"--budgets {C:.3g}: too small for width {int(W[i])}, depth {int(L[i])} "
                    f"(N = {N[i]:.3g}), which would train {steps} steps of {tokens_per_step} tokens; "
                    f"a run needs at least {MIN_STEPS} for its FLOPs to match the budget within 1 %"
                )
            D = float(steps * tokens_per_step)
            plan.append(PlannedRun(C, int(W[i]), int(L[i]), int(W[i] // head_dim), float(N[i]), D, int(steps),
                                   float(per_token[i] * D)))  # fmt: skip
    return plan


@dataclass(frozen=True)
class Corrections:
    """The training settings Porian et al. (2024, §3.2–3.4) found necessary for Kaplan's and
    Hoffmann's laws to agree; each can be switched off to run the Kaplan-style setting.

    - `warmup`: warm up for N tokens (Porian et al.: the warm-up scaled to the model), never more
      than WARMUP_SHARE of the run; off: the config's fixed `warmup_steps` for every run, as
      Kaplan et al.'s fixed 3,000 steps, however short the run.
    - `decay`: the cosine ends at each run's own last step (Hoffmann et al. 2022, §3.1 / App. B);
      off: every run follows the schedule of the longest run of the plan, so shorter runs stop
      partway down it (Kaplan et al. 2020's fixed horizon).
    - `mup`: muP, so the learning rate chosen at the base width holds at every width (Yang et al.
      2021) in place of Porian et al.'s per-size tuning; off: standard parametrisation.
    """

    warmup: bool = True
    decay: bool = True
    mup: bool = True


def run_settings(plan: Sequence[PlannedRun], corrections: Corrections, *, tokens_per_step: int,
                 warmup_steps: int) -> list[dict[str, int | str]]:  # fmt: skip
    """The `model.*` / `train.*` settings of each planned run: its shape, length and schedule."""
    longest = max(run.steps for run in plan)
    settings = []
    for run in plan:
        if corrections.warmup:
            warmup = min(math.ceil(run.N / tokens_per_step), max(1, int(WARMUP_SHARE * run.steps)))
        else:
            warmup = warmup_steps
        settings.append({
            "model.width": run.width,
            "model.depth": run.depth,
            "train.max_steps": run.steps,
            "model.warmup_steps": max(1, warmup),
            "model.lr_decay_steps": run.steps if corrections.decay else longest,
            "model.parametrization": "mup" if corrections.mup else "sp",
        })  # fmt: skip
    return settings
