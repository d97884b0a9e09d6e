"""The Lightning harness (workbench.train), in process: seeding, exact resume, NaN guard, outputs.

Everything here runs on CPU with one thread, where the harness promises bit-for-bit
repeatability, so weights are compared with torch.equal (no tolerance).
"""

from __future__ import annotations

import pytest

from workbench.config import from_dict
from workbench.errors import ConfigError
from workbench.store import create_run_dir, open_dataset

torch = pytest.importorskip("torch")

from workbench.mlp.config import MLPRegressionConfig  # noqa: E402 - after the torch check
from workbench.registry import get_trainable  # noqa: E402
from workbench.train import LAST_CHECKPOINT, NonFiniteLossError, TrainConfig, load_weights, train  # noqa: E402

SMALL = MLPRegressionConfig(width=16, n_samples=128, batch_size=16)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    whole = create_run_dir(tmp_path, "exp", "whole")
    result = train(SMALL, TrainConfig(max_steps=40, checkpoint_every=10, seed=3), whole)
    assert result["status"] == "completed" and result["steps"] == 40 and result["resumed_from_step"] is None

    # Stop at 25 (checkpoints at 10, 20 and the end, 25), then continue to 40 from last.ckpt.
    split = create_run_dir(tmp_path, "exp", "split")
    train(SMALL, TrainConfig(max_steps=25, checkpoint_every=10, seed=3), split)
    resumed = train(SMALL, TrainConfig(max_steps=40, checkpoint_every=10, seed=3), split)
    assert resumed["resumed_from_step"] == 25 and resumed["steps"] == 40
    assert _same_weights(load_weights(whole), load_weights(split))

    # The loss history continues across the restart: one value per step, equal to the whole run's.
    a, b = open_dataset(whole.metrics_path), open_dataset(split.metrics_path)
    assert list(b["step"].values) == list(range(1, 41))
    assert (a["loss"].values == b["loss"].values).all()
    assert str(b["status"].values) == "completed"


def test_seed_decides_the_weights(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run = create_run_dir(tmp_path, "exp", name)
        train(SMALL, TrainConfig(max_steps=5, checkpoint_every=5, seed=seed), run)
        runs[name] = load_weights(run)
    assert _same_weights(runs["a"], runs["b"])
    assert not _same_weights(runs["a"], runs["c"])


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # Plain SGD with a huge step diverges within a few steps: loss 1 -> 1e7 -> 1e16 -> ... -> inf.
    diverging = MLPRegressionConfig(width=16, n_samples=128, batch_size=16, optimizer="sgd", lr=1e3)
    run = create_run_dir(tmp_path, "exp", "nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step (\d+).*last good checkpoint: step"):
        train(diverging, TrainConfig(max_steps=50, checkpoint_every=2), run)
    ckpt = torch.load(run.checkpoints / LAST_CHECKPOINT, weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    metrics = open_dataset(run.metrics_path)
    assert str(metrics["status"].values) == "nonfinite"
    assert not torch.isfinite(torch.tensor(metrics["loss"].values[-1]))
    assert ckpt["global_step"] < int(metrics["step"].values[-1])  # saved before the bad step
    assert not (run.path / "model.pt").exists()  # no "final" weights from a diverged run


def test_checkpoint_is_readable_with_weights_only(tmp_path):
    run = create_run_dir(tmp_path, "exp", "ckpt")
    train(SMALL, TrainConfig(max_steps=3, checkpoint_every=1), run)
    ckpt = torch.load(run.checkpoints / LAST_CHECKPOINT, weights_only=True)
    assert ckpt["global_step"] == 3 and "optimizer_states" in ckpt
    assert not list(run.checkpoints.glob("*.tmp"))  # atomic saves leave no temp files


def test_trainable_registry_and_config_checks():
    assert get_trainable("mlp_regression").config_type is MLPRegressionConfig
    with pytest.raises(ConfigError, match="registered kinds: .*mlp_regression"):
        get_trainable("no_such_model")
    with pytest.raises(ConfigError, match="lr"):
        from_dict(MLPRegressionConfig, {"lr": -1.0})
    with pytest.raises(ConfigError, match="max_steps"):
        from_dict(TrainConfig, {"max_steps": 1.5})


def test_batch_not_divisible_by_processes_is_refused():
    # The global batch is split across processes by rows; an uneven split would change the math.
    module = get_trainable("mlp_regression").build(MLPRegressionConfig(batch_size=3), 0)

    class FakeTrainer:
        world_size, global_rank, global_step = 2, 0, 0

    module._trainer = FakeTrainer()
    with pytest.raises(ValueError, match="not divisible"):
        module.train_dataloader()


def test_loggers_csv_and_tensorboard_carry_the_metrics_nc_values(tmp_path):
    """train.loggers: [csv, tensorboard] writes both under <run>/logs/, with the per-step loss and the
    final loss of metrics.nc; metrics.nc stays the record."""
    import csv

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = create_run_dir(tmp_path, "exp", "logged")
    result = train(SMALL, TrainConfig(max_steps=12, checkpoint_every=5, loggers=("csv", "tensorboard")), run)
    metrics = open_dataset(run.metrics_path)
    final = float(metrics["final_loss"])
    assert result["final_loss"] == pytest.approx(final)

    rows = list(csv.DictReader((run.path / "logs" / "csv" / "metrics.csv").open()))
    losses = {int(r["step"]): float(r["value"]) for r in rows if r["metric"] == "loss"}
    assert sorted(losses) == list(metrics["step"].values)
    assert [losses[s] for s in sorted(losses)] == metrics["loss"].values.tolist()
    assert [float(r["value"]) for r in rows if r["metric"] == "final_loss"] == [final]

    events = EventAccumulator(str(run.path / "logs" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(metrics["step"].values)
    assert events.Scalars("final_loss")[-1].value == pytest.approx(final, rel=1e-6)


def test_a_resumed_run_continues_its_csv_log(tmp_path):
    """Stopped at 25 (last checkpoint 20) and resumed to 40: the CSV holds each step once, 1..40,
    with the values of metrics.nc."""
    import csv

    run = create_run_dir(tmp_path, "exp", "split")
    train(SMALL, TrainConfig(max_steps=25, checkpoint_every=10, seed=3), run)
    train(SMALL, TrainConfig(max_steps=40, checkpoint_every=10, seed=3), run)
    rows = list(csv.DictReader((run.path / "logs" / "csv" / "metrics.csv").open()))
    steps = [int(r["step"]) for r in rows if r["metric"] == "loss"]
    assert steps == list(range(1, 41))
    metrics = open_dataset(run.metrics_path)
    assert [float(r["value"]) for r in rows if r["metric"] == "loss"] == metrics["loss"].values.tolist()


def test_unknown_or_uninstalled_logger_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown logger 'mlflow'; choose from csv, tensorboard, wandb"):
        TrainConfig(loggers=("csv", "mlflow"))
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match="wandb needs the wandb package"):
            TrainConfig(loggers=("wandb",))
    assert TrainConfig(loggers=()).loggers == ()
