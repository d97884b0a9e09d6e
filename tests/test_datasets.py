"""Bundled datasets load by name with canonical columns (provenance in each scaling/data/*/SOURCE.md)."""

from importlib import resources

import numpy as np
import pytest

from scaling.datasets import DATASETS, GADRE_LOSS_COLUMNS, load_dataset, load_epoch_chinchilla, shared_data_dir
from workbench.errors import InputError

ROW_COUNTS = {
    "porian-optimal": 173,
    "porian-published": 15,
    "porian-architectures": 16,
    "gadre": 104,
    "muennighoff": 296,
}
RUN_TABLES = ("porian-rw", "porian-owt2", "gadre", "muennighoff")


@pytest.mark.parametrize(("name", "rows"), ROW_COUNTS.items())
def test_row_counts(name, rows):
    assert len(load_dataset(name)) == rows


def test_porian_isoflop_split_by_dataset():
    rw, owt2 = load_dataset("porian-rw"), load_dataset("porian-owt2")
    assert len(rw) + len(owt2) == 1745
    assert set(rw["dataset"]) == {"RefinedWeb"}
    assert set(owt2["dataset"]) == {"OpenWebText2"}
    for column in ("experiment", "hparams", "warmup", "decay", "flop_count", "loss_type"):
        assert column in rw.columns


@pytest.mark.parametrize("name", RUN_TABLES)
def test_run_tables_have_canonical_float_columns(name):
    table = load_dataset(name)
    for column in ("N", "D", "C", "loss"):
        assert table[column].dtype == np.float64, column
        assert np.all(np.isfinite(table[column])) and np.all(table[column] > 0), column


@pytest.mark.parametrize("name", ("porian-rw", "porian-owt2"))
def test_porian_tokens_follow_c_equals_6nd(name):
    table = load_dataset(name)
    # SOURCE.md: D = C/(6N) exactly; the CSV stores D rounded to an integer token count.
    np.testing.assert_allclose(table["D"], table["C"] / (6 * table["N"]), rtol=1e-6)


def test_porian_optimal_keeps_its_columns():
    table = load_dataset("porian-optimal")
    for column in ("C", "N_star", "D_star", "loss_star", "log_N_star_std", "experiment"):
        assert column in table.columns
    assert table["C"].dtype == np.float64


def test_gadre_columns_and_loss_choice():
    table = load_dataset("gadre")
    assert {"run", "dataset", "model_config", "params_no_embed", "seed"} <= set(table.columns)
    np.testing.assert_array_equal(table["loss"], table["loss_c4_val"])
    np.testing.assert_allclose(table["C"], 6 * table["N"] * table["D"], rtol=1e-15)
    other = load_dataset("gadre", loss_column="loss_paloma_ptb")
    np.testing.assert_array_equal(other["loss"], other["loss_paloma_ptb"])
    assert set(GADRE_LOSS_COLUMNS) <= set(table.columns)


def test_gadre_unknown_loss_lists_valid_ones():
    with pytest.raises(InputError) as info:
        load_dataset("gadre", loss_column="loss_wikitext")
    assert "loss_wikitext" in str(info.value)
    assert all(name in str(info.value) for name in GADRE_LOSS_COLUMNS)
    with pytest.raises(InputError, match="gadre"):
        load_dataset("muennighoff", loss_column="loss_c4_val")


def test_muennighoff_columns():
    table = load_dataset("muennighoff")
    assert {"U", "epochs", "run", "seed", "variant"} <= set(table.columns)
    np.testing.assert_allclose(table["epochs"], table["D"] / table["U"], rtol=1e-3)
    # 41 single-epoch runs (SOURCE.md).
    assert int((table["D"] == table["U"]).sum()) == 41


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(InputError) as info:
        load_dataset("chinchilla")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("name", DATASETS)
def test_every_bundled_file_ships_with_source_and_licence(name):
    folder = resources.files("scaling").joinpath("data", DATASETS[name].file).parent
    assert folder.joinpath("SOURCE.md").is_file()
    assert folder.joinpath("LICENSE").is_file()


def test_epoch_data_is_not_bundled():
    data = resources.files("scaling").joinpath("data")
    bundled = [f.name for d in data.iterdir() if d.is_dir() for f in d.iterdir()]
    assert not any("svg_extracted" in name for name in bundled)


def _epoch_or_skip(**kwargs):
    try:
        return load_epoch_chinchilla(**kwargs)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_epoch_chinchilla_drops_five_highest_losses():
    table = _epoch_or_skip()
    assert len(table) == 240
    # Besiroglu et al. 2024 drop the 5 highest losses (5.006, 4.665, 3.794, 3.766, 3.447; tiny-token
    # runs at C ≈ 1e19), so the highest kept is below 3.447.
    assert table["loss"].max() < 3.447
    np.testing.assert_allclose(table["D"], table["C"] / (6 * table["N"]), rtol=1e-15)
    assert len(_epoch_or_skip(drop_highest=0)) == 245


def test_shared_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="Epoch"):
        load_epoch_chinchilla()
    monkeypatch.setenv("WORKBENCH_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_dir() is None
    with pytest.raises(FileNotFoundError, match="WORKBENCH_SHARED_DATA"):
        load_epoch_chinchilla()
