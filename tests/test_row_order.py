"""The order of a table's rows changes no result: every method of `workbench scaling fit` gives the
same payload, to the last bit, on shuffles of Epoch's Chinchilla table (when the shared data folder
holds it: it is not bundled) and of a bundled table (Porian et al.'s RefinedWeb cosine-decay runs).

Floating-point sums are not associative, so without a canonical order a shuffle moves the
parametric and Kaplan fits in the 9th digit and changes how many starts count as reaching the
optimum. The comparison is exact on purpose: the rows are sorted before any arithmetic.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from scaling.laws import CHINCHILLA_BUDGET
from scaling.methods import METHODS
from scaling.table import load_runs

N_SHUFFLES = 5
# Each method's own flags, small where they set an amount of work.
ARGS = {
    "parametric": {"bootstrap": 20, "seed": 0, "tie": False, "data_constrained": False},
    "isoflop": {"interp": "akima", "noise": None, "replicates": 50, "seed": 0, "unweighted": False},
    "envelope": {},
    "kaplan-ND": {"form": "ND"},
    "kaplan-N": {"form": "N"},
    "kaplan-D": {"form": "D"},
}


TABLES = {"epoch": "chinchilla", "porian-rw-cosine": "standard"}  # table -> its parameter-count convention


@pytest.fixture(scope="module", params=list(TABLES))
def table(request):
    """(name, convention, runs) of each table the shuffles are taken from."""
    if request.param == "epoch":
        runs = request.getfixturevalue("epoch_runs")
    else:
        from scaling.datasets import load_dataset

        porian = load_dataset("porian-rw")
        runs = porian[porian["experiment"] == "cosine_decay"][["N", "D", "loss", "C"]].reset_index(drop=True)
    return request.param, TABLES[request.param], runs


@pytest.fixture(scope="module")
def shuffled_tables(table):
    runs = table[2]
    rng = np.random.default_rng(14)
    return [runs.iloc[rng.permutation(len(runs))].reset_index(drop=True) for _ in range(N_SHUFFLES)]


def _payload(name: str, runs, table_name: str, convention: str) -> str:
    method = METHODS[name.split("-")[0]]
    args = argparse.Namespace(convention=convention, target_compute=CHINCHILLA_BUDGET, **ARGS[name])
    runs = load_runs(runs, convention=convention, name=table_name)
    return json.dumps(method.payload(method.fit(runs, args), args), sort_keys=True, default=float)


def _assert_same_on_shuffles(name, table, shuffled_tables):
    table_name, convention, runs = table
    reference = _payload(name, runs, table_name, convention)
    for i, shuffled in enumerate(shuffled_tables):
        assert _payload(name, shuffled, table_name, convention) == reference, f"{name}: shuffle {i} changed the result"


@pytest.mark.parametrize("name", ["isoflop", "envelope"])
def test_fit_is_bit_identical_on_shuffled_rows(name, table, shuffled_tables):
    _assert_same_on_shuffles(name, table, shuffled_tables)


# Six fits each: Kaplan's 256 starts take about 3 s per fit on 2 cores, Hoffmann's 4500 starts
# and 20 bootstrap refits about 5 s.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["parametric", "kaplan-ND", "kaplan-N", "kaplan-D"])
def test_slow_fit_is_bit_identical_on_shuffled_rows(name, table, shuffled_tables):
    _assert_same_on_shuffles(name, table, shuffled_tables)


@pytest.mark.slow
def test_library_fits_sort_their_own_arrays(epoch_runs):
    """Called on arrays directly (notebooks do), the fits sort the runs themselves."""
    from scaling.fit import fit_parametric, hoffmann_grid
    from scaling.kaplan import fit_kaplan_ND

    N, D, loss = (epoch_runs[c].to_numpy() for c in ("N", "D", "loss"))
    starts = hoffmann_grid()[::45]  # 100 starts: the sort matters for every start alike
    order = np.random.default_rng(3).permutation(N.size)
    for fit in (lambda n, d, y: fit_parametric(n, d, y, starts=starts), fit_kaplan_ND):
        first, shuffled = fit(N, D, loss), fit(N[order], D[order], loss[order])
        np.testing.assert_array_equal(shuffled.x, first.x)
        assert shuffled.objective == first.objective
