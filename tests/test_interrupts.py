"""A Ctrl-C whose KeyboardInterrupt lands in a destructor (and is swallowed there) still stops a
debug sweep and the training loop."""

from __future__ import annotations

import signal

import pytest
import submitit

from workbench import interrupts

# the swallowed KeyboardInterrupt is reported as "unraisable"; that it is lost is the point
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class CtrlCOnCollection:
    """Sends SIGINT to this process from its destructor: Python raises the KeyboardInterrupt
    inside __del__, prints "Exception ignored" and goes on, as with a weakref callback."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def swallow_a_ctrl_c() -> str:
    CtrlCOnCollection()  # collected at once
    return "finished"


def test_a_swallowed_ctrl_c_is_noted_and_the_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    with interrupts.ctrl_c_noted():
        assert not interrupts.requested()
        assert swallow_a_ctrl_c() == "finished"  # the interrupt itself was lost
        assert interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_requested()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # an ordinary Ctrl-C still interrupts
    assert signal.getsignal(signal.SIGINT) is before
    assert not interrupts.requested()


def test_a_swallowed_ctrl_c_stops_a_debug_sweep_after_its_member(tmp_path):
    from jobs.sweep import _run_debug_members

    executor = submitit.DebugExecutor(folder=tmp_path / "jobs")
    jobs = [executor.submit(swallow_a_ctrl_c), executor.submit(swallow_a_ctrl_c)]
    records = [{"run_id": "000"}, {"run_id": "001"}]
    with pytest.raises(KeyboardInterrupt):
        _run_debug_members(tmp_path, records, jobs)
    # the first member ran to its end before anything could stop it; the second never started
    assert [r["outcome"] for r in records] == ["done", "failed"]
    assert records[1]["detail"] == "not started: the sweep was interrupted (Ctrl-C)"
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_training_stops_at_the_next_step_after_a_swallowed_ctrl_c(tmp_path):
    import lightning.pytorch as pl
    import torch

    from workbench.callbacks import InterruptCheck

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            if self.global_step == 3:
                CtrlCOnCollection()
            return self.layer(batch).pow(2).mean()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_steps=100, callbacks=[InterruptCheck()], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with interrupts.ctrl_c_noted(), pytest.raises(SystemExit) as stopped:
        trainer.fit(Tiny())
    # Lightning turns the KeyboardInterrupt into SystemExit(1) after its clean-up
    assert isinstance(stopped.value.__context__, KeyboardInterrupt)
    assert trainer.global_step == 4
