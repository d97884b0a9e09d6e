"""MEDIDA with a NaN or infinite coefficient: one line naming the coefficient and its term, before any
forecast (it used to surface at the regression as a forecast that "blew up")."""

from __future__ import annotations

import json
import math

import pytest

from scaling.medida.pipeline import MedidaConfig
from tests.conftest import one_line_error
from workbench.errors import InputError


@pytest.fixture
def no_run(monkeypatch):
    """The pipeline must not start: a bad coefficient is caught with the config."""
    import scaling.medida.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the MEDIDA pipeline ran with a non-finite coefficient")

    monkeypatch.setattr(scaling.medida.pipeline, "run", no_work)


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        ("extra_model={u_xxx: .nan}", ["extra_model.u_xxx", "u_xxx term", "NaN"]),
        ("lambda_model=[.nan, 1, 1]", ["lambda_model[0]", "u*u_x term", "NaN"]),
        ("lambda_true=[1, 1, .inf]", ["lambda_true[2]", "u_xxxx term", "infinite"]),
        ("extra_true={u^2*u_x: -.inf}", ["extra_true.u^2*u_x", "infinite"]),
    ],
)
def test_run_names_a_non_finite_coefficient(capsys, no_run, setting, fragments):
    line = one_line_error(capsys, "medida", "run", "KS2", "--set", setting)
    for fragment in fragments:
        assert fragment in line, line
    assert "blew up" not in line


def test_config_file_and_sweep_with_a_nan_coefficient(capsys, no_run, tmp_path):
    config = tmp_path / "case.yaml"
    config.write_text("case: KS2\nlambda_model: [1.0, .nan, 1.0]\n")
    line = one_line_error(capsys, "medida", "run", str(config))
    assert "lambda_model[1]" in line and "u_xx term" in line and "NaN" in line
    sweep = tmp_path / "sweep.json"
    base = {"lambda_true": [1.0, math.nan, 1.0]}
    sweep.write_text(json.dumps({"name": "t", "root": str(tmp_path / "runs"), "cases": ["KS2"], "base": base}))
    line = one_line_error(capsys, "medida", "sweep", str(sweep), "--executor", "debug")
    assert "lambda_true[1]" in line and "NaN" in line
    assert not (tmp_path / "runs" / "t" / "results.nc").exists()


def test_finite_coefficients_are_accepted():
    with pytest.raises(InputError, match=r"lambda_model\[0\], the coefficient of the u\*u_x term, is NaN"):
        MedidaConfig(case="KS2", lambda_model=[math.nan, 1.0, 1.0])
    MedidaConfig(case="KS2", lambda_model=[0.0, -1.0, 2.5], extra_model={"u_xxx": 0.1})
