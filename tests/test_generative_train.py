"""Generative trainables, sampling from trained runs, experiment machinery and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import assert_clean_error, run_cli
from workbench.errors import ConfigError, InputError
from workbench.generative.config import DiffusionConfig, PFGMPPConfig


# --- configs and bad input ------------------------------------------------------------------------
def test_bad_D_and_epsilon_with_zero_snr_are_config_errors():
    with pytest.raises(ConfigError, match="D = 0: PFGM\\+\\+ needs"):
        PFGMPPConfig(D=0.0)
    with pytest.raises(ConfigError, match="D = -3: PFGM\\+\\+ needs an augmentation dimension D >= 2"):
        PFGMPPConfig(D=-3.0)
    for D in (1.0, 1.999):  # PFGM (D = 1) is not a PFGM++ setting: E||n||² = Nσ²D/(D − 2) is infinite
        with pytest.raises(ConfigError, match="D = 1 is PFGM, a different method"):
            PFGMPPConfig(D=D)
    PFGMPPConfig(D=2.0)
    PFGMPPConfig(D=math.inf)
    with pytest.raises(ConfigError, match="'epsilon' cannot be used with zero_terminal_snr"):
        DiffusionConfig(zero_terminal_snr=True, prediction_type="epsilon")
    DiffusionConfig(zero_terminal_snr=True, prediction_type="v_prediction")


def test_cli_rejects_bad_D_spacing_and_prediction(tmp_path):
    config = "jobs/configs/diffusion_robustness.yaml"
    assert_clean_error(
        run_cli("diffusion", "robustness", config, "--set", "D=[8, -1]", "--executor", "debug"), "D = -1: PFGM++ needs"
    )
    assert_clean_error(run_cli("diffusion", "robustness", config, "--set", "D=[1, 8]", "--executor", "debug"), "D = 1:")
    assert_clean_error(run_cli("diffusion", "robustness", config, "--set", "model.D=0", "--executor", "debug"), "D = 0")
    assert_clean_error(run_cli("diffusion", "timesteps", "--spacing", "middle"), "unknown timestep spacing 'middle'")
    assert_clean_error(run_cli("diffusion", "brightness", "jobs/configs/diffusion_brightness.yaml", "--set",
                               "model.prediction_type=x0", "--executor", "debug"), "prediction_type",
                       "'v_prediction'")  # fmt: skip
    assert_clean_error(run_cli("diffusion", "brightness", "jobs/configs/diffusion_brightness.yaml", "--set",
                               "arms=[eps_sideways]", "--executor", "debug"),
                       "unknown brightness arm 'eps_sideways'")  # fmt: skip


def test_image_folder_with_mixed_sizes_is_refused(tmp_path):
    from PIL import Image

    from workbench.generative.data import load_images

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "b.png")
    assert load_images(folder).shape == (2, 1, 8, 8)
    Image.fromarray(np.zeros((16, 8), np.uint8)).save(folder / "c.png")
    with pytest.raises(InputError, match="mixed sizes: a.png is 8x8 but c.png is 8x16"):
        load_images(folder)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"kind: pfgmpp\nexperiment: t\nroot: {tmp_path}\nmodel:\n  data: images\n  net: unet\n  data_path: {folder}\n"
    )
    assert_clean_error(run_cli("jobs", "submit", str(config), "--executor", "debug"), "mixed sizes")


def test_schedule_and_timesteps_json_interface():
    result = run_cli(
        "diffusion", "schedule", "--betas", "scaled_linear", "--zero-terminal-snr", "--steps", "1000", "--json"
    )
    assert result.returncode == 0, result.stderr
    abar = json.loads(result.stdout)["alphas_cumprod"]
    assert len(abar) == 1000 and abar[-1] == 0.0 and abar[0] == pytest.approx(0.99915)
    result = run_cli(
        "diffusion", "timesteps", "--spacing", "leading", "--train-steps", "1000", "--steps", "10", "--json"
    )
    assert json.loads(result.stdout)["timesteps"] == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]


# --- training, sampling, quantisation -----------------------------------------------------------
def _train(tmp_path, config, kind, steps=30):
    from workbench.generative.experiments import _RunConfig
    from workbench.store import create_run_dir
    from workbench.train import TrainConfig, train

    tc = TrainConfig(max_steps=steps, checkpoint_every=steps)
    run = create_run_dir(tmp_path, "t", kind, _RunConfig(kind, config, tc))
    train(config, tc, run, kind=kind)
    return run


def test_pfgmpp_run_trains_loads_and_samples(tmp_path):
    from workbench.generative.sampling import load_trained, sample_pfgmpp

    config = PFGMPPConfig(D=8.0, n_data=256, batch_size=64, width=32, depth=1)
    run = _train(tmp_path, config, "pfgmpp")
    trained = load_trained(run.path)
    assert trained.config == config and trained.data.shape == (256, 2)
    import xarray as xr

    with xr.open_dataset(run.path / "metrics.nc") as metrics:  # σ_data measured on the data, and recorded
        assert float(metrics["sigma_data"]) == pytest.approx(float(np.std(trained.data)))
    assert trained.model.sigma_data == pytest.approx(float(np.std(trained.data)))
    ema = {k: v for k, v in torch.load(run.path / "model.pt", weights_only=True).items() if k.startswith("ema.")}
    live = {k: v for k, v in torch.load(run.path / "model.pt", weights_only=True).items() if k.startswith("model.")}
    assert ema and len(ema) == len(live)
    assert any(not torch.equal(ema["ema.module." + k[6:]], v) for k, v in live.items())  # EMA lags the weights
    samples = sample_pfgmpp(trained.model, config, 50, (2,), steps=6)
    assert samples.shape == (50, 2) and np.all(np.isfinite(samples))


def test_diffusion_run_samples_with_both_samplers_and_guidance(tmp_path):
    from workbench.generative.sampling import load_trained, sample_diffusion

    config = DiffusionConfig(
        data="digits",
        net="unet",
        width=8,
        class_conditional=True,
        batch_size=16,
        zero_terminal_snr=True,
        prediction_type="v_prediction",
    )
    trained = load_trained(_train(tmp_path, config, "diffusion", steps=5).path)
    labels = np.arange(6) % 10
    for sampler in ("ddim", "ddpm"):
        out = sample_diffusion(
            trained.model,
            config,
            6,
            (1, 8, 8),
            steps=5,
            sampler=sampler,
            labels=labels,
            guidance=3.0,
            guidance_rescale=0.7,
        )
        assert out.shape == (6, 1, 8, 8) and np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "config",
    [
        PFGMPPConfig(D=8.0, batch_size=8, class_conditional=True, data="digits"),
        DiffusionConfig(batch_size=8, prediction_type="v_prediction"),
    ],
)
def test_each_rank_takes_its_own_rows_of_one_global_draw(config):
    """Under DDP rank r of w trains on rows r, r+w, ... of the global batch, noise included: the ranks
    see different data, and together exactly what one process sees."""
    from workbench.registry import trainable_for

    module = trainable_for(config).build(config, 3)

    def batches(rank: int, world: int, step: int = 5):
        class Trainer:
            world_size, global_rank, global_step = world, rank, step

        module._trainer = Trainer()
        return next(iter(module.train_dataloader()))

    whole, first, second = batches(0, 1), batches(0, 2), batches(1, 2)
    assert whole.keys() == first.keys() == second.keys() and len(whole) >= 3
    for key, value in whole.items():
        assert len(first[key]) == len(second[key]) == len(value) // 2
        assert torch.equal(first[key], value[0::2]) and torch.equal(second[key], value[1::2])
    noise = "noise" if "noise" in whole else "eps"
    assert not torch.equal(first[noise], second[noise])  # not the same data on both ranks
    assert torch.equal(batches(0, 1)["rows"], whole["rows"])  # a function of (seed, step) only
    assert not torch.equal(batches(0, 1, step=6)["rows"], whole["rows"])


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_full_batch(tmp_path):
    from tests.test_jobs import check_ddp_matches_single_process

    # PFGM++ through a subclass that records each rank's rows (tests/toy_kind/spy.py).
    config = tmp_path / "ddp.yaml"
    config.write_text(
        f"kind: tests.toy_kind.spy:RowSpy\nexperiment: ddp\nroot: {tmp_path / 'runs'}\n"
        "model: {D: 8.0, n_data: 256, batch_size: 32, width: 32, depth: 1, warmup_steps: 5}\n"
        "train: {max_steps: 20, checkpoint_every: 10, seed: 0}\n"
        "job: {name: wbtest, timeout_min: 10, cpus_per_task: 1}\n"
    )
    two, one = check_ddp_matches_single_process(tmp_path, "local", config)

    def rows(path):
        return {r["step"]: r["rows"] for r in map(json.loads, path.read_text().splitlines())}

    rank0, rank1, single = (
        rows(two / "rows-rank0.jsonl"),
        rows(two / "rows-rank1.jsonl"),
        rows(one / "rows-rank0.jsonl"),
    )
    assert sorted(rank0) == sorted(rank1) == sorted(single) == list(range(20))
    for step, full in single.items():
        assert len(rank0[step]) == len(rank1[step]) == 16 and rank0[step] != rank1[step]  # different data
        assert rank0[step] == full[0::2] and rank1[step] == full[1::2]  # together, the one process's batch


def test_quantize_keeps_at_most_2_to_the_bits_levels_with_zero_exact():
    from workbench.generative.networks import MLPDenoiser
    from workbench.generative.sampling import quantize

    torch.manual_seed(0)
    net = MLPDenoiser(4, 32, 2)
    with torch.no_grad():
        net.inp.weight[0, 0] = 0.0
    for bits in (3, 8):
        q = quantize(net, bits)
        for (name, w), (_, w0) in zip(q.named_parameters(), net.named_parameters()):
            if name.startswith("cond.") or name.endswith("bias"):
                assert torch.equal(w, w0), name
            elif name.endswith("weight") and w.dim() == 2:
                assert torch.unique(w).numel() <= 2**bits
                step = (w0.max() - w0.min()) / (2**bits - 1)
                # generate_quant.py's integer zero point: one step of error at most (the truncated
                # zero point can clip the minimum), half a step everywhere else
                error = torch.abs(w - w0)
                assert torch.max(error) <= step + 1e-6
                inside = (w0 >= w.min()) & (w0 <= w.max())
                assert torch.max(error[inside]) <= step / 2 + 1e-6
                values = torch.unique(w)
                assert torch.allclose(torch.diff(values) / step, torch.round(torch.diff(values) / step), atol=1e-3)
        assert q.inp.weight[0, 0] == 0.0  # 0 is on the grid
    with pytest.raises(InputError, match="bits must be an integer in 2..16"):
        quantize(net, 1)


def test_quantize_leaves_the_noise_and_label_conditioning_at_full_precision():
    """As generate_quant.py skips map_* and affine: the UNet's `cond` MLP and label embedding and
    every block's `emb` projection stay bit-identical; every conv and the other linears change."""
    from workbench.generative.networks import UNetDenoiser
    from workbench.generative.sampling import quantize

    torch.manual_seed(0)
    net = UNetDenoiser(1, 16, num_classes=10)
    q = quantize(net, 4)
    kept, changed = set(), set()
    for (name, w), (_, w0) in zip(q.named_parameters(), net.named_parameters()):
        (kept if torch.equal(w, w0) else changed).add(name)
    conditioning = {n for n in kept | changed if n.startswith("cond.") or ".emb." in n}
    assert conditioning and conditioning <= kept
    convs = {n for n in changed | kept if "conv" in n and n.endswith("weight")}
    assert convs and convs <= changed
    norms = {f"{n}.weight" for n, m in net.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    assert not {n for n in kept if n.endswith("weight") and n not in norms | conditioning}


def test_sigma_data_comes_from_the_data_unless_configured():
    from workbench.generative.data import training_data

    config = PFGMPPConfig(data="mixture2d")
    data, _ = training_data(config)
    assert config.resolved_sigma_data(data) == pytest.approx(float(np.std(data)))
    assert 1.3 < config.resolved_sigma_data(data) < 1.5  # eight modes on a circle of radius 2
    assert PFGMPPConfig(data="mixture2d", sigma_data=0.5).resolved_sigma_data(data) == 0.5
    with pytest.raises(ConfigError, match="standard deviation 0.0; set sigma_data"):
        config.resolved_sigma_data(np.zeros((10, 2)))


def test_robustness_experiment_machinery(tmp_path):
    """Two D values × 2 seeds at a few training steps, through the CLI and a job array (debug
    executor): the netCDF has every (D, seed, level) filled, and the figure is written. (Numbers
    come from the full config, not this test.)"""
    import xarray as xr

    settings = [f"root={tmp_path}", "D=[4, .inf]", "seeds=2", "train.max_steps=10", "samples=60", "steps=[3, 6]",
                "bits=[4, 8]", "alphas=[0, 0.2]", "heun_steps=6", "model.width=32"]  # fmt: skip
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    result = run_cli("diffusion", "robustness", "jobs/configs/diffusion_robustness.yaml", "--executor", "debug",
                     *overrides, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    ds = xr.open_dataset(payload["results"])
    assert (
        ds["swd_alpha"].shape == (2, 2, 2) and ds["swd_steps"].shape == (2, 2, 2) and ds["swd_bits"].shape == (2, 2, 2)
    )
    for name in ("swd_clean", "swd_alpha", "swd_steps", "swd_bits", "mmd_alpha"):
        assert np.all(np.isfinite(ds[name].values))
    assert ds["nfe"].values.tolist() == [5, 11]  # NFE = 2·steps − 1
    # α = 0 at the full step count is the clean setting, sampled with the same seed
    assert np.array_equal(ds["swd_alpha"].sel(alpha=0.0).values, ds["swd_clean"].values)
    assert not np.array_equal(ds["swd_alpha"].sel(alpha=0.2).values, ds["swd_clean"].values)
    row = payload["rows"][1]
    assert row["clean"]["ci95"][0] <= row["clean"]["mean"] <= row["clean"]["ci95"][1]
    assert row["nfe"]["levels"] == [5, 11] and row["alpha"]["mean"][0] == 0.0  # degradations
    assert (tmp_path / "pfgmpp_robustness" / "robustness.png").stat().st_size > 10_000
    assert (tmp_path / "pfgmpp_robustness" / "samples_Dinf.png").is_file()  # digits: sample grids per D
    assert [row["D"] for row in payload["rows"]] == [4.0, None]  # JSON null for inf


def test_bootstrap_interval_over_seeds():
    from workbench.generative.robustness import bootstrap_interval

    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 0.2, size=(8, 3))
    mean, lo, hi = bootstrap_interval(values)
    assert np.allclose(mean, values.mean(0)) and np.all(lo < mean) and np.all(mean < hi)
    # the percentile interval of a mean over 8 seeds is close to ±1.96·s/√8
    assert np.allclose(hi - lo, 2 * 1.96 * values.std(0, ddof=0) / np.sqrt(8), rtol=0.25)
    assert np.array_equal(bootstrap_interval(values)[1], lo)  # seeded: reproducible
    one = bootstrap_interval(values[:1])
    assert np.array_equal(one[0], one[1]) and np.array_equal(one[0], one[2])
    # coverage over repeated experiments: the 95 % interval holds the true mean most of the time
    hits = sum(
        lo <= 1.0 <= hi
        for lo, hi in (bootstrap_interval(rng.normal(1.0, 0.2, size=8), draws=2000, seed=k)[1:] for k in range(200))
    )
    assert 0.8 <= hits / 200 <= 1.0


@pytest.mark.slow
def test_brightness_trained_fixed_arm_beats_the_baseline_at_every_seed(tmp_path):
    """Brightness, trained at CPU scale: 16×16 images with mean brightness U(−0.8, 0.8), a
    residual MLP per (schedule, prediction type) and seed, DDIM 50 steps. The fixed arm (zero terminal
    SNR, v-prediction, trailing) must have a lower brightness W1 than the baseline (SD schedule,
    ε-prediction, leading) at each of 3 seeds. The EMA half-life is 5 % of the 800 steps, as in the
    config (5 % of 3,000); with a 200-step half-life (25 % of the run) the lagging EMA weights of the
    v-prediction model under-dispersed brightness and lost (W1 0.11 vs 0.06). Numbers: README."""
    result = run_cli("diffusion", "brightness", "jobs/configs/diffusion_brightness.yaml", "--executor", "local",
                     "--set", f"root={tmp_path}", "--set", "arms=[eps_leading, v_zero_snr_trailing]", "--set",
                     "seeds=3", "--set", "train.max_steps=800", "--set", "model.n_data=1000", "--set",
                     "samples=500", "--set", "model.ema_half_life=40", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["arm"]: row for row in json.loads(result.stdout)["rows"]}
    print({arm: (row["w1_per_seed"], row["spread_ratio"]) for arm, row in rows.items()})
    fixed, baseline = rows["v_zero_snr_trailing"]["w1_per_seed"], rows["eps_leading"]["w1_per_seed"]
    assert len(fixed) == len(baseline) == 3
    assert all(f < b for f, b in zip(fixed, baseline))
    assert (tmp_path / "brightness" / "samples_v_zero_snr_trailing.png").is_file()
