"""Reading a user's table of runs: derivations, and one clear InputError per kind of bad input."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from scaling.datasets import load_dataset
from scaling.table import CANONICAL_COLUMNS, group_budgets, load_runs
from workbench.errors import InputError

GOOD_CSV = """params,tokens,final_loss,seed,note
1e6,2e7,4.5,0,a
2e6,4e7,4.1,0,b
4e6,8e7,3.8,1,c
"""
MAPPING = {"N": "params", "D": "tokens", "loss": "final_loss"}


def write(tmp_path, text, name="runs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_csv_round_trips(tmp_path):
    path = write(tmp_path, GOOD_CSV)
    runs = load_runs(path, convention="standard", columns=MAPPING)
    assert list(runs.columns[:5]) == ["N", "D", "C", "loss", "seed"]
    assert "note" in runs.columns  # extras kept
    np.testing.assert_array_equal(runs["N"], [1e6, 2e6, 4e6])
    np.testing.assert_allclose(runs["C"], 6 * runs["N"] * runs["D"], rtol=1e-15)
    assert runs.attrs == {"convention": "standard", "source": str(path)}
    for column in ("N", "D", "C", "loss"):
        assert runs[column].dtype == np.float64

    # Written back with canonical names, it loads again without a mapping.
    again_path = tmp_path / "again.csv"
    runs.to_csv(again_path, index=False)
    again = load_runs(again_path, convention="standard")
    pd.testing.assert_frame_equal(again, runs, check_dtype=False)


def test_d_from_c_and_both_kept(tmp_path):
    path = write(tmp_path, "N,C,loss\n1e6,6e13,4.0\n")
    runs = load_runs(path, convention="kaplan")
    assert runs["D"].iloc[0] == pytest.approx(1e7, rel=1e-15)
    # Both given: kept as given, not cross-checked (C may include attention FLOPs, say).
    path = write(tmp_path, "N,D,C,loss\n1e6,1e7,7e13,4.0\n")
    runs = load_runs(path, convention="kaplan")
    assert runs["C"].iloc[0] == 7e13 and runs["D"].iloc[0] == 1e7


def test_dataframe_source_and_name():
    frame = pd.DataFrame({"N": [1e6, 2e6], "D": [1e7, 2e7], "loss": [4.0, 3.5], "run": ["a", "b"]})
    runs = load_runs(frame, convention="standard", name="my sweep")
    assert runs.attrs["source"] == "my sweep"
    assert list(runs.columns) == ["N", "D", "C", "loss", "run"]
    frame.loc[1, "loss"] = -1.0
    with pytest.raises(InputError, match="my sweep: data row 2, column loss"):
        load_runs(frame, convention="standard", name="my sweep")


def test_netcdf_input(tmp_path):
    dataset = xr.Dataset(
        {"loss": ("run", [4.0, 3.6, 3.3]), "N": ("run", [1e6, 2e6, 4e6]), "D": ("run", [2e7, 4e7, 8e7])},
        coords={"run": ["r0", "r1", "r2"]},
    )
    path = tmp_path / "metrics.nc"
    dataset.to_netcdf(path, engine="h5netcdf")
    runs = load_runs(path, convention="standard")
    assert list(runs["run"]) == ["r0", "r1", "r2"]
    np.testing.assert_allclose(runs["C"], 6 * runs["N"] * runs["D"])


def test_bad_netcdf_names_file(tmp_path):
    path = write(tmp_path, "not netcdf", name="broken.nc")
    with pytest.raises(InputError, match="broken.nc"):
        load_runs(path, convention="standard")


def test_derive_n_from_width_depth_matches_architectures(tmp_path):
    shapes = load_dataset("porian-architectures")
    table = shapes[["width", "depth"]].assign(vocab=50432, seq_len=2048, tokens=1e9, loss=3.0)
    path = tmp_path / "shapes.csv"
    table.to_csv(path, index=False)
    for convention, column in (
        ("kaplan", "N_kaplan_no_embed_no_head"),
        ("standard", "N_standard"),
        ("attention", "N_eff_with_attention"),
    ):
        runs = load_runs(path, convention=convention, columns={"D": "tokens"})
        np.testing.assert_array_equal(runs["N"], shapes[column])
        # N is the convention's (effective) count, so C = 6·N·D = FLOPs/token · D.
        np.testing.assert_allclose(runs["C"], shapes[f"flops_per_token_{convention}"] * 1e9)


def test_derive_n_missing_size_column_is_named(tmp_path):
    path = write(tmp_path, "width,depth,vocab,D,loss\n96,3,50432,1e9,4.0\n")
    with pytest.raises(InputError, match="seq_len"):
        load_runs(path, convention="attention")


def test_missing_columns_message_lists_file_columns(tmp_path):
    path = write(tmp_path, "params,loss\n1e6,4.0\n")
    with pytest.raises(InputError) as info:
        load_runs(path, convention="standard")
    message = str(info.value)
    assert "runs.csv" in message and "N" in message and "D or C" in message
    assert "params" in message and "--col-N" in message


def test_unknown_canonical_name_in_mapping(tmp_path):
    path = write(tmp_path, GOOD_CSV)
    with pytest.raises(InputError) as info:
        load_runs(path, convention="standard", columns={"tokens": "tokens"})
    assert "'tokens'" in str(info.value)
    assert all(name in str(info.value) for name in CANONICAL_COLUMNS)


def test_mapped_column_absent(tmp_path):
    path = write(tmp_path, GOOD_CSV)
    with pytest.raises(InputError) as info:
        load_runs(path, convention="standard", columns={**MAPPING, "N": "n_params"})
    assert "'n_params'" in str(info.value) and "final_loss" in str(info.value)


def test_unknown_convention(tmp_path):
    path = write(tmp_path, GOOD_CSV)
    with pytest.raises(InputError, match="kaplan, standard, attention, chinchilla"):
        load_runs(path, convention="openai", columns=MAPPING)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("abc", r"data row 2, column loss: 'abc' is not a number"),
        ("", r"data row 2, column loss: missing"),
        ("nan", r"data row 2, column loss: missing or NaN"),
        ("inf", r"data row 2, column loss: value is inf"),
        ("-inf", r"data row 2, column loss: value is -inf"),
        ("0", r"data row 2, column loss: value .* must be > 0"),
        ("-3.5", r"data row 2, column loss: value .* must be > 0"),
    ],
)
def test_bad_loss_cell_names_file_row_column(tmp_path, cell, expected):
    path = write(tmp_path, f"N,D,loss\n1e6,1e7,4.0\n2e6,2e7,{cell}\n")
    with pytest.raises(InputError, match=r"runs\.csv: " + expected):
        load_runs(path, convention="standard")


@pytest.mark.parametrize("column", ["N", "D", "C"])
def test_non_positive_sizes(tmp_path, column):
    values = {"N": "1e6", "D": "1e7", "C": "6e13"}
    values[column] = "0"
    header = ",".join(values) + ",loss"
    path = write(tmp_path, f"{header}\n{','.join(values.values())},4.0\n")
    with pytest.raises(InputError, match=f"data row 1, column {column}"):
        load_runs(path, convention="standard")


def test_non_numeric_reports_first_offending_cell(tmp_path):
    path = write(tmp_path, "N,D,loss\n1e6,1e7,4.0\n1e6,lots,3.0\n1e6,many,2.0\n")
    with pytest.raises(InputError, match="data row 2, column D: 'lots'"):
        load_runs(path, convention="standard")


def test_mapped_column_is_named_by_canonical_name(tmp_path):
    path = write(tmp_path, GOOD_CSV.replace("2e6,4e7", "2e6,x"))
    with pytest.raises(InputError, match="data row 2, column D: 'x'"):
        load_runs(path, convention="standard", columns=MAPPING)


def test_duplicate_rows_name_both(tmp_path):
    path = write(tmp_path, "N,D,loss,seed\n1e6,1e7,4.0,0\n2e6,1e7,3.9,0\n1e6,1e7,4.1,0\n")
    with pytest.raises(InputError, match="data rows 1 and 3 are duplicates"):
        load_runs(path, convention="standard")
    # A different seed is a replicate, not a duplicate.
    path = write(tmp_path, "N,D,loss,seed\n1e6,1e7,4.0,0\n1e6,1e7,4.1,1\n")
    assert len(load_runs(path, convention="standard")) == 2
    # Missing seeds compare equal, so two unlabelled identical runs are duplicates.
    path = write(tmp_path, "N,C,loss,seed\n1e6,6e13,4.0,\n1e6,6e13,4.1,\n")
    with pytest.raises(InputError, match="data rows 1 and 2 .*N, C, seed"):
        load_runs(path, convention="standard")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("runs.txt", "N,D,loss\n", "unknown file type '.txt'"),
        ("empty.csv", "", "empty"),
        ("header_only.csv", "N,D,loss\n", "no data rows"),
        ("ragged.csv", "N,D,loss\n1,2,3\n1,2,3,4,5\n", "cannot parse CSV"),
    ],
)
def test_unreadable_files_are_named(tmp_path, name, text, expected):
    path = write(tmp_path, text, name=name)
    with pytest.raises(InputError, match=expected) as info:
        load_runs(path, convention="standard")
    assert name in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.csv: file not found"):
        load_runs(tmp_path / "nowhere.csv", convention="standard")


def test_group_budgets_by_compute():
    frame = pd.DataFrame({"C": [1.01e18, 1e17, 1e18, 0.995e17, 4e18, 1e18]})
    np.testing.assert_array_equal(group_budgets(frame), [1, 0, 1, 0, 2, 1])
    # With rtol 0 every distinct C is its own budget.
    assert len(set(group_budgets(frame, rtol=0.0))) == 5


def test_group_budgets_uses_budget_column():
    frame = pd.DataFrame({"C": [1e17, 1.5e17, 3e17], "budget": ["b", "a", "b"]})
    np.testing.assert_array_equal(group_budgets(frame), [1, 0, 1])


def test_group_budgets_on_porian_grid():
    runs = load_dataset("porian-rw")
    runs = runs[runs["experiment"] == "cosine_decay"]
    ids = group_budgets(runs)
    assert ids.max() + 1 == len(np.unique(runs["C"]))
