"""PROSE at tiny scale over three training seeds: does the symbolic input help the data prediction?

A file of its own so that, on two pytest-xdist workers, its seeds train while the other worker
trains seed 0 for tests/test_prose_evaluate.py; `learned_pair` trains each seed once per session.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.test_prose_evaluate import learned_pair


@pytest.mark.slow
def test_multimodal_beats_data_only_at_the_same_budget(tmp_path_factory):
    """Multimodal beats data-only (`--no_text`: no fusion block) on data error at tiny scale, on the
    mean over training seeds 0, 1, 2. Measured (600 steps, 2 CPU threads, in-process data from the
    batched engine, 2026-12-04): 0.239 vs 0.268, 0.250 vs 0.266 and 0.257 vs 0.285, means 0.249 vs
    0.273. Before the official fresh-noise training, expanded-sum targets and fusion-free ablation
    the margin was smaller and one seed reversed (means 0.255 vs 0.267), so one seed does not carry
    the claim."""
    runs = [learned_pair(tmp_path_factory, seed) for seed in (2, 1, 0)]  # seed 0 last: another file trains it
    error = {name: [float(r[name]["mean_data_rel_l2"].sel(target="noisy", window="2-6")) for r in runs]
             for name in ("multimodal", "data_only")}  # fmt: skip
    print("data rel L2 for seeds 2, 1, 0:", {name: [round(v, 3) for v in values] for name, values in error.items()})
    assert np.mean(error["multimodal"]) < np.mean(error["data_only"])
