"""Learning-rate transfer across widths (muP vs SP) and the flagship loss prediction (Yao & Wang
2023, "Research without Re-search": fit L(N) = a·N^b + c on small muP widths, predict larger ones).

The slow tests train real models on CPU. What they measure is recorded in the README
("Reproduced results"); they assert fixed pass thresholds (stated at each test), not the numbers seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

torch = pytest.importorskip("torch")

from jobs.entrypoints import load_job_config  # noqa: E402
from workbench.lm.transfer import lr_sweep, optimal_lr, train_steps, transfer_report  # noqa: E402

# The transfer protocol (after EleutherAI's nanoGPT-mup `mutransfer_lr` runs), jobs/configs/lm_transfer.yaml:
# a 2-layer byte-level GPT with head size 8 on the order-1 Markov source over 16 symbols (entropy
# rate 1.969 nats), AdamW (β2 0.95, clip 1.0, no weight decay), 10 warmup steps then cosine to
# 0.1x, 100 steps of 16 x 32 tokens, held-out loss over 8 fixed batches. Widths 32 -> 256 (8x);
# muP base width 16.
REPO = Path(__file__).resolve().parents[1]
TRANSFER = load_job_config(REPO / "jobs" / "configs" / "lm_transfer.yaml").model
WIDTHS = (32, 64, 128, 256)
MUP_LRS = [2.0**k for k in range(-8, -2)]
SP_LRS = [2.0**k for k in range(-11, -4)]


def test_transfer_config_is_the_documented_protocol():
    assert (TRANSFER.markov_alphabet, TRANSFER.markov_order, TRANSFER.base_width, TRANSFER.depth) == (16, 1, 16, 2)
    assert (TRANSFER.beta2, TRANSFER.grad_clip, TRANSFER.weight_decay, TRANSFER.warmup_steps) == (0.95, 1.0, 0.0, 10)
    assert not TRANSFER.readout_zero_init and TRANSFER.eval_batches == 8 and TRANSFER.corpus_tokens == 1 << 17


def test_transfer_cli_reports_best_lr_per_width_and_writes_its_files(tmp_path):
    out = run_cli("lm", "transfer", "--widths", "16,32", "--lrs", "2^-7:2^-5", "--steps", "4", "--plot",
                  str(tmp_path / "t.png"), "--out", str(tmp_path / "t.nc"), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"mup", "sp"} and report["mup"]["widths"] == [16, 32]
    assert len(report["sp"]["best_lr"]) == 2 and math.isfinite(report["mup"]["drift_octaves"])
    from workbench.store import open_dataset

    ds = open_dataset(tmp_path / "t.nc")
    assert dict(ds["val_loss"].sizes) == {"parametrization": 2, "width": 2, "lr": 3, "seed": 1}
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--lrs", "2^-5:2^-4"], "at least 3 powers of two"),
        (["--lrs", "0.1,0.01,0.3"], "increasing"),
        (["--widths", "36,72"], "not divisible by head_dim"),
        (["--parametrizations", "ntk"], "choose from mup, sp"),
        (["--seeds", "a"], "comma-separated integers"),
    ],
)
def test_transfer_cli_bad_input(args, fragment):
    from tests.conftest import assert_clean_error

    assert_clean_error(run_cli("lm", "transfer", *args), fragment)


def test_optimal_lr_refines_by_a_parabola_in_log2_lr_and_keeps_edge_minima():
    lrs = [2.0**k for k in range(-8, -2)]
    losses = [(math.log2(lr) + 5.3) ** 2 + 2.0 for lr in lrs]  # exact parabola, vertex at 2^-5.3
    assert math.log2(optimal_lr(lrs, losses)) == pytest.approx(-5.3, abs=1e-9)
    assert optimal_lr(lrs, [5, 4, 3, 2, 1.5, 1.0]) == lrs[-1]  # minimum on the edge: only a bound
    assert optimal_lr(lrs, [3, 2, 1, math.inf, 2, 3]) == lrs[2]  # a diverged neighbour: no parabola


def test_in_process_loop_matches_the_lightning_trainable(tmp_path):
    """train_steps (used by the sweeps below) trains exactly what the gpt_lm job kind trains."""
    from workbench.store import create_run_dir, open_dataset
    from workbench.train import TrainConfig, train

    config = dataclasses.replace(TRANSFER, width=32, lr=2.0**-6, eval_every=1000, eval_batches=2, corpus_tokens=1 << 14)
    ours = train_steps(config, steps=12, seed=3)
    run = create_run_dir(tmp_path, "lm", "a")
    train(config, TrainConfig(max_steps=12, checkpoint_every=100, seed=3), run)
    ds = open_dataset(run.metrics_path)
    assert float(ds["final_val_loss"]) == pytest.approx(ours["val_loss"], rel=1e-5)
    assert int(ds["params"]) == ours["params"]


def _sweep(parametrization: str):
    config = dataclasses.replace(TRANSFER, parametrization=parametrization)
    lrs, seeds = (MUP_LRS, (0, 1)) if parametrization == "mup" else (SP_LRS, (0,))
    return lr_sweep(config, WIDTHS, lrs, steps=100, seeds=seeds, workers=2)  # one single-threaded run per core


@pytest.mark.slow
def test_mup_best_lr_transfers_over_8x_width_and_sp_drifts():
    mup, sp = _sweep("mup"), _sweep("sp")
    mu, st = transfer_report(mup), transfer_report(sp)
    print("muP", mu.as_dict(), "\nSP", st.as_dict())
    print(mup["val_loss"].mean("seed").to_pandas().round(4).to_string())
    print(sp["val_loss"].mean("seed").to_pandas().round(4).to_string())
    assert not any(mu.on_edge), "muP optimum on the grid edge: widen MUP_LRS"
    assert mu.drift_octaves <= 1.0, f"muP best LR moved {mu.drift_octaves:.2f} octaves over 8x width"
    assert not any(st.on_edge[1:]), "SP optimum on the grid edge: widen SP_LRS"
    # SP: the optimum falls as width grows (Adam's hidden updates are not rescaled).
    assert st.drift_octaves >= 1.5 and st.best_lr[-1] < st.best_lr[0]


@pytest.mark.slow
def test_demo_predicts_a_width_with_7x_the_parameters_within_one_percent(tmp_path):
    """The flagship demo, end to end through the jobs layer: 4 widths fitted at one learning
    rate, the 5th (7.1x the parameters) predicted, then compared with its trained loss."""
    result = run_cli("demo", "--executor", "local", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    fitted, [held] = out["fitted"], out["predictions"]
    print(json.dumps({k: out[k] for k in ("fit", "fitted", "predictions", "entropy_rate", "wall_s")}, indent=1))
    assert len(fitted) == 4 and held["params"] >= 4 * fitted[-1]["params"]
    assert abs(held["rel_error"]) <= 0.01
    assert held["low"] <= held["actual"] <= held["high"]
    # At the one transferred learning rate, wider is better, strictly, at every width.
    losses = [r["actual"] for r in (*fitted, held)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    # The fitted floor c sits just above the source's exact entropy rate (600 steps do not reach it).
    assert out["entropy_rate"] <= out["fit"]["c"] <= out["entropy_rate"] + 0.05
    assert out["fit"]["b"] < 0 and (tmp_path / "runs" / "demo").is_dir()
    png = next((tmp_path / "runs" / "demo").glob("lm_mup-*/prediction.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite([held["predicted"], held["actual"]]).all()
