"""The `workbench` command as a user meets it: help, JSON, outputs, and bad input (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def grid_csv(tmp_path_factory):
    """A noise-free N×D grid from Hoffmann's printed constants, as a CSV with custom column names."""
    from scaling.laws import HOFFMANN_PRINTED
    from scaling.simulate import simulate_runs

    runs = simulate_runs(HOFFMANN_PRINTED, kind="grid", grid_points=6)
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    runs.rename(columns={"N": "params", "D": "tokens", "loss": "val_loss"}).drop(columns="C").to_csv(path, index=False)
    return path


def test_help_has_examples():
    for args in (["--help"], ["scaling", "fit", "--help"], ["scaling", "reconcile", "--help"], ["bench", "--help"]):
        result = run_cli(*args)
        assert result.returncode == 0
        assert "example" in result.stdout


def test_help_shows_each_default_once_and_no_empty_default():
    from workbench.cli import build_parser
    from workbench.completion import _subparsers

    parser = build_parser()
    for area_parser in _subparsers(parser).values():
        for verb_parser in [area_parser, *_subparsers(area_parser).values()]:
            text = verb_parser.format_help()
            assert "(default: None)" not in text and "(default: False)" not in text, verb_parser.prog
            assert "(default: []" not in text, verb_parser.prog
            for line in text.splitlines():
                assert line.count("default") <= 1 or "(default" not in line, (verb_parser.prog, line)
    assert "(default: auto)" in run_cli("jobs", "submit", "--help").stdout  # a real default is still shown


def test_version_and_completion_script(tmp_path):
    import subprocess

    from workbench import __version__

    assert run_cli("--version").stdout.strip() == f"workbench {__version__}"
    result = run_cli("completion", "bash")
    assert result.returncode == 0
    script = tmp_path / "workbench.bash"
    script.write_text(result.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = f"source {script}; COMP_WORDS=(workbench {line}); COMP_CWORD={len(words)}; _workbench; "
        probe += 'printf "%s\\n" "${COMPREPLY[@]}"'
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert complete("sc") == ["scaling"]
    assert set(complete("jobs", "s")) == {"sbatch", "status", "submit", "sweep"}
    assert complete("jobs", "submit", "x.yaml", "--exec") == ["--executor"]
    assert "--method" in complete("scaling", "fit", "runs.csv", "--")
    (tmp_path / "my_config.yaml").write_text("")
    assert complete("jobs", "submit", str(tmp_path / "my_c")) == [str(tmp_path / "my_config.yaml")]  # files
    assert_clean_error(run_cli("completion", "fish"), "invalid choice: 'fish'")


def test_fit_verb_is_built_from_the_method_registry():
    from scaling.methods import METHODS

    text = run_cli("scaling", "fit", "--help").stdout
    for name, method in METHODS.items():
        assert f"  {name}" in text and method.help in text
    assert "{" + ",".join(METHODS) + "}" in text  # the --method choices


@pytest.mark.slow
def test_parametric_json_keys_and_outputs(grid_csv, tmp_path):
    out, plot = tmp_path / "fit.nc", tmp_path / "fit.png"
    result = run_cli("scaling", "fit", str(grid_csv), "--method", "parametric", "--convention", "standard",
                     "--col-N", "params", "--col-D", "tokens", "--col-loss", "val_loss", "--bootstrap", "20",
                     "--out", str(out), "--plot", str(plot), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in ("E", "A", "B", "alpha", "beta", "a", "b", "ci"):
        assert key in payload
    assert payload["alpha"] == pytest.approx(0.34, rel=1e-5) and payload["beta"] == pytest.approx(0.28, rel=1e-5)
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert float(ds["alpha"]) == pytest.approx(payload["alpha"]) and ds.sizes["draw"] == 20
    assert ds.attrs["convention"] == "standard"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_isoflop_json_keys_on_bundled_dataset(tmp_path):
    result = run_cli("scaling", "fit", "--dataset", "porian-rw", "--where", "experiment=cosine_decay", "--method",
                     "isoflop", "--convention", "standard", "--replicates", "200", "--json", "--plot",
                     str(tmp_path / "iso.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for key in ("a", "a_ci", "b", "b_ci"):
        assert key in payload
    assert payload["a"] == pytest.approx(0.5715, abs=0.01)
    assert (tmp_path / "iso.png").exists()


@pytest.mark.slow
def test_isoflop_fits_every_bundled_porian_experiment_with_its_draws(tmp_path):
    """All 15 Porian experiments fit and write their bootstrap draws. The N and D bootstraps are
    separate noise draws trimmed to their own fewest-valid counts (Porian et al. 2024, App. B), so
    the a and b draws differ in length (they did on 6 experiments at the default 1000 replicates,
    which crashed --out); each keeps its own count."""
    from scaling.datasets import load_dataset

    experiments = [
        (name, experiment, str(rows["flop_count"].iloc[0]))
        for name in ("porian-rw", "porian-owt2")
        for experiment, rows in load_dataset(name).groupby("experiment")
    ]
    assert len(experiments) == 15
    unequal = 0
    for name, experiment, convention in experiments:
        out = tmp_path / f"{name}-{experiment}.nc"
        where = f"experiment={experiment}"
        result = run_cli("scaling", "fit", "--dataset", name, "--where", where, "--method", "isoflop", "--convention",
                         convention, "--replicates", "1000", "--json", "--out", str(out))  # fmt: skip
        assert result.returncode == 0, (name, experiment, result.stderr)
        payload = json.loads(result.stdout)
        assert np.all(np.isfinite([payload["a"], payload["b"], *payload["a_ci"], *payload["b_ci"]])), payload
        ds = xr.open_dataset(out, engine="h5netcdf")
        assert float(ds["a"]) == pytest.approx(payload["a"]) and float(ds["b"]) == pytest.approx(payload["b"])
        assert ds.sizes["draw"] == payload["n_bootstrap"] > 500 and ds.sizes["draw_D"] > 500
        assert np.all(np.isfinite(ds["a_draws"])) and np.all(np.isfinite(ds["b_draws"]))
        unequal += ds.sizes["draw"] != ds.sizes["draw_D"]
    assert unequal > 0  # the case that used to crash is exercised


@pytest.mark.slow
def test_reconcile_json_is_the_ladder(tmp_path):
    result = run_cli("scaling", "reconcile", "--dataset", "porian-rw", "--replicates", "200", "--json", "--out",
                     str(tmp_path / "ladder.nc"), "--plot", str(tmp_path / "ladder.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["step"] for s in steps] == ["kaplan count", "+ head FLOPs", "+ warmup", "+ decay", "+ tuning"]
    a = [s["a"] for s in steps]
    assert np.allclose(a, [0.835, 0.706, 0.602, 0.571, 0.497], atol=0.01)
    assert all(len(s["a_ci"]) == 2 and s["a_ci"][0] < s["a"] < s["a_ci"][1] for s in steps)
    assert xr.open_dataset(tmp_path / "ladder.nc", engine="h5netcdf").sizes["step"] == 5


@pytest.mark.slow
def test_simulate_then_fit_recovers_truth(tmp_path):
    sim = tmp_path / "sim.csv"
    assert run_cli("scaling", "simulate", "--kind", "isoflop", "--out", str(sim)).returncode == 0
    result = run_cli(
        "scaling", "fit", str(sim), "--method", "isoflop", "--convention", "standard", "--replicates", "100", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["a"] == pytest.approx(0.4516, abs=0.002)


@pytest.mark.slow
def test_envelope_and_kaplan_methods(grid_csv):
    common = ["--convention", "kaplan", "--col-N", "params", "--col-D", "tokens", "--col-loss", "val_loss", "--json"]
    env = run_cli("scaling", "fit", str(grid_csv), "--method", "envelope", *common)
    assert env.returncode == 0, env.stderr
    assert "a" in json.loads(env.stdout)
    kap = run_cli("scaling", "fit", str(grid_csv), "--method", "kaplan", *common)
    assert kap.returncode == 0, kap.stderr
    assert {"N_c", "alpha_N", "D_c", "alpha_D"} <= set(json.loads(kap.stdout))


def test_allocate_reproduces_hoffmann():
    result = run_cli("scaling", "allocate", "--preset", "hoffmann", "--json")
    row = json.loads(result.stdout)[0]
    assert row["N_star"] == pytest.approx(32.5e9, rel=2e-3)


# ------------------------------------------------------------------------------------ bad input


def _write(tmp_path, text, name="runs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


FIT = ["scaling", "fit", "--method", "parametric", "--convention", "standard"]
GOOD_ROWS = "".join(f"{n},{d},{3 + 1e9 / n + 1e10 / d}\n" for n in (1e8, 3e8, 1e9) for d in (1e9, 3e9, 1e10))


def test_missing_column(tmp_path):
    path = _write(tmp_path, "N,loss\n1e8,3.0\n2e8,2.9\n")
    assert_clean_error(run_cli(*FIT, path), "runs.csv", "missing", "D")


def test_non_numeric_cell(tmp_path):
    path = _write(tmp_path, "N,D,loss\n" + GOOD_ROWS + "2e9,1e10,abc\n")
    assert_clean_error(run_cli(*FIT, path), "runs.csv", "row 10", "loss", "abc")


@pytest.mark.parametrize("cell", ["nan", "inf"])
def test_nan_and_inf(tmp_path, cell):
    path = _write(tmp_path, "N,D,loss\n" + GOOD_ROWS + f"2e9,1e10,{cell}\n")
    assert_clean_error(run_cli(*FIT, path), "runs.csv", "loss")


@pytest.mark.parametrize("row,column", [("-1e8,1e9,3.0", "N"), ("1e8,1e9,0", "loss")])
def test_non_positive(tmp_path, row, column):
    path = _write(tmp_path, "N,D,loss\n" + GOOD_ROWS + row + "\n")
    assert_clean_error(run_cli(*FIT, path), "runs.csv", column)


def test_duplicate_rows(tmp_path):
    path = _write(tmp_path, "N,D,loss\n" + GOOD_ROWS + "1e8,1e9,3.5\n")
    assert_clean_error(run_cli(*FIT, path), "runs.csv", "duplicate")


def test_fewer_points_than_parameters(tmp_path):
    path = _write(tmp_path, "N,D,loss\n1e8,1e9,3.0\n2e8,1e9,2.9\n4e8,1e9,2.8\n")
    assert_clean_error(run_cli(*FIT, path), "parameters")


def test_single_budget_for_isoflop(tmp_path):
    rows = "".join(f"{n},{1e18 / (6 * n)},{3 + (np.log(n) - 19) ** 2 / 10}\n" for n in (1e7, 1e8, 1e9, 1e10))
    path = _write(tmp_path, "N,D,loss\n" + rows)
    assert_clean_error(run_cli("scaling", "fit", path, "--method", "isoflop", "--convention", "standard"), "budget")


def test_unknown_convention_and_dataset(tmp_path):
    path = _write(tmp_path, "N,D,loss\n" + GOOD_ROWS)
    bad_conv = run_cli("scaling", "fit", path, "--method", "parametric", "--convention", "palm")
    assert bad_conv.returncode == 2 and "Traceback" not in bad_conv.stderr
    assert "kaplan" in bad_conv.stderr and "chinchilla" in bad_conv.stderr  # lists the valid choices
    assert_clean_error(run_cli(*FIT, "--dataset", "pile"), "unknown dataset", "porian-rw")


def test_missing_file_and_bad_extension(tmp_path):
    assert_clean_error(run_cli(*FIT, str(tmp_path / "nope.csv")), "nope.csv")
    path = _write(tmp_path, "N,D,loss\n", name="runs.xlsx")
    assert_clean_error(run_cli(*FIT, path), "runs.xlsx")


def test_mixed_experiments_refused_with_choices():
    assert_clean_error(
        run_cli("scaling", "fit", "--dataset", "porian-rw", "--method", "isoflop", "--convention", "standard"),
        "--where experiment=",
        "cosine_decay",
    )


def test_output_error_keeps_existing_file(tmp_path):
    # A failing fit must not touch an output written earlier.
    out = tmp_path / "fit.nc"
    out.write_bytes(b"earlier result")
    path = _write(tmp_path, "N,D,loss\n1e8,1e9,3.0\n")
    assert_clean_error(run_cli(*FIT, path, "--out", str(out)))
    assert out.read_bytes() == b"earlier result"
    assert_clean_error(run_cli(*FIT, path, "--out", str(tmp_path / "fit.txt")), "--out", ".nc")


@pytest.mark.slow
def test_reconcile_a_users_file(tmp_path):
    from scaling.datasets import load_dataset

    rw = load_dataset("porian-rw")
    path = tmp_path / "ladder.csv"
    rw[rw.experiment.isin(["reproducing_kaplan", "optimizer_tuning_no_decay"])].to_csv(path, index=False)
    result = run_cli("scaling", "reconcile", str(path), "--replicates", "100", "--json")
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["step"] for s in steps] == ["kaplan count", "+ tuning"]
    assert steps[0]["convention"] == "kaplan" and steps[1]["convention"] == "standard"
    no_steps = tmp_path / "plain.csv"
    rw.drop(columns="experiment").head(20).to_csv(no_steps, index=False)
    assert_clean_error(run_cli("scaling", "reconcile", str(no_steps)), "experiment")
