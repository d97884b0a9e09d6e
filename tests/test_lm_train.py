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

from workbench.lm.config import GPTLMConfig  # noqa: E402 - after the torch check
from workbench.registry import get_trainable  # noqa: E402
from workbench.train import TrainConfig, load_weights, train  # noqa: E402

TINY = GPTLMConfig(
    width=32, depth=2, head_dim=8, seq_len=32, batch_size=16, corpus_tokens=1 << 16, eval_every=10, eval_batches=2
)
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
    config.write_text(
        text.replace("root: runs ", f"root: {tmp_path / 'runs'} ").replace("max_steps: 60", "max_steps: 30")
    )
    swept = run_cli("jobs", "sweep", str(config), "--executor", "local", "--grid", "model.width=16,24,32,48,64",
                    "--wait", "--json", cwd=REPO)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    result = run_cli("lm", "predict", str(tmp_path / "runs" / "lm_mup_tiny"), "--holdout", "1", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload["fit"]) == {"a", "b", "c"} and payload["fit"]["b"] < 0
    (row,) = payload["predictions"]
    assert row["width"] == 64 and row["params"] == 2 * (12 * 64 * 64 + 4 * 64) + 2 * 64
    assert 2.0 < row["actual"] < 3.5 and 2.0 < row["predicted"] < 3.5


def _submit(tmp_path, *sets):
    args = [
        "jobs",
        "submit",
        str(REPO / "jobs" / "configs" / "lm_mup_tiny.yaml"),
        "--executor",
        "local",
        "--set",
        f"root={tmp_path / 'runs'}",
    ]
    for item in sets:
        args += ["--set", item]
    return run_cli(*args)


def test_bad_lm_inputs_are_refused_at_submission_with_exit_2(tmp_path):
    from tests.conftest import assert_clean_error

    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "short.txt").write_bytes(b"def f(): pass\n")
    bsh = tmp_path / "depth3.bsh"
    written = run_cli(
        "lm", "base-shapes", str(REPO / "jobs" / "configs" / "lm_mup_tiny.yaml"), str(bsh), "--set", "model.depth=3"
    )
    assert written.returncode == 0, written.stderr
    cases = [
        (["model.width=36"], "width = 36 is not divisible by head_dim = 8"),
        ([f"model.base_shapes={bsh}"], "does not match the model"),
        (["model.corpus=file", f"model.corpus_path={tmp_path / 'empty.txt'}"], "is empty"),
        (["model.corpus=file", f"model.corpus_path={tmp_path / 'short.txt'}"], "fewer than seq_len + 1"),
        (["model.corpus=file", f"model.corpus_path={tmp_path / 'absent.txt'}"], "not found"),
        (["model.parametrization=sp", f"model.base_shapes={bsh}"], "for parametrization 'mup' only"),
    ]
    for sets, fragment in cases:
        assert_clean_error(_submit(tmp_path, *sets), fragment)
    assert not (tmp_path / "runs").exists()  # refused before any run directory was made


def test_base_shapes_file_round_trip_through_a_config(tmp_path):
    from workbench.lm.model import load_base_shapes
    from workbench.lm.module import build_model_for
    from workbench.lm.preflight import preflight_gpt_lm

    bsh = tmp_path / "base.bsh"
    written = run_cli("lm", "base-shapes", str(REPO / "jobs" / "configs" / "lm_mup_tiny.yaml"), str(bsh), "--json")
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["base_width"] == 32
    shapes = load_base_shapes(bsh)  # name -> mup InfShape
    assert [d.base_dim for d in shapes["blocks.0.mlp.c_fc.weight"]] == [128, 32]
    assert [d.base_dim for d in shapes["wte.weight"]] == [None, 32]
    config = dataclasses.replace(TINY, width=96, base_shapes=str(bsh))
    preflight_gpt_lm(config)  # no error: the file describes this model at any width
    model = build_model_for(config)
    assert model.blocks[0].mlp.c_fc.weight.infshape.width_mult() == 3.0
