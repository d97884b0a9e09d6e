"""`workbench lm` outputs that cannot be written fail before any model is built (exit 2, one line)."""

from pathlib import Path

import pytest

from tests.conftest import one_line_error

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "jobs" / "configs" / "lm_mup_tiny.yaml")


@pytest.fixture
def blocker(tmp_path):
    """A regular file: a path below it cannot be created, even by root (chmod would not stop root)."""
    path = tmp_path / "file.txt"
    path.write_text("a regular file")
    return path


def test_base_shapes_unwritable_out_exits_2_before_building(capsys, monkeypatch, blocker):
    import workbench.lm.model

    def no_work(*args, **kwargs):
        raise AssertionError("base shapes were built before OUT was checked")

    monkeypatch.setattr(workbench.lm.model, "base_shapes", no_work)
    for out in (blocker / "base.bsh", Path("/proc/workbench-base.bsh")):
        line = one_line_error(capsys, "lm", "base-shapes", CONFIG, str(out))
        assert str(out) in line and "base-shape file" in line


def test_coord_check_unwritable_plot_exits_2_before_training(capsys, monkeypatch, blocker, tmp_path):
    import workbench.lm.coord_check

    def no_work(*args, **kwargs):
        raise AssertionError("coord-check trained before --plot was checked")

    monkeypatch.setattr(workbench.lm.coord_check, "coord_data", no_work)
    quick = ["lm", "coord-check", "--widths", "16,32", "--variants", "mup", "--steps", "1", "--seeds", "1"]
    for plot in (blocker / "coord.png", Path("/proc/workbench-coord.png")):
        line = one_line_error(capsys, *quick, "--plot", str(plot))
        assert str(plot) in line and "--plot" in line
    (tmp_path / "coord.png").mkdir()
    assert "is a directory" in one_line_error(capsys, *quick, "--plot", str(tmp_path / "coord.png"))
    # A format matplotlib cannot write would have failed at the end, after the training.
    assert "unknown figure format '.xyz'" in one_line_error(capsys, *quick, "--plot", str(tmp_path / "c.xyz"))


def test_transfer_unwritable_outputs_exit_2_before_training(capsys, monkeypatch, blocker):
    import workbench.lm.transfer

    def no_work(*args, **kwargs):
        raise AssertionError("transfer trained before its outputs were checked")

    monkeypatch.setattr(workbench.lm.transfer, "lr_sweep", no_work)
    quick = ["lm", "transfer", "--widths", "32,64", "--steps", "1"]
    assert str(blocker) in one_line_error(capsys, *quick, "--out", str(blocker / "sweep.nc"))
    assert str(blocker) in one_line_error(capsys, *quick, "--plot", str(blocker / "transfer.png"))
