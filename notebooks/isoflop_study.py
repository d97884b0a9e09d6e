# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A compute-optimal study of one's own models, checked at a held-out budget
#
# `workbench demo isoflop` plans an IsoFLOP grid of tiny muP GPTs (`jobs/configs/isoflop_demo.yaml`)
# on the spectral Markov source, where both the model size N and the tokens D limit the loss,
# trains it as one job array, fits Approach 2 (IsoFLOP minima, Porian et al. 2024's estimator) and
# Approach 3 (Hoffmann et al. 2022's L(N, D) = E + A/N^α + B/D^β), predicts N*, D* and L* at a
# budget four times the largest, and trains a few sizes there to check. This notebook reads that
# study's runs — from `runs/isoflop_demo` (or `$WORKBENCH_ISOFLOP_RUNS`) when the demo has run here,
# else from the tables of the study in `notebooks/results/isoflop_study/` — and refits it step
# by step.
#
# `WORKBENCH_SMALL=1` (the tests) uses fewer bootstrap replicates.

# %%
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import workbench
from scaling.fit import bootstrap_parametric, fit_parametric
from scaling.isoflop import estimate_noise, fit_isoflop, isoflop_optima
from scaling.study.predict import predict_isoflop, predict_parametric
from scaling.table import load_runs
from workbench.demo_isoflop import CONVENTION, plot_study

SMALL = os.environ.get("WORKBENCH_SMALL") == "1"
REPLICATES, BOOTSTRAP = (200, 20) if SMALL else (1000, 200)


def find_study():
    """(grid runs, held-out runs, study.json) from a demo run here, else the recorded study."""
    live = Path(os.environ.get("WORKBENCH_ISOFLOP_RUNS", "runs")) / "isoflop_demo"
    if (live / "study.json").is_file():
        from scaling.study.cli import sweep_dataset
        from scaling.study.runs import runs_from_sweep

        study = json.loads((live / "study.json").read_text())
        tables = [runs_from_sweep(sweep_dataset(Path(p)), CONVENTION, name=p) for p in study["sweeps"].values()]
        return *tables, study, str(live)
    recorded = Path(workbench.__file__).resolve().parents[1] / "notebooks" / "results" / "isoflop_study"
    if not recorded.is_dir():
        raise FileNotFoundError("no isoflop study found: run `workbench demo isoflop` first")
    study = json.loads((recorded / "study.json").read_text())
    grid, holdout = (pd.read_csv(recorded / name) for name in ("grid_runs.csv", "holdout_runs.csv"))
    return grid, holdout, study, str(recorded)


grid_table, holdout_table, study, where = find_study()
print(
    f"study from {where}: {len(grid_table)} runs at {len(set(grid_table['budget']))} budgets, "
    f"{len(holdout_table)} at the held-out budget {study['holdout_budget']:.3g}"
)

# %% [markdown]
# ## The runs, and the IsoFLOP minimum of each budget
#
# N and C count under the `standard` convention (non-embedding parameters plus the output head;
# C = 6·N·D). Each budget's minimum is an Akima spline's, with a noise bootstrap for its spread;
# a minimum at the edge of the sizes would be refused.

# %%
runs = load_runs(grid_table, convention=CONVENTION, name="grid")
noise, noise_source = estimate_noise(runs)
optima = isoflop_optima(runs, noise=noise, replicates=REPLICATES)
print(
    pd.DataFrame(
        [{"C": o.C, "sizes": o.n_sizes, "N*": o.N_star, "loss*": o.loss_star, "status": o.status} for o in optima]
    ).to_string(index=False)
)
print(f"bootstrap noise sigma {noise:.3g} ({noise_source})")

# %% [markdown]
# ## Predictions at the held-out budget
#
# Approach 2: N*(C) = G·C^a through the minima, D* = C/(6·N*), and L* by a power law through
# the minimum losses. Approach 3: the parametric law's allocation (Hoffmann et al. Eq. 4).

# %%
C = study["holdout_budget"]
iso = predict_isoflop(fit_isoflop(optima, noise=noise), C)
N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
law = bootstrap_parametric(N, D, loss, fit_parametric(N, D, loss), n_boot=BOOTSTRAP, seed=0)
par = predict_parametric(law, C)
print(f"L(N, D) = {law.law.E:.4g} + {law.law.A:.4g}/N^{law.law.alpha:.3f} + {law.law.B:.4g}/D^{law.law.beta:.3f}")
print(pd.DataFrame([p.to_json() for p in (iso, par)]).to_string(index=False))

# %% [markdown]
# ## The check: what the held-out budget's runs measured

# %%
measured = load_runs(holdout_table, convention=CONVENTION, name="held out")
measured = measured.groupby("N", as_index=False)[["D", "C", "loss"]].mean()  # a size's seeds averaged
best = measured.loc[measured["loss"].idxmin()]
[check] = isoflop_optima(measured, replicates=0)  # the interpolated minimum of the averaged curve
measured_N = check.N_star if check.ok else float(best["N"])
print(measured[["N", "D", "loss"]].to_string(index=False))
print(
    f"best measured loss {best['loss']:.4f}: {100 * (best['loss'] / par.L_star - 1):+.2f} % from Approach 3's "
    f"L* {par.L_star:.4f}, {100 * (best['loss'] / iso.L_star - 1):+.2f} % from Approach 2's {iso.L_star:.4f}"
)
print(
    f"measured N* {measured_N:.4g} ({'interpolated' if check.ok else 'best trained size'}): "
    f"{measured_N / iso.N_star:.2f}x Approach 2's {iso.N_star:.4g}, {measured_N / par.N_star:.2f}x Approach 3's "
    f"{par.N_star:.4g}"
)

# %%
result = {
    "convention": CONVENTION,
    "holdout_budget": C,
    "prediction": {"isoflop": iso.to_json(), "parametric": par.to_json()},
    "measured": {"N": measured_N},
}
fig = plot_study(runs, optima, result, measured)
plt.show()
