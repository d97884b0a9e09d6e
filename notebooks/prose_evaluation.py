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
# # PROSE: one transformer for a family of ODEs, with its equations
#
# PROSE (Liu, Zhang, Schaeffer 2023) reads the first third of a noisy trajectory (t ∈ [0, 2)) and a
# skeleton of the governing equations whose constants are placeholders and whose terms may be
# missing or spurious. It returns the trajectory at any query time in (2, 6] and the equations
# with their constants. This notebook trains (or loads) the tiny CPU configuration of
# `jobs/configs/prose_tiny.yaml` on three families, then looks at what it learnt: per-family
# errors against the "last value held" baseline, example trajectories and the decoded equations.
#
# Set `PROSE_RUN` to a finished run directory to evaluate it instead of training here.
# `WORKBENCH_SMALL=1` (the tests) trains for fewer steps.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import sympy

import jobs
from jobs.entrypoints import load_job_config
from operators.prose.evaluate import evaluate, format_summary, load_run, summarize
from operators.prose.samples import load_data
from operators.prose.tokens import detokenize
from workbench.store import create_run_dir
from workbench.train import train

SMALL = os.environ.get("WORKBENCH_SMALL") == "1"
# The tiny job config ships with the package's repository (jobs/configs/), wherever the kernel runs.
CONFIG = os.environ.get("PROSE_CONFIG") or str(Path(jobs.__file__).parent / "configs" / "prose_tiny.yaml")

# %% [markdown]
# ## 1. Train the tiny model (or load a finished run)
#
# d = 64, one layer per block (0.32 M parameters), thomas / rossler / dadras with 200 parameter
# draws each, loss = 6 × relative squared L² of the trajectory + symbol cross-entropy (the official
# PROSE loss, Liu, Zhang & Schaeffer 2023; github.com/felix-lyx/prose).

# %%
run_dir = os.environ.get("PROSE_RUN")
if not run_dir:
    overrides = ["train.max_steps=150", "model.n_train=60", "model.eval_every=50"] if SMALL else []
    job = load_job_config(CONFIG, overrides)
    run = create_run_dir(tempfile.mkdtemp(prefix="prose_nb_"), job.experiment, "notebook", config=job.model)
    summary = train(job.model, job.train, run)
    run_dir = str(run.path)
    print(f"trained {summary['steps']} steps in {summary['wall_time_s']:.0f} s; final loss {summary['final_loss']:.3f}")
model, config = load_run(run_dir)
print(f"run: {run_dir}; families {config.families}; data_only = {config.data_only}")

# %% [markdown]
# ## 2. Metrics on the validation set (those of the official PROSE `evaluate.py`)
#
# Data relative L² on (2,6], (2,4] and (4,6] against the noisy targets (the official metric, with a
# ≈2 % floor from the noise itself) and the clean ones; the baseline holds the last observed value.
# Valid: the greedy output decodes and is finite at 50 points of [−5, 5]^d. Expression error: the
# decoded vector field against the true one at those points (valid outputs only). Re-solve: the
# decoded ODE integrated from the noisy u(0).

# %%
OUT = tempfile.mkdtemp(prefix="prose_eval_")
ds = evaluate(run_dir, n=30 if SMALL else None, resolve_ode=True, out=OUT)
print(
    format_summary(
        {**summarize(ds), "out": os.path.join(OUT, "metrics.nc"), "figure": os.path.join(OUT, "trajectories.png")}
    )
)

# %%
families = [str(f) for f in ds["family_name"].values]
model_err = [float(ds["family_data_rel_l2"].sel(family_name=f, target="noisy", window="2-6")) for f in families]
base_err = [float(ds["family_baseline_rel_l2"].sel(family_name=f, target="noisy", window="2-6")) for f in families]
x = np.arange(len(families))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(x - 0.2, model_err, 0.4, label="PROSE (tiny)")
ax.bar(x + 0.2, base_err, 0.4, label="last value held")
ax.set_xticks(x, families)
ax.set_ylabel("relative L² on (2, 6]")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Example trajectories and decoded equations
#
# `evaluate(..., out=DIR)` draws predicted against true trajectories with the decoded equations
# in LaTeX (`DIR/trajectories.png`); below it, the decoded and true right-hand sides side by side.

# %%
image = plt.imread(os.path.join(OUT, "trajectories.png"))
plt.figure(figsize=(12, 12 * image.shape[0] / image.shape[1]))
plt.imshow(image)
plt.axis("off")
plt.show()
_, val = load_data(config)
for k in range(min(3, ds.sizes["sample"])):
    dim = int(ds["dim"][k])
    decoded = detokenize(str(ds["decoded"].values[k]).split(), dim=dim)
    truth = detokenize(val.tokens[k], dim=dim)
    print(f"sample {k} ({ds['family'].values[k]}), expression rel L2 {float(ds['expr_rel_l2'][k]):.3f}:")
    for i in range(dim):
        print(f"  du_{i}/dt  true    {sympy.sstr(truth.exprs[i])}")
        print(f"           decoded {sympy.sstr(decoded.exprs[i]) if decoded.valid else 'invalid'}")
