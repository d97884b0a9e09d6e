"""Approach 2 (Porian's IsoFLOP estimator) and Approach 1 against published and synthetic truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling import laws
from scaling.datasets import load_dataset
from scaling.isoflop import fit_envelope, fit_isoflop, isoflop_optima, weighted_power_law
from scaling.reconcile import PORIAN_NOISE
from scaling.simulate import simulate_runs
from workbench.errors import InputError

PUBLISHED = load_dataset("porian-published")
SETS = [(r.dataset, r.experiment) for r in PUBLISHED.itertuples()]
DATASET_NAME = {"RefinedWeb": "porian-rw", "OpenWebText2": "porian-owt2"}


def _published(dataset, experiment):
    return PUBLISHED[(PUBLISHED.dataset == dataset) & (PUBLISHED.experiment == experiment)].iloc[0]


@pytest.mark.parametrize("dataset,experiment", SETS)
def test_weighted_fit_on_published_optima(dataset, experiment):
    # The regression step alone: WLS with weights 1/std(log N*)² reproduces all 15 exponents (±0.001).
    opt = load_dataset("porian-optimal")
    opt = opt[(opt.dataset == dataset) & (opt.experiment == experiment)]
    law = weighted_power_law(opt.C, opt.N_star, 1 / opt.log_N_star_std**2)
    assert abs(law.exponent - _published(dataset, experiment).a) <= 0.001


@pytest.fixture(scope="module")
def raw_fits():
    fits = {}
    for dataset, experiment in SETS:
        name = DATASET_NAME[dataset]
        runs = load_dataset(name)
        runs = runs[runs.experiment == experiment]
        fits[dataset, experiment] = fit_isoflop(
            isoflop_optima(runs, noise=PORIAN_NOISE[name], seed=0), noise=PORIAN_NOISE[name]
        )
    return fits


@pytest.mark.parametrize("dataset,experiment", SETS)
def test_full_pipeline_on_raw_points(raw_fits, dataset, experiment):
    # From the raw IsoFLOP points, the whole estimator (Akima argmin, noise bootstrap, WLS):
    # ±0.01 of the published a (issue acceptance), same number of budgets used, b close too.
    fit, pub = raw_fits[dataset, experiment], _published(dataset, experiment)
    assert abs(fit.a - pub.a) <= 0.01
    assert abs(fit.b - pub.b) <= 0.01
    assert len(fit.used) == pub.n_budgets_used
    # The bootstrap CI should be about as wide as the published one (same noise model).
    width, pub_width = np.diff(fit.a_ci)[0], pub.a_ci95_hi - pub.a_ci95_lo
    assert 0.6 < width / pub_width < 1.6


def test_rw_ladder_values_and_order(raw_fits):
    ladder = [
        "reproducing_kaplan",
        "counting_last_layer_flops",
        "correcting_warmup",
        "cosine_decay",
        "optimizer_tuning_no_decay",
    ]
    for dataset in ("RefinedWeb", "OpenWebText2"):
        a = [raw_fits[dataset, e].a for e in ladder]
        assert all(x > y for x, y in zip(a, a[1:])), f"{dataset} ladder not monotone: {a}"
    rw = [raw_fits["RefinedWeb", e].a for e in ladder]
    assert np.allclose(rw, [0.835, 0.706, 0.602, 0.571, 0.497], atol=0.01)
    lo, hi = raw_fits["RefinedWeb", "optimizer_tuning_no_decay"].a_ci
    assert lo < 0.5 < hi  # after all corrections, Hoffmann's 0.5 is inside the 95% CI
    assert 0.005 < (hi - lo) / 2 < 0.015  # Porian's published RW CI half-widths ≈ 0.01


def test_parabola_option_is_flagged_and_differs():
    runs = load_dataset("porian-rw")
    runs = runs[runs.experiment == "reproducing_kaplan"]
    fit = fit_isoflop(isoflop_optima(runs, method="parabola"), method="parabola")
    # Hoffmann's parabola (5 sizes around the minimum) gives 0.865 on RW (a) in an independent
    # re-implementation, 0.03 off the Akima value.
    assert fit.method == "parabola"
    assert fit.a == pytest.approx(0.865, abs=0.01)


def test_summary_without_bootstrap_draws_reports_nan_intervals():
    # The parabola, or --replicates 0, leaves no bootstrap draws: the intervals are NaN, not an error.
    runs = simulate_runs(laws.HOFFMANN_PRINTED, kind="isoflop")
    for fit in (
        fit_isoflop(isoflop_optima(runs, replicates=0)),
        fit_isoflop(isoflop_optima(runs, method="parabola"), method="parabola"),
    ):
        summary = fit.summary()
        assert np.isnan(summary["a_ci"]).all() and np.isnan(summary["rho_range"]).all()
        assert np.isfinite(summary["a"]) and summary["n_bootstrap"] == 0


def test_noise_free_synthetic_within_stated_bias():
    # Stated bias of the Akima estimator on noise-free data: the argmin is a point of a grid of
    # (k-1)·25 steps, so N* is off by at most half a step in log N. Over budgets spanning log C,
    # the slope can move by at most 2·(half step)/range(log C); centred designs give exactly 0.
    truth = laws.HOFFMANN_PRINTED
    for center, drift, span in [(1, 0, 8), (3, 0, 8), (1, 0.05, 16), (3, 0.1, 16), (0.5, -0.05, 4)]:
        runs = simulate_runs(truth, kind="isoflop", sizes=9, span=span, center=center, drift=drift)
        fit = fit_isoflop(isoflop_optima(runs, replicates=0))
        half_step = np.log(span**2) / (2 * (8 * 25 - 1))
        bias_bound = 2 * half_step / np.log(runs.C.max() / runs.C.min())
        assert abs(fit.a - truth.a) <= bias_bound, (center, drift, span, fit.a)
    centred = simulate_runs(truth, kind="isoflop")
    assert fit_isoflop(isoflop_optima(centred, replicates=0)).a == pytest.approx(truth.a, abs=1e-9)


def test_noisy_synthetic_ci_covers_truth():
    truth = laws.HOFFMANN_PRINTED
    runs = simulate_runs(truth, kind="isoflop", sizes=9, noise=0.002, seed=3)
    fit = fit_isoflop(isoflop_optima(runs, noise=0.002 * 3, seed=0), noise=0.006)
    lo, hi = fit.a_ci
    assert lo < truth.a < hi


def _budget(C, sizes, loss_fn):
    N = np.asarray(sizes, float)
    return pd.DataFrame({"N": N, "D": C / (6 * N), "C": C, "loss": loss_fn(N)})


def test_refusals_are_typed():
    bowl = lambda N: 3 + 0.1 * (np.log(N) - np.log(1e8)) ** 2
    runs = pd.concat(
        [
            _budget(1e18, [1e7, 3e7, 1e8, 3e8, 1e9], bowl),  # fine
            _budget(2e18, [3e8, 1e9, 3e9], bowl),  # minimum below the smallest size
            _budget(4e18, [1e8, 3e8], bowl),  # too few sizes
            _budget(8e18, [1e7, 5e7, 1e8, 2e8, 1e9], bowl),  # fine
            _budget(1.6e19, [1e7, 4e7, 1e8, 3e8, 1e9], bowl),  # fine
        ],
        ignore_index=True,
    )
    optima = isoflop_optima(runs, replicates=100)
    status = {round(o.C / 1e18, 1): o.status for o in optima}
    assert status == {1.0: "ok", 2.0: "edge-minimum", 4.0: "too-few-sizes", 8.0: "ok", 16.0: "ok"}
    fit = fit_isoflop(optima)
    assert len(fit.used) == 3
    with pytest.raises(InputError, match="only 2 of 4 budgets.*not bracketed"):
        fit_isoflop(optima[:4])
    with pytest.raises(InputError, match="several compute budgets"):
        fit_isoflop(isoflop_optima(_budget(1e18, [1e7, 3e7, 1e8, 3e8, 1e9], bowl)))


def test_envelope_on_synthetic_and_porian():
    runs = simulate_runs(laws.HOFFMANN_PRINTED, kind="isoflop", sizes=25, span=4)
    env = fit_envelope(runs)
    # The best of 25 sizes per budget, spaced 2^(1/6)-apart in N: within a step of the true exponent.
    assert env.a == pytest.approx(laws.HOFFMANN_PRINTED.a, abs=0.02)
    rw = load_dataset("porian-rw")
    env = fit_envelope(rw[rw.experiment == "optimizer_tuning_no_decay"])
    assert 0.4 < env.a < 0.6


@pytest.mark.parametrize(
    "experiment,alpha,beta,E,a,a_isoflop",
    [
        ("optimizer_tuning_no_decay", 0.630, 0.709, 3.13, 0.529, 0.497),
        ("cosine_decay", 0.391, 0.553, 2.53, 0.586, 0.571),
        ("correcting_warmup", 0.456, 0.533, 2.74, 0.539, 0.602),
    ],
)
def test_approach3_on_porian_points_is_the_known_disagreement(experiment, alpha, beta, E, a, a_isoflop):
    # An independent re-implementation (Huber delta 1e-3, 243-start grid): Approach 3 on Porian's
    # IsoFLOP points (mostly mid-run checkpoints) gives these values, not the IsoFLOP exponents - the
    # ladder must be fitted with Approach 2.
    from scaling.fit import fit_parametric

    rw = load_dataset("porian-rw")
    runs = rw[rw.experiment == experiment]
    law = fit_parametric(runs.N, runs.D, runs.loss).law
    assert (law.alpha, law.beta, law.E, law.a) == pytest.approx((alpha, beta, E, a), abs=0.006)
    assert abs(law.a - a_isoflop) > 0.01
