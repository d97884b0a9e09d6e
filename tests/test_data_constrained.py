"""Muennighoff et al. 2023 data-constrained law: published values, synthetic recovery, real runs."""

import itertools

import numpy as np
import pytest

from scaling.data_constrained import (
    DataConstrainedFit,
    compute_optimal_params_for_tokens,
    effective_tokens,
    fit_data_constrained,
    huber_objective,
    plain_runs,
    predict,
)
from scaling.datasets import load_dataset
from scaling.laws import MUENNIGHOFF_C4, MUENNIGHOFF_R_D_STAR, MUENNIGHOFF_R_N_STAR, effective_data
from workbench.errors import InputError

PUBLISHED = DataConstrainedFit(
    base=MUENNIGHOFF_C4,
    r_d_star=MUENNIGHOFF_R_D_STAR,
    r_n_star=MUENNIGHOFF_R_N_STAR,
    objective=float("nan"),
    n_single_epoch=0,
    n_points=0,
    converged=True,
)
# Noise-free data have an exact zero-objective optimum; measured errors are ~1e-13. 1e-6 leaves
# room for other platforms while catching any bias.
EXACT = 1e-6


def test_predict_matches_the_datablations_readme():
    # README "Parametric Fit", the two models of Figure 1 (right); same arithmetic, so 1e-12.
    assert predict(PUBLISHED, 6.34e9, 242e9, 25e9) == pytest.approx(2.2256440889984477, rel=1e-12)
    assert predict(PUBLISHED, 8.67e9, 178e9, 25e9) == pytest.approx(2.2269634075087867, rel=1e-12)


def test_repeats_as_fresh_limit_is_the_base_law():
    N, D, U = np.array([1e8, 1e9, 5e9]), np.array([1e10, 4e10, 2e11]), np.array([1e9, 1e9, 1e10])
    fresh = DataConstrainedFit(MUENNIGHOFF_C4, np.inf, np.inf, np.nan, 0, 0, True)
    np.testing.assert_allclose(predict(fresh, N, D, U), MUENNIGHOFF_C4.loss(N, D), rtol=1e-14)
    np.testing.assert_allclose(effective_tokens(D, U, 15.0), effective_data(D, U, 15.0), rtol=1e-14)


def test_unique_params_are_compute_optimal_for_the_unique_tokens():
    # N_opt(U) and U must be the (N*, D*) pair of one budget under Hoffmann Eq. 4.
    U = np.array([1e8, 1e10, 1e12])
    N_opt = compute_optimal_params_for_tokens(MUENNIGHOFF_C4, U)
    N_star, D_star = MUENNIGHOFF_C4.optimal_allocation(6 * N_opt * U)
    np.testing.assert_allclose(N_star, N_opt, rtol=1e-12)
    np.testing.assert_allclose(D_star, U, rtol=1e-12)


def synthetic_design():
    """A grid of (N, D, U) whose single-epoch runs all have N <= N_opt(U).

    Under Eq. 5 a single-epoch run larger than N_opt(U) has N' < N, so it does not follow the base
    law that stage 1 fits; the design leaves those out so that both stages can be exact.
    """
    rows = []
    for N, U, epochs in itertools.product(np.logspace(7, 9, 5), np.logspace(8, 11, 4), (1, 2, 4, 8, 16, 64, 256)):
        if epochs == 1 and compute_optimal_params_for_tokens(MUENNIGHOFF_C4, U) < N:
            continue
        rows.append((N, U * epochs, U))
    return np.array(rows).T


def test_full_procedure_recovers_published_constants():
    N, D, U = synthetic_design()
    fit = fit_data_constrained(N, D, U, predict(PUBLISHED, N, D, U))
    assert fit.converged and fit.n_single_epoch == 11 and fit.n_points == N.size
    for got, want in [
        (fit.base.E, MUENNIGHOFF_C4.E),
        (fit.base.A, MUENNIGHOFF_C4.A),
        (fit.base.B, MUENNIGHOFF_C4.B),
        (fit.base.alpha, MUENNIGHOFF_C4.alpha),
        (fit.r_d_star, MUENNIGHOFF_R_D_STAR),
        (fit.r_n_star, MUENNIGHOFF_R_N_STAR),
    ]:
        assert got == pytest.approx(want, rel=EXACT)


def test_stage_two_recovers_r_star_on_the_real_design():
    runs = plain_runs(load_dataset("muennighoff"))
    loss = predict(PUBLISHED, runs["N"], runs["D"], runs["U"])
    fit = fit_data_constrained(runs["N"], runs["D"], runs["U"], loss, base=MUENNIGHOFF_C4)
    assert fit.r_d_star == pytest.approx(MUENNIGHOFF_R_D_STAR, rel=EXACT)
    assert fit.r_n_star == pytest.approx(MUENNIGHOFF_R_N_STAR, rel=EXACT)


@pytest.fixture(scope="module")
def real_fit():
    runs = plain_runs(load_dataset("muennighoff"))
    return runs, fit_data_constrained(runs["N"], runs["D"], runs["U"], runs["loss"])


def test_plain_runs_drop_the_opt_shape_ablations():
    table = load_dataset("muennighoff")
    runs = plain_runs(table)
    assert len(table) - len(runs) == 2 and "opt" not in set(runs["variant"].dropna())


def test_real_runs_show_diminishing_returns(real_fit):
    """Measured on 294 runs (41 single-epoch): alpha = 0.384, E = 1.96, R*_D = 59, R*_N = 43.

    The profile of the objective over R*_D (R*_N refitted) has its minimum at 59, is 17 % higher
    at R*_D = 10 and 7 % higher as R*_D -> inf. The band (10, 300) holds the published 15.4 and
    our 59, and still excludes "repeats are as good as fresh": the 100M-unique-token runs repeat
    their data 100-9000 times, so R*_D = 300 already caps their D' well below D.
    """
    runs, fit = real_fit
    assert fit.converged and fit.n_single_epoch == 41 and fit.n_points == 294
    assert 10 < fit.r_d_star < 300
    assert np.isfinite(fit.r_n_star) and fit.r_n_star > 0


def test_decay_fits_repeated_runs_better_than_fresh_tokens(real_fit):
    """On the 253 multi-epoch runs the fitted law beats R*_D = inf with the best R*_N.

    Measured: 0.02153 vs 0.02296 (6 % lower). Requiring 3 % keeps half the measured gap.
    """
    runs, fit = real_fit
    repeated = runs[runs["D"] > runs["U"]]
    cols = (repeated["N"], repeated["D"], repeated["U"], repeated["loss"])
    fitted = huber_objective(fit.base, *cols, r_d_star=fit.r_d_star, r_n_star=fit.r_n_star)
    fresh = min(
        huber_objective(fit.base, *cols, r_d_star=np.inf, r_n_star=r_n) for r_n in np.exp(np.linspace(-3.0, 10.0, 131))
    )
    assert fitted < 0.97 * fresh


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1e8, 1e8, 1e8], [1e9, 1e9, 5e8], [1e9, 1e9, 1e9], [3.0, 3.0, 3.0]), "'D' must be >= 'U'"),
        (([1e8, 1e8, 1e8], [1e9, 2e9, 4e9], [1e9, 1e9, 1e9], [3.0, 0.0, 3.0]), "column 'loss'"),
        (([1e8, 1e8, 1e8], [1e9, 2e9, 4e9], [1e9, 1e9, 1e9], [3.0, 2.9, 2.8]), "single-epoch"),
        (([1e8, 1e8], [1e9, 2e9, 4e9], [1e9, 1e9, 1e9], [3.0, 2.9, 2.8]), "same length"),
    ],
)
def test_bad_input_is_refused(args, message):
    with pytest.raises(InputError, match=message):
        fit_data_constrained(*args)
