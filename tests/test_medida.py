"""MEDIDA discovery (scaling/medida/pipeline.py) on real KS trajectories: noise-free cases, the
Richardson target, the regression settings and noisy observations with the EnKF.

The truth run is cached per process (one ETDRK4 trajectory per protocol: ~7 s), so the
noise-free cases cost ~0.1 s each. Numbers quoted in comments were measured with these exact
settings. Numbers from re-running the public code's protocol (github.com/envfluids/MEDIDA: FD
library, 10 pairs, Δt = 5e-3, RVM threshold 1e2) are reproduced with the FD library.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import scaling.medida.pipeline as pipeline
from operators.ks import KSGrid
from scaling.medida.cases import CASES
from scaling.medida.library import RegressionConfig, build_library, derivative_stack, sparse_regression
from scaling.medida.pipeline import LibraryConfig, MedidaConfig, equations, run, true_error
from workbench.errors import InputError

KS_CASES = [f"KS{i}" for i in range(1, 13)]


def _fit_summary(result):
    return {t: round(d["coef"], 4) for t, d in result.discovered.items()}


@pytest.mark.parametrize("case", [c for c in KS_CASES if c != "KS11"])
def test_noise_free_ks_cases_within_5_percent(case):
    # 10 pairs at t = 100, 110, …, 190, Δt = 5e-3, spectral library, ARD threshold 1e2.
    # Worst: KS6 u*u_x 4.65 % (−0.9535).
    result = run(MedidaConfig(case=case))
    assert result.spurious() == [], _fit_summary(result)
    assert set(result.discovered) == set(result.true)
    assert result.max_relative_error() < 0.05, _fit_summary(result)


@pytest.mark.parametrize("case", ["KSpu3x2", "KSpu3x3"])
def test_noise_free_uxxx_variants_within_1_percent(case):
    # Spectral: 0.4951 (0.98 %) and 0.9901 (0.99 %); FD: 0.4976, 0.9952 (as the public code's protocol).
    for derivatives in ("spectral", "fd"):
        result = run(MedidaConfig(case=case, library=LibraryConfig(derivatives=derivatives)))
        assert result.spurious() == []
        assert result.max_relative_error() < 0.01, (derivatives, _fit_summary(result))


def test_fd_library_reproduces_public_code_numbers():
    # Corrected LHS coefficients from re-running the public code's protocol (FD library).
    expected = {"KS1": {"u*u_x": 0.9743}, "KS3": {"u_xxxx": 1.0188}, "KS6": {"u*u_x": 0.9563, "u_xx": 1.0004}}
    for case, terms in expected.items():
        result = run(MedidaConfig(case=case, library=LibraryConfig(derivatives="fd")))
        for term, corrected in terms.items():
            # corrected LHS = λ_model − ξ; every model here lacks the term, so λ_model = 0.
            assert -result.discovered[term]["coef"] == pytest.approx(corrected, abs=6e-4), (case, term)


def test_case_11_fails_with_one_step_estimate_and_is_recovered_by_richardson():
    # Public protocol: spurious u*u_xxx ≈ −0.168 (0.168 as a corrected LHS coefficient; the public
    # code flags case 11 as "might need revisiting").
    one_step = run(MedidaConfig(case="KS11"))
    assert "u*u_xxx" in one_step.spurious()
    assert abs(one_step.discovered["u*u_xxx"]["coef"]) > 0.1
    # Diagnosis: the one-step target is e + (Δt/2)·Df_model·e + O(Δt²); with the model's
    # hyperdiffusion λ2 = 2 the second term, ∝ ∂x⁴(u·u_x), is outside the library and is
    # absorbed as u*u_xxx. Richardson extrapolation (2y(Δt) − y(2Δt)) removes it: measured
    # u*u_x −0.9995, u_xx −0.5401, u_xxxx 0.9686, no spurious term (worst 4.0 %).
    rich = run(MedidaConfig(case="KS11", estimate="richardson"))
    assert rich.spurious() == [], _fit_summary(rich)
    assert rich.max_relative_error() < 0.05, _fit_summary(rich)


@pytest.mark.parametrize("case", ["KS1", "KS2", "KS3", "KS6"])
def test_richardson_estimate_within_1_percent(case):
    # One-step errors at Δt = 5e-3: 2.7 / 0.8 / 0.7 / 4.7 %; Richardson: 0.27 / 0.02 / 0.01 / 0.49 %.
    one_step = run(MedidaConfig(case=case))
    rich = run(MedidaConfig(case=case, estimate="richardson"))
    assert rich.spurious() == []
    assert rich.max_relative_error() < 0.01, _fit_summary(rich)
    assert rich.max_relative_error() < one_step.max_relative_error()


def test_rvm_threshold_trades_small_terms_for_spurious_ones():
    # ARD prunes terms with |ξ| ≲ 1/√threshold: at 1e2 the −0.1 u_xxx of KSpu3x1 is pruned, at
    # 1e3 it is found (as with the public code's RVM on the FD library).
    low = run(MedidaConfig(case="KSpu3x1", library=LibraryConfig(derivatives="fd")))
    assert "u_xxx" not in low.discovered
    high = run(
        MedidaConfig(
            case="KSpu3x1", library=LibraryConfig(derivatives="fd"), regression=RegressionConfig(threshold=1e3)
        )
    )
    assert high.discovered["u_xxx"]["coef"] == pytest.approx(0.0995, abs=1e-3)
    assert high.spurious() == []


def test_stlsq_baseline_and_standardisation_agree_on_case_1():
    base = run(MedidaConfig(case="KS1"))
    stlsq = run(MedidaConfig(case="KS1", regression=RegressionConfig(method="stlsq", threshold=0.05)))
    std = run(MedidaConfig(case="KS1", regression=RegressionConfig(standardise=True, threshold=1e2)))
    for r in (stlsq, std):
        assert set(r.discovered) == {"u*u_x"}, _fit_summary(r)
        assert r.discovered["u*u_x"]["coef"] == pytest.approx(base.discovered["u*u_x"]["coef"], abs=2e-3)
    assert stlsq.discovered["u*u_x"]["std"] > 0


def test_standardise_flag_is_honoured():
    # The public code ignores standardise=True (its fit() default overrides the constructor's).
    # Standardised columns change which terms a given threshold prunes (the threshold acts on
    # standardised coefficients).
    rng = np.random.default_rng(0)
    theta = np.column_stack([rng.standard_normal(2000), 100 * rng.standard_normal(2000)])
    y = theta @ np.array([1.0, 0.005]) + 0.01 * rng.standard_normal(2000)
    raw = sparse_regression(theta, y, RegressionConfig(method="stlsq", threshold=0.1))
    scaled = sparse_regression(theta, y, RegressionConfig(method="stlsq", threshold=0.1, standardise=True))
    assert raw.active.tolist() == [True, False]
    assert scaled.active.tolist() == [True, True]
    assert scaled.coef[1] == pytest.approx(0.005, rel=1e-2)


def test_spectral_derivatives_exact_and_fd_ends_are_not_periodic():
    L, n = 100.0, 256
    x = -L / 2 + L / n * np.arange(n)
    kx = 2 * np.pi * 3 / L
    u = np.sin(kx * x)
    spec = derivative_stack(u, 4, L, "spectral")
    np.testing.assert_allclose(spec[1], kx * np.cos(kx * x), atol=1e-12)
    np.testing.assert_allclose(spec[4], kx**4 * np.sin(kx * x), atol=1e-12)
    fd = derivative_stack(u, 4, L, "fd")
    interior = slice(4, -4)
    assert np.max(np.abs(fd[1][interior] - spec[1][interior])) < 1e-2 * kx
    # PDE-FIND's one-sided end stencils (the public code's FD library) are much worse than the
    # interior on periodic data (measured 32× for ∂x⁴).
    assert np.max(np.abs(fd[4][:2] - spec[4][:2])) > 10 * np.max(np.abs(fd[4][interior] - spec[4][interior]))


def test_library_has_24_named_terms():
    theta, names = build_library(np.random.default_rng(0).standard_normal((2, 64)), 10.0)
    assert theta.shape == (128, 24) and len(set(names)) == 24
    assert {"u", "u*u_x", "u_xx", "u_xxxx", "u^4*u_xxxx"} <= set(names)


def test_sympy_expression_and_json_interface():
    result = run(MedidaConfig(case="KS6"))
    expr, stds = result.sympy()
    text = str(expr)
    assert "Derivative(u(x), (x, 2))" in text and "Derivative(u(x), x)" in text
    assert all(s > 0 for s in stds.values())
    payload = result.to_json()
    assert set(payload["true"]) == {"u*u_x", "u_xx"}
    assert set(payload["discovered"]["u_xx"]) >= {"coef", "std"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"case": "KS99"}, "unknown MEDIDA case"),
        ({"case": "KS3", "library": LibraryConfig(max_derivative=2)}, "u_xxxx"),
        ({"case": "KS1", "noise": -0.01}, "noise"),
        ({"case": "KS1", "noise": 0.01, "ensemble": 1}, "ensemble"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        run(MedidaConfig(**kwargs))


def test_every_builtin_case_has_a_nonzero_true_error():
    assert len(CASES) == 24
    for name in CASES:
        assert true_error(*equations(MedidaConfig(case=name))), name


def test_public_filter_observation_error_is_absolute_and_climatology_scales_with_the_state(monkeypatch):
    # The public code (`experiments/KS/main.py`: sig_m = NOISE_MAG, R = sig_m²·I; `EnKF.py`: virtual
    # observations w + N(0, sig_m²)) uses an absolute observation error: the std handed to the
    # analysis (R = std², and the std of the observation perturbations) is NOISE_MAG, unchanged when
    # the truth is scaled. The climatology filter keeps R = (noise·std(u))², which scales with it.
    config = MedidaConfig(case="KS1", N=128, spinup=1.0, spacing=1.0, pairs=2, noise=0.01, ensemble=16)
    truth, model = equations(config)
    grid = KSGrid(config.L, config.N)
    windows = pipeline.truth_windows(truth, config)
    public_std, climatology_std = [], []
    real_analysis, real_gain = pipeline.analysis, pipeline.kalman_gain

    def spy_analysis(forecast, obs, obs_std, *args, **kwargs):
        public_std.append(obs_std)
        return real_analysis(forecast, obs, obs_std, *args, **kwargs)

    def spy_gain(forecast, obs_std, *args, **kwargs):
        climatology_std.append(obs_std)
        return real_gain(forecast, obs_std, *args, **kwargs)

    monkeypatch.setattr(pipeline, "analysis", spy_analysis)
    monkeypatch.setattr(pipeline, "kalman_gain", spy_gain)
    for factor in (1.0, 3.0):
        obs, sigma = pipeline.observe(factor * windows, config.noise, config.seed)
        assert sigma == pytest.approx(factor * config.noise * np.std(windows), rel=1e-12)
        public = dataclasses.replace(config, assimilation="public")
        _, _, info = pipeline.one_step_error(obs, model, grid, public, sigma)
        assert public_std[-2:] == [config.noise] * 2, (factor, sigma, public_std)
        assert info["enkf_observation_std"] == config.noise
        pipeline.one_step_error(obs, model, grid, config, sigma)
        assert climatology_std[-1] == pytest.approx(sigma, rel=1e-12)
    # One analysis per window and scale.
    assert len(public_std) == 4


# --- noisy observations -------------------------------------------------------------------------
# The 100-pair protocol of the public code (BETA = 1000: t = 100, 101, …, 199), 1 % noise on all
# three observed states of every window; the analysis at t uses the noisy observation.
NOISY = dict(pairs=100, spacing=1.0, noise=0.01)


def _noisy(case, **kw):
    return run(MedidaConfig(case=case, **{**NOISY, **kw}))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["KS1", "KS6"])
def test_noisy_discovery_within_5_percent_and_small_ensemble_matches_paper_preset(case):
    # Measured over seeds 0–5 (max error per seed): 1024 members with spectral localisation,
    # KS1 1.0/2.3/1.8/4.1/0.6/2.5 %, KS6 1.3/4.6/2.2/3.0/0.7/2.8 %; 10,240-member preset (no
    # localisation, no inflation) KS1 mean 2.1 %, KS6 mean 2.6 % (seed 1: 5.03 %).
    small, preset = [], []
    for seed in range(3):
        r = _noisy(case, ensemble=1024, enkf_form="spectral", estimate="richardson", seed=seed)
        assert r.spurious() == [], (seed, _fit_summary(r))
        assert r.max_relative_error() < 0.05, (seed, _fit_summary(r))
        small.append(r.max_relative_error())
        p = _noisy(case, ensemble=10240, estimate="richardson", seed=seed)
        preset.append(p.max_relative_error() if not p.spurious() else 1.0)
    assert np.mean(small) <= np.mean(preset) + 0.005, (small, preset)


@pytest.mark.slow
def test_noisy_documented_failures_still_fail():
    # No data assimilation: the library's 4th derivatives amplify the white noise.
    no_da = _noisy("KS1", ensemble=None)
    assert no_da.spurious() or no_da.max_relative_error() > 0.1, _fit_summary(no_da)
    # The public code's EnKF (white σ_b = 0.25 background around the observed u(t−Δt)) with the
    # noisy observation at t: the gain is ≈ 1 at every wavenumber, so the analysis keeps the noise.
    public = _noisy("KS1", ensemble=1024, assimilation="public", pairs=10, spacing=10.0)
    assert public.spurious() or public.max_relative_error() > 0.1, _fit_summary(public)
    # 1024 members without localisation: sampling noise in B (rank < n = 1024) — worse than
    # the localised ensemble on case 6 (measured mean over seeds 0–5: 5.1 % vs 2.4 %).
    unloc = np.mean(
        [_noisy("KS6", ensemble=1024, estimate="richardson", seed=s).max_relative_error() for s in range(3)]
    )
    loc = np.mean(
        [
            _noisy("KS6", ensemble=1024, enkf_form="spectral", estimate="richardson", seed=s).max_relative_error()
            for s in range(3)
        ]
    )
    assert loc < unloc, (loc, unloc)
