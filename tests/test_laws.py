"""Compute-optimal allocation (Hoffmann Eq. 4) at C = 5.88e23 for the published constant sets,
computed from each set's printed constants (Hoffmann et al. 2022 §3.3, Besiroglu et al. 2024,
Muennighoff et al. 2023)."""

from __future__ import annotations

import pytest

from scaling import laws

# (constants, a, G, N*, D*, D*/N*, L*, L(70B, 1.4T)) at C = 5.88e23, to the printed digits.
TABLE = [
    (laws.HOFFMANN_PRINTED, 0.4516, 1.345, 32.5e9, 3.02e12, 92.8, 1.930, 1.937),
    (laws.HOFFMANN_UNROUNDED, 0.4565, 1.300, 40.7e9, 2.41e12, 59.0, 1.918, 1.921),
    (laws.EPOCH_2024, 0.5126, 0.1196, 73.0e9, 1.34e12, 18.4, 1.974, 1.974),
    (laws.MUENNIGHOFF_C4, 0.5000, 0.2258, 70.7e9, 1.39e12, 19.6, 2.025, 2.025),
]


@pytest.mark.parametrize("law,a,G,N,D,ratio,L,L70", TABLE)
def test_allocation_reproduces_printed_numbers(law, a, G, N, D, ratio, L, L70):
    t = law.allocation_table(laws.CHINCHILLA_BUDGET)
    # Half a unit in the last printed digit.
    assert t["a"] == pytest.approx(a, abs=5e-5)
    assert t["G"] == pytest.approx(G, rel=5e-3)
    assert t["N_star"] == pytest.approx(N, rel=2e-3)
    assert t["D_star"] == pytest.approx(D, rel=4e-3)
    assert t["tokens_per_param"] == pytest.approx(ratio, abs=0.05)
    assert t["L_star"] == pytest.approx(L, abs=5e-4)
    assert t["L_70B_1.4T"] == pytest.approx(L70, abs=5e-4)


def test_allocation_consistent_with_budget():
    law = laws.EPOCH_2024
    for C in (1e21, 1e25):
        N, D = law.optimal_allocation(C)
        assert pytest.approx(C, rel=1e-12) == 6 * N * D
    # Eq. 4 with Epoch's constants: D/N = 21.6 at 1e21 and 17.1 at 1e25.
    assert law.allocation_table(1e21)["tokens_per_param"] == pytest.approx(21.6, abs=0.05)
    assert law.allocation_table(1e25)["tokens_per_param"] == pytest.approx(17.1, abs=0.05)


def test_optimum_minimises_loss_on_the_isoflop():
    import numpy as np

    law = laws.HOFFMANN_PRINTED
    C = 1e22
    N_star, _ = law.optimal_allocation(C)
    N = N_star * np.geomspace(0.5, 2, 2001)
    assert N[np.argmin(law.loss(N, C / (6 * N)))] == pytest.approx(N_star, rel=1e-3)
