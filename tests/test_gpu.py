"""On a CUDA device: every trainable kind trains in bf16 with finite losses, and the KS solver gives
the CPU's answer in float64.

Marked `gpu` (CI has no GPU) and skipped wherever torch sees no CUDA device. Run on a GPU machine
with `python -m pytest -m gpu tests/test_gpu.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from operators.ks import ETDRK4, KSEquation, KSGrid, initial_condition  # noqa: E402 - after the torch check
from operators.prose.config import ProseTrainableConfig  # noqa: E402
from workbench.areas import KINDS  # noqa: E402
from workbench.generative.config import DiffusionConfig, PFGMPPConfig  # noqa: E402
from workbench.lm.config import GPTLMConfig  # noqa: E402
from workbench.mlp.config import MLPRegressionConfig  # noqa: E402
from workbench.store import create_run_dir, open_dataset  # noqa: E402
from workbench.train import TrainConfig, train  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

STEPS = 4
# Small settings of every built-in kind (workbench.areas.KINDS); the generative kinds with the UNet,
# whose convolutions and GroupNorms are what bf16 autocast changes most.
CASES = [
    ("mlp_regression", MLPRegressionConfig(width=32, n_samples=256, batch_size=32)),
    ("gpt_lm", GPTLMConfig(width=64, depth=2, head_dim=16, seq_len=64, batch_size=8, corpus_tokens=1 << 14)),
    ("gpt_lm", GPTLMConfig(width=64, depth=2, head_dim=16, seq_len=64, batch_size=8, corpus_tokens=1 << 14,
                           parametrization="sp")),
    ("prose", ProseTrainableConfig(hidden=32, heads=2, ffn=64, fusion_layers=1, data_decoder_layers=1,
                                   symbol_decoder_layers=1, families="thomas,rossler", n_train=12, n_val=4,
                                   batch_size=8, eval_every=STEPS, eval_samples=4, max_symbol_len=40)),
    ("pfgmpp", PFGMPPConfig(data="digits", net="unet", width=16, batch_size=16, D=128.0)),
    ("pfgmpp", PFGMPPConfig(data="digits", net="unet", width=16, batch_size=16, D=float("inf"))),
    ("diffusion", DiffusionConfig(data="digits", net="unet", width=16, batch_size=16, zero_terminal_snr=True,
                                  prediction_type="v_prediction")),
]  # fmt: skip
IDS = ["mlp_regression", "gpt_lm_mup", "gpt_lm_sp", "prose", "pfgmpp_D128", "pfgmpp_edm", "diffusion_v"]


def test_every_kind_has_a_case():
    assert {kind for kind, _ in CASES} == set(KINDS)


@pytest.mark.parametrize(("kind", "config"), CASES, ids=IDS)
def test_bf16_training_steps_give_finite_losses(tmp_path, kind, config):
    """The harness, as a GPU job runs it: the kind's LightningModule (registry.get_trainable(kind)
    .build) on cuda with Lightning's "bf16-mixed", which runs each training step under
    torch.autocast("cuda", dtype=torch.bfloat16) and keeps the weights and optimizer in float32.
    A non-finite loss would stop it with NonFiniteLossError; every recorded loss is checked too."""
    run = create_run_dir(tmp_path, "gpu", kind)
    settings = TrainConfig(max_steps=STEPS, checkpoint_every=STEPS, accelerator="gpu", precision="bf16-mixed")
    summary = train(config, settings, run, kind=kind)
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert summary["precision"] == "bf16-mixed"
    losses = open_dataset(run.metrics_path)["loss"].values
    assert losses.shape == (STEPS,) and np.all(np.isfinite(losses)), losses


@pytest.mark.parametrize(
    "equation", [KSEquation(), KSEquation(lam3=0.5, cubic=0.75)], ids=["ks", "ks_u3x_cubic"]
)  # both flux paths of ETDRK4._flux_hat
def test_etdrk4_on_the_gpu_matches_the_cpu_in_float64(equation):
    """MEDIDA's grid and truth step (L = 100, N = 1,024, h = 1e-3), 8 perturbed states, 200 steps:
    cuFFT and the CPU FFT differ by round-off only (~1e-15 a step), which the chaotic dynamics
    cannot grow to 1e-10 in t = 0.2 (Kassam & Trefethen 2005 for the scheme)."""
    grid, h, steps, every = KSGrid(100.0, 1024), 1e-3, 200, 50
    u0 = initial_condition(grid, "medida") + 0.1 * np.random.default_rng(0).standard_normal((8, grid.N))
    cpu = ETDRK4(equation, grid, h).run(u0, steps, every=every)
    gpu = ETDRK4(equation, grid, h, device="cuda").run(u0, steps, every=every)
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype == torch.float64
    cpu, gpu = cpu.numpy(), gpu.cpu().numpy()
    assert gpu.shape == cpu.shape == (8, steps // every + 1, grid.N)
    assert np.all(np.isfinite(gpu)) and np.max(np.abs(cpu)) > 0.5  # a real solution, not a decayed one
    assert np.max(np.abs(gpu - cpu)) < 1e-10
