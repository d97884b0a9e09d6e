"""The `gpt_lm` trainable (workbench.lm.trainable) through the harness and the jobs layer, on CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench.errors import ConfigError
from workbench.store import create_run_dir, open_dataset

torch = pytest.importorskip("torch")

from workbench.lm.trainable import GPTLMConfig  # noqa: E402 - after the torch check
from workbench.train import TrainConfig, get_trainable, load_weights, train  # noqa: E402

TINY = GPTLMConfig(width=32, depth=2, head_dim=8, seq_len=32, batch_size=16, corpus_tokens=1 << 16,
                   eval_every=10, eval_batches=2)
REPO = Path(__file__).resolve().parents[1]


def test_registered_and_config_checked():
    assert get_trainable("gpt_lm").config_type is GPTLMConfig
    with pytest.raises(ConfigError, match="not divisible by head_dim"):
        GPTLMConfig(width=36, head_dim=8)
    with pytest.raises(ConfigError, match="corpus_path"):
        GPTLMConfig(corpus="file")


def test_tiny_run_lowers_val_loss_and_records_counts(tmp_path):
    run = create_run_dir(tmp_path, "lm", "a")
    result = train(TINY, TrainConfig(max_steps=30, checkpoint_every=10), run)
    assert result["status"] == "completed" and result["steps"] == 30
    ds = open_dataset(run.metrics_path)
    assert list(ds["step"].values) == list(range(1, 31))
    assert list(ds["eval_step"].values) == [0, 10, 20, 30]
    val = ds["val_loss"].values
    assert val[0] == pytest.approx(5.545, abs=0.01)  # zero readout: uniform over 256 bytes, ln 256
    assert val[-1] < val[0] - 2.0 and float(ds["final_val_loss"]) == val[-1]
    # Non-embedding N: 2 blocks x (4 w^2 attention + 8 w^2 MLP + 2 LayerNorms) + final LayerNorm.
    w = 32
    assert int(ds["params"]) == 2 * (12 * w * w + 4 * w) + 2 * w
    assert int(ds["params_total"]) == int(ds["params"]) + (256 + 32 + 256) * w
    assert float(ds["entropy_rate"]) < val[-1]  # the Markov floor lies below any trained loss


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    config = dataclasses.replace(TINY, lr_decay_steps=20)  # one LR schedule for both legs
    whole = create_run_dir(tmp_path, "lm", "whole")
    train(config, TrainConfig(max_steps=20, checkpoint_every=5, seed=1), whole)
    split = create_run_dir(tmp_path, "lm", "split")
    train(config, TrainConfig(max_steps=13, checkpoint_every=5, seed=1), split)
    resumed = train(config, TrainConfig(max_steps=20, checkpoint_every=5, seed=1), split)
    assert resumed["resumed_from_step"] == 13 and resumed["steps"] == 20
    a, b = load_weights(whole), load_weights(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    da, db = open_dataset(whole.metrics_path), open_dataset(split.metrics_path)
    assert (da["loss"].values == db["loss"].values).all()
    assert list(db["eval_step"].values) == [0, 10, 13, 20]  # 13: the interrupted run's final eval
    assert da["val_loss"].sel(eval_step=20).item() == db["val_loss"].sel(eval_step=20).item()


def test_shipped_job_config_runs_as_a_local_job(tmp_path):
    text = (REPO / "jobs" / "configs" / "lm_mup_tiny.yaml").read_text()
    assert "root: runs " in text
    config = tmp_path / "lm_mup_tiny.yaml"
    config.write_text(text.replace("root: runs ", f"root: {tmp_path / 'runs'} "))
    result = run_cli("jobs", "submit", str(config), "--executor", "local", "--wait", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    text = json.dumps(payload)
    assert '"done"' in text, text
    metrics = list((tmp_path / "runs" / "lm_mup_tiny").glob("*/metrics.nc"))
    assert len(metrics) == 1
    ds = open_dataset(metrics[0])
    assert ds["val_loss"].values[-1] < ds["val_loss"].values[0] - 2.0


@pytest.mark.slow
def test_width_sweep_as_local_jobs_then_lm_predict(tmp_path):
    text = (REPO / "jobs" / "configs" / "lm_mup_tiny.yaml").read_text()
    config = tmp_path / "lm_mup_tiny.yaml"
    config.write_text(text.replace("root: runs ", f"root: {tmp_path / 'runs'} ").replace("max_steps: 60", "max_steps: 30"))
    swept = run_cli("jobs", "sweep", str(config), "--executor", "local", "--grid", "model.width=16,24,32,48,64",
                    "--wait", "--json", cwd=REPO)
    assert swept.returncode == 0, swept.stderr
    result = run_cli("lm", "predict", str(tmp_path / "runs" / "lm_mup_tiny"), "--holdout", "1", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload["fit"]) == {"a", "b", "c"} and payload["fit"]["b"] < 0
    (row,) = payload["predictions"]
    assert row["width"] == 64 and row["params"] == 2 * (12 * 64 * 64 + 4 * 64) + 2 * 64
    assert 2.0 < row["actual"] < 3.5 and 2.0 < row["predicted"] < 3.5
