"""PROSE evaluation (operators.prose.evaluate): the official PROSE metrics on known answers, the CLI
verb, and the slow learning checks of the tiny CPU configuration (small runs should reproduce the
paper-size orderings, e.g. multimodal beats data-only)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

torch = pytest.importorskip("torch")

from jobs.entrypoints import load_job_config  # noqa: E402
from operators.odes import generate  # noqa: E402
from operators.prose.config import ProseTrainableConfig  # noqa: E402
from operators.prose.evaluate import evaluate, load_run, relative_l2  # noqa: E402
from operators.prose.model import ProseOutput, SymbolDecoding  # noqa: E402
from operators.prose.samples import ProseData, prepare_data  # noqa: E402
from operators.prose.tokens import Vocabulary  # noqa: E402
from tests.test_prose_train import TINY as TRAIN_TINY  # noqa: E402
from workbench.errors import InputError  # noqa: E402
from workbench.store import create_run_dir, open_dataset  # noqa: E402
from workbench.train import TrainConfig, train  # noqa: E402

VOCABULARY = Vocabulary(max_dim=3)


@pytest.fixture(scope="module")
def small_data() -> ProseData:
    return prepare_data(generate("thomas,rossler,dadras", 6, seed=5), 3)


class OracleModel(torch.nn.Module):
    """Answers with the data's own trajectory (``noisy`` or ``clean``) and target tokens.

    It finds each sample by its first observed point; ``garbage_rows`` get an undecodable output.
    """

    def __init__(self, data: ProseData, trajectory: str = "clean", garbage_rows=()):
        super().__init__()
        from operators.prose.model import ProseConfig

        self.cfg = ProseConfig(d_max=3, vocab_size=VOCABULARY.size)
        self.data, self.trajectory, self.garbage = data, trajectory, set(garbage_rows)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def _rows(self, data_values):
        first = torch.from_numpy(self.data.noisy[:, 0])
        return [int(torch.nonzero((first == v).all(dim=1))[0]) for v in data_values[:, 0]]

    def forward(self, data_times, data_values, symbol_ids=None, symbol_mask=None, *, query_times, target_ids=None):
        rows = self._rows(data_values)
        source = self.data.clean if self.trajectory == "clean" else self.data.noisy
        return ProseOutput(torch.from_numpy(source[rows, -len(query_times) :]).double(), None)

    def greedy_decode(self, data_times, data_values, symbol_ids=None, symbol_mask=None, *, max_len=None):
        rows = self._rows(data_values)
        outputs = [
            [VOCABULARY.id("add"), VOCABULARY.id("u_0")] if r in self.garbage else self.data.target_ids[r] for r in rows
        ]
        length = max(len(o) for o in outputs) + 1
        tokens = torch.full((len(rows), 1, length), VOCABULARY.pad_id)
        lengths = torch.zeros(len(rows), 1, dtype=torch.long)
        for i, o in enumerate(outputs):
            tokens[i, 0, : len(o) + 1] = torch.tensor(o + [VOCABULARY.eos_id])
            lengths[i, 0] = len(o) + 1
        return SymbolDecoding(tokens, lengths, torch.zeros(len(rows), 1))


def test_relative_l2_is_the_sqrt_form_with_the_mask():
    target = np.array([[[3.0, 7.0], [4.0, 7.0]]])  # (1 sample, 2 times, 2 dims); dim 1 is padding
    predicted = np.array([[[0.0, 0.0], [0.0, 0.0]]])
    mask = np.array([[[True, False]]])
    assert relative_l2(predicted, target, mask)[0] == pytest.approx(np.sqrt(25 / (25 + 1e-6)))
    assert relative_l2(target, target, mask)[0] == 0.0


def test_perfect_predictions_score_zero(small_data):
    ds = evaluate(OracleModel(small_data, "noisy"), small_data, resolve_ode=False)
    assert np.all(ds["data_rel_l2"].sel(target="noisy").values == 0.0)
    assert float(ds["valid_fraction"]) == 1.0
    assert float(ds["mean_expr_rel_l2"]) == 0.0  # the target expression itself
    assert list(ds["family_name"].values) == ["thomas", "rossler", "dadras"]
    assert list(ds["family_count"].values) == [6, 6, 6]


def test_noise_only_error_is_about_two_percent_and_clean_error_zero(small_data):
    # The 2 % data noise is a floor: predicting the clean trajectory scores ~2% against the noisy
    # targets (an independent re-implementation: 2.07 %, per family 1.7-2.9 %); 18 samples leave a
    # few tenths of a percent.
    ds = evaluate(OracleModel(small_data, "clean"), small_data, resolve_ode=False)
    noisy = float(ds["mean_data_rel_l2"].sel(target="noisy", window="2-6"))
    assert 0.015 < noisy < 0.03
    assert float(ds["mean_data_rel_l2"].sel(target="clean", window="2-6")) == pytest.approx(0.0, abs=1e-7)


def test_invalid_outputs_are_excluded_from_the_expression_error(small_data):
    ds = evaluate(OracleModel(small_data, "clean", garbage_rows={0, 4}), small_data, resolve_ode=False)
    assert list(np.flatnonzero(~ds["valid"].values)) == [0, 4]
    assert float(ds["valid_fraction"]) == pytest.approx(16 / 18)
    assert np.isnan(ds["expr_rel_l2"].values[[0, 4]]).all() and float(ds["mean_expr_rel_l2"]) == 0.0


def test_resolving_the_true_equation_tracks_the_clean_trajectory(small_data):
    """Metric 4 on the exact equation: only the noisy u(0) separates it from the clean path."""
    subset = small_data.subset([0, 3])  # thomas: slow, non-chaotic over [0, 6]
    ds = evaluate(OracleModel(subset, "clean"), subset, resolve_ode=True)
    assert int(ds["resolve_successes"]) == 2
    assert float(ds["mean_resolve_rel_l2"].sel(target="clean", window="2-6")) < 0.05


def test_last_value_baseline_is_the_held_last_observation():
    t = np.linspace(0, 6, 192)
    u = np.stack([1.0 + t, np.zeros_like(t), np.zeros_like(t)], axis=-1)[None]
    raw = {
        "t": t,
        "clean": u,
        "noisy": u,
        "dim": np.array([1]),
        "family": np.array([0]),
        "families": ("thomas",),
        "tokens": [["u_0"]],
    }
    data = prepare_data(raw, 3)
    ds = evaluate(OracleModel(data, "clean"), data, resolve_ode=False, config=ProseTrainableConfig())
    held, future = 1.0 + t[63], 1.0 + t[64:]
    expected = np.sqrt(((held - future) ** 2).sum() / ((future**2).sum() + 1e-6))  # only dim 0 counts
    # Trajectories are kept in float32 (ProseData), hence rel 1e-6.
    assert float(ds["baseline_rel_l2"].sel(target="clean", window="2-6")[0]) == pytest.approx(expected, rel=1e-6)
    late = t[64:] > 4
    expected_late = np.sqrt(((held - future[late]) ** 2).sum() / ((future[late] ** 2).sum() + 1e-6))
    assert float(ds["baseline_rel_l2"].sel(target="clean", window="4-6")[0]) == pytest.approx(expected_late, rel=1e-6)


def test_test_corruption_is_fixed_by_seed_42(small_data):
    a = evaluate(OracleModel(small_data, "clean"), small_data, resolve_ode=False)
    b = evaluate(OracleModel(small_data, "clean"), small_data, resolve_ode=False)
    assert list(a["symbol_input"].values) == list(b["symbol_input"].values)
    c = evaluate(OracleModel(small_data, "clean"), small_data, resolve_ode=False, seed=7)
    assert list(a["symbol_input"].values) != list(c["symbol_input"].values)


# --- runs and the CLI verb ----------------------------------------------------------------------
TINY = dataclasses.replace(TRAIN_TINY, max_symbol_len=40)  # the training tests' model, shorter decoding


def _cli(*argv: str) -> int:
    from workbench.cli import build_parser

    args = build_parser().parse_args(["prose", "evaluate", *argv])
    return args.handler(args)


def test_unknown_run_or_unfinished_run_is_one_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_run(tmp_path / "nope")
    run = create_run_dir(tmp_path, "prose", "unfinished", config=TINY)
    with pytest.raises(InputError, match="no model.pt"):
        _cli(str(run.path))


def test_evaluate_verb_on_a_trained_run(tmp_path, capsys):
    run = create_run_dir(tmp_path, "prose", "tiny", config=TINY)
    train(TINY, TrainConfig(max_steps=2, checkpoint_every=2), run)
    out = tmp_path / "eval"
    assert _cli(str(run.path), "--n", "3", "--out", str(out), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_samples"] == 3 and set(summary["families"]) == {"thomas", "rossler"}
    ds = open_dataset(out / "metrics.nc")
    assert ds.sizes["sample"] == 3 and "resolve_success" in ds
    assert (out / "trajectories.png").stat().st_size > 10_000
    model, config = load_run(run.path)
    assert config == TINY and not model.training


# --- learning (slow): the tiny CPU configuration shipped as jobs/configs/prose_tiny.yaml --------
LEARN_JOB = load_job_config(Path(__file__).resolve().parents[1] / "jobs" / "configs" / "prose_tiny.yaml")
LEARN, LEARN_STEPS = LEARN_JOB.model, LEARN_JOB.train.max_steps


def learned_pair(tmp_path_factory, seed: int) -> dict:
    """Multimodal and data_only models, same steps, same data, same training seed, evaluated on the
    held-out samples: {"multimodal": Dataset, "data_only": Dataset}.

    Each seed trains once per test session: under pytest-xdist the workers share the session's
    temporary root and a lock per seed, so a seed that one worker trained is read by the others.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # gw0, gw1, ...: basetemp is per worker, its parent per session
        shared = shared.parent
    root = shared / "prose_learn"
    root.mkdir(exist_ok=True)
    results = {}
    with FileLock(root / f"seed{seed}.lock"):
        for name, config in (("multimodal", LEARN), ("data_only", dataclasses.replace(LEARN, data_only=True))):
            out = root / f"{name}-seed{seed}-evaluation"
            if not (out / "metrics.nc").is_file():
                run = create_run_dir(root, "prose", f"{name}-seed{seed}", config=config)
                train(config, TrainConfig(max_steps=LEARN_STEPS, checkpoint_every=LEARN_STEPS, cpu_threads=2,
                                          seed=seed), run)  # fmt: skip
                evaluate(run.path, resolve_ode=False, out=out, figure=False)
            results[name] = open_dataset(out / "metrics.nc")
    return results


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Training seed 0, shared by the tests below and by tests/test_prose_seeds.py."""
    return learned_pair(tmp_path_factory, 0)


@pytest.mark.slow
def test_tiny_model_beats_the_last_value_baseline(learned):
    ds = learned["multimodal"]
    model = float(ds["mean_data_rel_l2"].sel(target="noisy", window="2-6"))
    baseline = float(ds["mean_baseline_rel_l2"].sel(target="noisy", window="2-6"))
    print(f"data rel L2 {model:.3f} vs last-value baseline {baseline:.3f}")
    assert model < 0.7 * baseline


@pytest.mark.slow
def test_tiny_model_decodes_valid_expressions(learned):
    ds = learned["multimodal"]
    print(f"valid {float(ds['valid_fraction']):.3f}, expression rel L2 {float(ds['mean_expr_rel_l2']):.3f}")
    assert float(ds["valid_fraction"]) >= 0.9
