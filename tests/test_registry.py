"""Model kinds by name (workbench.registry): built-ins, `package.module:Name`, entry points, errors.

The end-to-end check trains a model kind that lives under tests/ (tests/toy_kind/line.py) through
`workbench jobs submit` on the local executor, so the kind is imported by a separate job process
from nothing but the name in the config.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error, run_cli
from workbench.errors import ConfigError
from workbench.registry import Trainable, get_trainable, known_kinds, register_trainable, trainable_for

ROOT = Path(__file__).resolve().parents[1]


def test_built_in_kinds_resolve_without_importing_torch_models():
    import subprocess

    # Checking a config is what `jobs submit` does on a login node: it must not import torch.
    code = (
        "import sys; from workbench.registry import get_trainable; "
        "[get_trainable(k) for k in ('mlp_regression', 'gpt_lm', 'prose', 'pfgmpp', 'diffusion')]; "
        "print('torch' in sys.modules, 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout


def test_every_built_in_kind_names_its_module_and_config():
    for kind in ("mlp_regression", "gpt_lm", "prose", "pfgmpp", "diffusion"):
        trainable = get_trainable(kind)
        assert trainable.name == kind
        assert trainable_for(trainable.config_type()) is trainable or kind in ("pfgmpp", "diffusion")
    assert {"mlp_regression", "gpt_lm", "prose", "pfgmpp", "diffusion"} <= set(known_kinds())


def test_a_module_path_names_a_kind_outside_the_workbench():
    from tests.toy_kind.line import LineConfig, LineFit

    trainable = get_trainable("tests.toy_kind.line:LineFit")
    assert trainable.config_type is LineConfig and trainable.module_class() is LineFit
    assert trainable.description == "One weight fitted to y = slope·x + noise by SGD."
    trainable.check(LineConfig())  # no preflight: nothing to check


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("no_such_model", "unknown trainable kind 'no_such_model'; registered kinds: "),
        ("tests.no_such_module:Model", "cannot import tests.no_such_module"),
        ("tests.toy_kind.line:Nothing", "has no 'Nothing'"),
        ("tests.toy_kind.line:LineConfig", "neither a workbench Trainable nor a LightningModule class"),
        ("tests.toy_kind.line:", "must look like package.module:Name"),
    ],
)
def test_bad_kinds_are_one_clear_config_error(kind, fragment):
    with pytest.raises(ConfigError) as error:
        get_trainable(kind)
    assert fragment in str(error.value)


def test_registered_and_entry_point_kinds(tmp_path, monkeypatch):
    from tests.toy_kind.line import LineConfig, LineFit

    @dataclasses.dataclass(frozen=True)
    class OtherConfig:
        slope: float = 1.0

    own = register_trainable(Trainable("notebook_line", LineConfig, LineFit, "a notebook's own kind"))
    assert get_trainable("notebook_line") is own and "notebook_line" in known_kinds()
    with pytest.raises(ValueError, match="another config type"):
        register_trainable(Trainable("notebook_line", OtherConfig, LineFit))

    # An installed package declares its kinds under the workbench.trainables entry-point group.
    dist = tmp_path / "line_kinds-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: line-kinds\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[workbench.trainables]\nline = tests.toy_kind.line:LineFit\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "line" in known_kinds()
    assert get_trainable("line").config_type is LineConfig and get_trainable("line").name == "line"


def test_an_outside_kind_trains_through_jobs_submit(tmp_path):
    config = tmp_path / "line.yaml"
    config.write_text(
        f"kind: tests.toy_kind.line:LineFit\nexperiment: line\nroot: {tmp_path / 'runs'}\n"
        "model: {slope: 3.0, lr: 0.1}\ntrain: {max_steps: 60, checkpoint_every: 20}\n"
        "job: {timeout_min: 10}\n"
    )
    result = run_cli("jobs", "submit", str(config), "--executor", "local", "--wait", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "done", job
    import torch

    from workbench.store import open_dataset

    weights = torch.load(Path(job["run_dir"]) / "model.pt", weights_only=True)
    assert abs(float(weights["weight"]) - 3.0) < 0.05  # the model learnt the slope
    metrics = open_dataset(Path(job["run_dir"]) / "metrics.nc")
    assert metrics["loss"].values[-1] < 0.01 * metrics["loss"].values[0]
    recorded = json.loads((Path(job["run_dir"]) / "config.json").read_text())
    assert recorded["kind"] == "tests.toy_kind.line:LineFit" and recorded["model"]["slope"] == 3.0


def test_an_outside_kind_with_a_bad_key_fails_before_submission(tmp_path):
    config = tmp_path / "line.yaml"
    config.write_text(
        f"kind: tests.toy_kind.line:LineFit\nexperiment: line\nroot: {tmp_path / 'runs'}\nmodel: {{slop: 3.0}}\n"
    )
    assert_clean_error(
        run_cli("jobs", "submit", str(config), "--executor", "local", cwd=ROOT),
        "unknown key 'model.slop'",
        "did you mean 'slope'",
    )
    assert not (tmp_path / "runs").exists()
