"""`workbench medida ...`: cases, one run's JSON interface, config files, sweeps, and bad input (exit 2, one line).

Most tests call `workbench.cli.main` in this process so that they share MEDIDA's cached truth trajectory
(~5 s to compute; every run here uses the default 10 pairs, so one truth serves them all).
"""

from __future__ import annotations

import json

import pytest
import xarray as xr

from tests.conftest import assert_clean_error, run_cli
from workbench.cli import main


def cli(capsys, *args: str):
    """Run `workbench ARGS` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_exit_2(capsys, *args: str, fragment: str = ""):
    code, out, err = cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0], (fragment, lines[0])
    assert out == ""


def test_cases_lists_every_family(capsys):
    code, out, _ = cli(capsys, "medida", "cases")
    assert code == 0
    for name in [f"KS{i}" for i in range(1, 13)] + [
        "KSpu3x1",
        "KSpu3x2",
        "KSpu3x3",
        "KSpu3x_Du3_1",
        "KSpu3x_Du3_2",
        "KSpu3x_Du3_3",
    ]:
        assert f" {name} " in out, name
    code, out, _ = cli(capsys, "medida", "cases", "--json")
    rows = {row["case"]: row for row in json.loads(out)["cases"]}
    assert rows["KS2"]["lambda_model"] == [1.0, 0.0, 1.0] and rows["KS2"]["true_error"] == {"u_xx": -1.0}
    # KSpu3x: the model's spurious +λ3·u_xxx on the LHS is a +λ3·u_xxx RHS error
    assert rows["KSpu3x2"]["true_error"] == {"u_xxx": 0.5}
    assert "known failure" in rows["KS11"]["note"]


def test_run_ks2_json_interface(capsys):
    code, out, err = cli(capsys, "medida", "run", "KS2", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["true"] == {"u_xx": -1.0}
    for term, entry in payload["discovered"].items():
        assert set(entry) == {"coef", "std"} and all(isinstance(v, float) for v in entry.values()), term
    # noise-free one-step estimate: the O(Δt) CNAB2 bias is below 1 % here; 5 % leaves room for it
    assert payload["discovered"]["u_xx"]["coef"] == pytest.approx(-1.0, rel=0.05)
    assert payload["spurious"] == [] and payload["relative_error"]["u_xx"] < 0.05
    assert payload["corrected_lhs"]["u_xx"]["corrected"] == pytest.approx(1.0, rel=0.05)
    assert "Derivative" in payload["sympy"] and "diagnostics" in payload


def test_run_text_shows_table_and_sympy(capsys):
    code, out, err = cli(capsys, "medida", "run", "ks2")  # case names are case-insensitive
    assert code == 0, err
    assert "MEDIDA KS2" in out and "u_xx" in out and "±" in out
    assert "spurious terms: none" in out and "Derivative(u(x), (x, 2))" in out


def test_run_config_file_with_model_and_extra_terms(capsys, tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text("lambda_model: [0.5, 1.0, 1.0]\nextra_model: {u_xxx: 0.5}\nnoise: 0.0\n")
    code, out, err = cli(capsys, "medida", "run", str(path), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["true"] == pytest.approx({"u*u_x": -0.5, "u_xxx": 0.5})
    # relative to the truth's own coefficient (u*u_x) or the error (u_xxx): a few % at Δt = 5e-3
    for term, value in payload["true"].items():
        assert payload["discovered"][term]["coef"] == pytest.approx(value, rel=0.05), term


def test_example_case_config_loads():
    from scaling.medida.cli import load_run_config

    config = load_run_config("jobs/configs/medida_case.yaml", ["noise=0.01", "ensemble=none"])
    assert config.lambda_model == [0.5, 1.0, 1.0] and config.ensemble is None and config.noise == 0.01


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("run", "KS99"), "KS99"),
        (("run", "KS3", "--set", "library.max_derivative=2"), "max_derivative"),
        (("run", "KS2", "--set", "noise=-0.1"), "noise"),
        (("run", "KS2", "--set", "noise=0.01", "--set", "ensemble=1"), "ensemble"),
        (("run", "KS2", "--set", "foo=1"), "foo"),
        (("run", "KS2", "--set", "case=KS99"), "KS99"),
        (("run", "missing.yaml"), "missing.yaml"),
    ],
)
def test_bad_run_input_is_one_line_exit_2(capsys, args, fragment):
    assert_exit_2(capsys, "medida", *args, fragment=fragment)


def test_bad_config_files_are_one_line_exit_2(capsys, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("noise: [0.1\n")
    assert_exit_2(capsys, "medida", "run", str(broken), fragment="broken.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("case: KS2\nnoize: 0.1\n")
    assert_exit_2(capsys, "medida", "run", str(unknown), fragment="noize")
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text("case: KS2\nensemble: 1\n")
    assert_exit_2(capsys, "medida", "run", str(bad_value), fragment="bad_value.yaml")


def test_bad_input_in_a_fresh_process_has_no_traceback():
    assert_clean_error(run_cli("medida", "run", "KS2", "--set", "noise=-1"), "noise")


def _sweep_config(tmp_path, **extra) -> str:
    data = {
        "name": "tiny",
        "root": str(tmp_path / "runs"),
        "cases": ["KS2", "KS12"],
        "noise": [0.0],
        "ensemble": ["none"],
        "seeds": 1,
        **extra,
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_sweep_writes_netcdf_with_expected_dims(capsys, tmp_path):
    code, out, err = cli(capsys, "medida", "sweep", _sweep_config(tmp_path), "--executor", "debug", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["executor"] == "debug" and len(payload["rows"]) == 2
    with xr.open_dataset(tmp_path / "runs" / "tiny" / "results.nc", engine="h5netcdf") as ds:
        assert dict(ds.sizes) == {"case": 2, "noise": 1, "ensemble": 1, "seed": 1, "term": 2}
        assert list(ds["case"].values) == ["KS2", "KS12"] and list(ds["ensemble"].values) == [0]  # 0: no DA
        assert set(ds["term"].values) == {"u*u_x", "u_xx"}
        for name in ("coef", "std", "true_coef", "relative_error", "spurious", "max_relative_error", "timing"):
            assert name in ds, name
        assert float(ds["true_coef"].sel(case="KS12", term="u*u_x")) == -0.5
        assert float(ds["coef"].sel(case="KS2", term="u_xx").squeeze()) == pytest.approx(-1.0, rel=0.05)
        assert int(ds["spurious"].sel(case="KS2").squeeze()) == 0
    assert (tmp_path / "runs" / "tiny" / "config.yaml").is_file()


def test_example_sweep_config_loads():
    from scaling.medida.sweep import MedidaSweepConfig, member_configs
    from workbench.config import load

    config = load(MedidaSweepConfig, "jobs/configs/medida_sweep.yaml")
    assert config.ensemble[0] == 0
    members = member_configs(config)
    assert len(members) == len(config.cases) * len(config.noise) * len(config.ensemble) * config.seeds
    assert members[0].ensemble is None


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ({"cases": ["KS2", "KS99"]}, "KS99"),
        ({"noise": [-0.01]}, "noise"),
        ({"ensemble": [1]}, "ensemble"),
        ({"base": {"noise": 0.1}}, "base.noise"),
        ({"base": {"library": {"max_derivative": 1}}}, "max_derivative"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_sweep_input_is_one_line_exit_2(capsys, tmp_path, extra, fragment):
    assert_exit_2(capsys, "medida", "sweep", _sweep_config(tmp_path, **extra), "--executor", "debug", fragment=fragment)
    assert not (tmp_path / "runs" / "tiny" / "results.nc").exists()


@pytest.mark.slow
def test_sweep_member_through_local_executor(tmp_path):
    result = run_cli("medida", "sweep", _sweep_config(tmp_path, cases=["KS2"]), "--set", "base.pairs=2",
                     "--executor", "local", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "runs" / "tiny" / "results.nc", engine="h5netcdf") as ds:
        assert float(ds["coef"].sel(case="KS2", term="u_xx").squeeze()) == pytest.approx(-1.0, rel=0.05)
