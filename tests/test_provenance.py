"""Every metrics.nc, collected sweep and fit netCDF says where it came from (global attributes)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from workbench import __version__
from workbench.store import create_run_dir, open_dataset

REPO = Path(__file__).resolve().parents[1]


def _head() -> str:
    if not (REPO / ".git").exists():
        return ""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_metrics_nc_records_version_commit_config_torch_and_host(tmp_path):
    torch = pytest.importorskip("torch")
    from workbench.mlp.config import MLPRegressionConfig
    from workbench.train import TrainConfig, train

    run = create_run_dir(tmp_path, "exp", "one")
    train(MLPRegressionConfig(width=8, n_samples=64, batch_size=16, lr=0.02), TrainConfig(max_steps=3), run)
    attrs = open_dataset(run.metrics_path).attrs
    assert attrs["provenance_workbench_version"] == __version__
    assert attrs["provenance_git_commit"].split("-dirty")[0] == _head()
    assert attrs["provenance_torch"] == torch.__version__
    assert attrs["provenance_cuda"] == str(torch.version.cuda or "none")
    assert attrs["provenance_host"] == socket.gethostname()
    config = json.loads(attrs["provenance_config"])
    assert config["kind"] == "mlp_regression" and config["model"]["lr"] == 0.02 and config["train"]["max_steps"] == 3


def test_a_fit_netcdf_records_its_options_without_importing_torch(tmp_path):
    out = tmp_path / "fit.nc"
    result = run_cli("scaling", "fit", "--dataset", "porian-rw", "--where", "experiment=counting_last_layer_flops",
                     "--method", "isoflop", "--convention", "standard", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    attrs = open_dataset(out).attrs
    assert attrs["provenance_workbench_version"] == __version__
    assert attrs["provenance_cuda"] == "unknown (torch not imported)"  # the fit never imported torch
    options = json.loads(attrs["provenance_config"])
    assert options["method"] == "isoflop" and options["convention"] == "standard"
    assert options["where"] == ["experiment=counting_last_layer_flops"]
