"""Porian et al.'s reconciliation ladder: from Kaplan's exponent to Hoffmann's, one correction at a time.

Each step is a separate set of runs (Porian et al. 2024, Fig. 1 panels a-e; experiment names as in
their repository's `configs.py`):
  kaplan count  -> Kaplan's setup: non-embedding N, long warmup, cosine to a fixed horizon
  + head FLOPs  -> count the output head in N and C (and read validation loss)
  + warmup      -> warmup scaled to model size
  + decay       -> cosine matched to each run's length
  + tuning      -> tuned AdamW (LR, batch size, beta2) with constant LR
Every step is fitted with Approach 2 (`scaling.isoflop`), the estimator Porian used. Approach 3
does not reproduce the ladder on these points, not even its order: except for the `+ decay` step,
the points are mid-run checkpoints of longer runs, not end-of-schedule losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scaling.datasets import load_dataset
from scaling.isoflop import IsoflopFit, fit_isoflop, isoflop_optima
from workbench.errors import InputError


@dataclass(frozen=True)
class LadderStep:
    step: str
    experiment: str


PORIAN_LADDER = (
    LadderStep("kaplan count", "reproducing_kaplan"),
    LadderStep("+ head FLOPs", "counting_last_layer_flops"),
    LadderStep("+ warmup", "correcting_warmup"),
    LadderStep("+ decay", "cosine_decay"),
    LadderStep("+ tuning", "optimizer_tuning_no_decay"),
)
# The same corrections with attention FLOPs counted (RefinedWeb only), and Kaplan's count with
# tuned hyperparameters (Porian §4, "Kaplan adjusted").
PORIAN_ATTENTION_LADDER = (
    LadderStep("attn: + head FLOPs", "attn_counting_last_layer_and_attention"),
    LadderStep("attn: + warmup", "attn_correcting_warmup"),
    LadderStep("attn: + decay", "attn_cosine_decay"),
    LadderStep("attn: + tuning", "attn_optimizer_tuning_no_decay"),
    LadderStep("kaplan count, tuned", "kaplan_adjusted_tuned_hparams"),
)
# Seed-noise sigma Porian used for the bootstrap of each dataset (their `analysis.py`; the
# loss-dependent "noise_high" there compares thresholds 3 and 7 with log loss, so never applies).
PORIAN_NOISE = {"porian-rw": 0.002, "porian-owt2": 0.01}
PORIAN_DATASET_LABEL = {"porian-rw": "RefinedWeb", "porian-owt2": "OpenWebText2"}


def ladder_for(runs: pd.DataFrame, steps: tuple[LadderStep, ...] | None = None) -> tuple[LadderStep, ...]:
    """The ladder steps present in `runs` (by its `experiment` column), in ladder order."""
    if "experiment" not in runs.columns:
        raise InputError("reconcile needs an 'experiment' column naming each run's setup (one ladder step each)")
    present = list(dict.fromkeys(runs["experiment"]))
    if steps is None:
        known = {s.experiment: s for s in PORIAN_LADDER + PORIAN_ATTENTION_LADDER}
        steps = (
            tuple(known.get(e, LadderStep(e, e)) for e in present)
            if not set(present) <= set(known)
            else tuple(s for s in PORIAN_LADDER + PORIAN_ATTENTION_LADDER if s.experiment in present)
        )
    missing = [s.experiment for s in steps if s.experiment not in present]
    if missing:
        raise InputError(f"experiments {missing} are not in the data; it has: {', '.join(present)}")
    return steps


def reconcile(
    runs: pd.DataFrame,
    *,
    steps: tuple[LadderStep, ...] | None = None,
    noise: float = 0.002,
    replicates: int = 1000,
    seed: int = 0,
    published: pd.DataFrame | None = None,
    progress=None,
) -> list[tuple[LadderStep, IsoflopFit, dict]]:
    """Fit every ladder step with Approach 2; returns (step, fit, summary row) triples in order."""
    out = []
    for step in ladder_for(runs, steps):
        subset = runs[runs["experiment"] == step.experiment]
        fit = fit_isoflop(isoflop_optima(subset, noise=noise, replicates=replicates, seed=seed), noise=noise)
        N_star, N_ci = fit.N_star_at()
        row = {
            "step": step.step,
            "experiment": step.experiment,
            "a": fit.a,
            "a_ci": fit.a_ci,
            "b": fit.b,
            "b_ci": fit.b_ci,
            "N_star_at_5.88e23": N_star,
            "N_star_ci": N_ci,
            "rho_range": fit.rho_range(),
            "n_budgets": len(fit.used),
        }
        if "flop_count" in subset.columns:
            row["convention"] = str(subset["flop_count"].iloc[0])
        if published is not None:
            match = published[published["experiment"] == step.experiment]
            if len(match) == 1:
                row["published_a"] = float(match["a"].iloc[0])
                row["published_a_ci"] = [float(match["a_ci95_lo"].iloc[0]), float(match["a_ci95_hi"].iloc[0])]
        out.append((step, fit, row))
        if progress is not None:
            progress(len(out))
    return out


def reconcile_porian(
    dataset: str = "porian-rw", *, attention: bool = False, replicates: int = 1000, seed: int = 0, progress=None
):
    """The ladder on a bundled Porian dataset, with the published exponents alongside."""
    if dataset not in PORIAN_NOISE:
        raise InputError(f"the Porian ladder is defined for datasets {', '.join(PORIAN_NOISE)}; got '{dataset}'")
    runs = load_dataset(dataset)
    steps = PORIAN_LADDER + (PORIAN_ATTENTION_LADDER if attention and dataset == "porian-rw" else ())
    published = load_dataset("porian-published")
    published = published[published["dataset"] == PORIAN_DATASET_LABEL[dataset]]
    return reconcile(
        runs,
        steps=steps,
        noise=PORIAN_NOISE[dataset],
        replicates=replicates,
        seed=seed,
        published=published,
        progress=progress,
    )
