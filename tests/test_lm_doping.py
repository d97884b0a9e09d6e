"""Frozen-parameter doping (Chatelain et al. 2021, arXiv:2109.11928), Monarch MLPs and the doping report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_cli
from workbench.errors import ConfigError, InputError

torch = pytest.importorskip("torch")

import mup  # noqa: E402 - after the torch check

from workbench.config import from_dict  # noqa: E402
from workbench.lm.config import GPTLMConfig  # noqa: E402
from workbench.lm.doping import DopedMLP, frozen_buffers  # noqa: E402
from workbench.lm.model import GPTConfig, base_shapes, build_model, make_optimizer, model_from_state_dict  # noqa: E402
from workbench.lm.module import count_params  # noqa: E402
from workbench.lm.structured import MonarchLinear  # noqa: E402

TINY = dict(depth=2, seq_len=16, base_width=32)
REPO = Path(__file__).resolve().parents[1]


def _tokens(seed=0, batch=4, T=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, T), generator=g)


def _frozen(model):
    return {name: b.clone() for name, b in frozen_buffers(model)}


# ------------------------------------------------------------------------------ frozen parameters


def test_doped_model_has_the_same_trainable_count_and_more_total_parameters():
    plain = build_model(GPTConfig(width=64, heads=8, **TINY))
    doped = build_model(GPTConfig(width=64, heads=8, frozen_ratio=1.5, **TINY))
    a, b = count_params(plain), count_params(doped)
    assert a["params"] == b["params"] and a["params_total"] == b["params_total"]
    # Per block: round(1.5 * 256) = 384 frozen units, each with width inputs and width outputs.
    assert a["params_frozen"] == 0 and b["params_frozen"] == 2 * 2 * 384 * 64
    assert sum(p.numel() for p in doped.parameters()) == sum(p.numel() for p in plain.parameters())
    assert isinstance(doped.blocks[0].mlp, DopedMLP)
    assert set(mup.get_shapes(doped)) == set(mup.get_shapes(plain))  # buffers are not in base shapes


def test_frozen_weights_are_seeded_per_layer_independent_of_the_global_rng():
    config = GPTConfig(width=64, heads=8, frozen_ratio=1.0, **TINY)
    torch.manual_seed(0)
    a = _frozen(build_model(config))
    torch.manual_seed(123)
    torch.randn(1000)
    b = _frozen(build_model(config))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.mlp.frozen_fc"], a["blocks.1.mlp.frozen_fc"])  # own seed per layer
    other = _frozen(build_model(GPTConfig(width=64, heads=8, frozen_ratio=1.0, frozen_seed=1, **TINY)))
    assert not torch.equal(a["blocks.0.mlp.frozen_fc"], other["blocks.0.mlp.frozen_fc"])
    # std ∝ 1/sqrt(fan_in): the trainable counterpart's muP std, 0.02 / sqrt(width / base_width).
    # Tolerance 5 %: 16k samples per matrix.
    for width in (64, 256):
        model = build_model(GPTConfig(width=width, heads=8, frozen_ratio=1.0, **TINY))
        shrink = math.sqrt(32 / width)
        assert model.blocks[0].mlp.frozen_fc.std().item() == pytest.approx(0.02 * shrink, rel=0.05)
        assert model.blocks[0].mlp.frozen_proj.std().item() == pytest.approx(0.01 * shrink, rel=0.05)
        assert model.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02 * shrink, rel=0.05)


def test_frozen_buffers_get_no_grad_and_are_in_no_optimizer_group():
    model = build_model(GPTConfig(width=64, heads=8, frozen_ratio=1.0, **TINY))
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    frozen = dict(frozen_buffers(model))
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert frozen and not any(id(b) in in_groups for b in frozen.values())
    assert not any(b.requires_grad for b in frozen.values())
    assert set(frozen) <= set(model.state_dict())  # saved with the model
    _, loss = model(_tokens(), _tokens(1))
    loss.backward()
    assert all(b.grad is None for b in frozen.values())
    # clip_grad_norm_ over the parameters is the norm over the trainable gradients only.
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)
    torch.testing.assert_close(norm, torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def test_frozen_buffers_survive_training_checkpoints_and_state_dict(tmp_path):
    from workbench.store import create_run_dir, open_dataset
    from workbench.train import TrainConfig, load_weights, train

    config = GPTLMConfig(width=32, depth=2, head_dim=8, seq_len=32, batch_size=8, corpus_tokens=1 << 14,
                         eval_every=5, eval_batches=1, frozen_ratio=1.0, weight_decay=0.1)  # fmt: skip
    fresh = build_model(config.gpt_config())
    before = _frozen(fresh)
    run = create_run_dir(tmp_path, "lm", "doped")
    result = train(config, TrainConfig(max_steps=10, checkpoint_every=5), run)
    assert result["status"] == "completed"
    weights = {k.removeprefix("model."): v for k, v in load_weights(run).items()}
    assert all(torch.equal(weights[k], before[k]) for k in before)  # unchanged by 10 AdamW steps with WD
    trained = [k for k in weights if k.endswith("c_fc.weight")]
    assert trained and not torch.equal(weights[trained[0]], fresh.state_dict()[trained[0]])
    checkpoint = torch.load(run.checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    assert all(torch.equal(checkpoint["state_dict"][f"model.{k}"], v) for k, v in before.items())
    restored = model_from_state_dict(config.gpt_config(), weights)
    assert all(torch.equal(b, before[k]) for k, b in frozen_buffers(restored))
    x = _tokens(T=32)
    reloaded = model_from_state_dict(config.gpt_config(), restored.state_dict())
    torch.testing.assert_close(reloaded(x)[0], restored(x)[0])
    ds = open_dataset(run.metrics_path)
    counts = count_params(restored)
    assert int(ds["params_frozen"]) == counts["params_frozen"] == 2 * 128 * 32 * 2
    assert int(ds["flops_per_token"]) == counts["flops_per_token"]
    assert int(ds["tokens_per_step"]) == 8 * 32 and int(ds["steps_done"]) == 10


# ------------------------------------------------------------------------------------- Monarch


def test_monarch_equals_its_dense_matrix_built_from_the_blocks():
    torch.manual_seed(0)
    for n_in, n_out, b in ((32, 128, 4), (128, 32, 4), (48, 48, 3)):
        layer = MonarchLinear(n_in, n_out, b)
        R = torch.block_diag(*layer.r_blocks.detach())  # (mid, n_in)
        L = torch.block_diag(*layer.l_blocks.detach())  # (n_out, mid)
        mid, m = layer.mid, layer.mid // b
        P = torch.zeros(mid, mid)  # block k of P z is z[k::b]: (P z)[k m + i] = z[i b + k]
        for k in range(b):
            for i in range(m):
                P[k * m + i, i * b + k] = 1
        dense = L @ P @ R
        assert torch.equal(P.sum(0), torch.ones(mid)) and torch.equal(P.sum(1), torch.ones(mid))
        torch.testing.assert_close(layer.dense(), dense)
        x = torch.randn(5, 7, n_in)
        torch.testing.assert_close(layer(x), x @ dense.T)
        # Every output depends on every input when mid / b >= b (full mixing through P).
        if m >= b:
            assert bool((dense != 0).all())
        assert sum(p.numel() for p in layer.parameters()) == mid * (n_in + n_out) // b


def test_monarch_weights_are_mup_hidden_matrices():
    config = GPTConfig(width=128, heads=16, mlp_kind="monarch", monarch_blocks=4, **TINY)
    shapes = base_shapes(config)
    # Base (32) and delta (64) differ in both block dims; the block count is finite.
    assert [d.base_dim for d in shapes["blocks.0.mlp.c_fc.r_blocks"]] == [None, 8, 8]
    assert [d.base_dim for d in shapes["blocks.0.mlp.c_fc.l_blocks"]] == [None, 32, 8]
    model = build_model(config)
    fc = model.blocks[0].mlp.c_fc
    for p in (fc.r_blocks, fc.l_blocks):
        assert p.infshape.ninf() == 2 and p.infshape.width_mult() == 4
    opt = make_optimizer(model, lr=1e-2)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(fc.r_blocks)] == pytest.approx(1e-2 / 4) and lrs[id(fc.l_blocks)] == pytest.approx(1e-2 / 4)
    assert lrs[id(model.wte.weight)] == pytest.approx(1e-2)
    # mup.init: std / sqrt(width_mult) for ninf = 2; 5 % tolerance on >= 1k samples (l_blocks: 4k).
    torch.manual_seed(0)
    mup.init.normal_(fc.l_blocks, std=1.0)
    assert fc.l_blocks.std().item() == pytest.approx(0.5, rel=0.05)
    # The materialised matrix gets the dense layer's muP std, 0.02 / sqrt(width_mult) (10 %:
    # a product of two random factors).
    torch.manual_seed(0)
    fresh = build_model(config)
    assert fresh.blocks[0].mlp.c_fc.dense().std().item() == pytest.approx(0.01, rel=0.1)
    _, loss = fresh(_tokens(), _tokens(1))
    assert loss.item() == pytest.approx(math.log(256), rel=1e-3)


def test_monarch_sizes_and_frozen_ratio_are_checked():
    with pytest.raises(ConfigError, match=r"width = 36 divisible by monarch_blocks = 8"):
        GPTConfig(width=36, heads=4, mlp_kind="monarch", monarch_blocks=8, base_width=32)
    with pytest.raises(ConfigError, match=r"base_width = 20 divisible by monarch_blocks = 8"):
        GPTConfig(width=64, heads=4, mlp_kind="monarch", monarch_blocks=8, base_width=20)
    with pytest.raises(ConfigError, match=r"width = 40 divisible by monarch_blocks = 16"):
        GPTLMConfig(width=40, head_dim=8, mlp_kind="monarch", monarch_blocks=16)
    GPTConfig(width=36, heads=4, monarch_blocks=8)  # dense: the block count is unused
    with pytest.raises(ConfigError, match="frozen_ratio"):
        from_dict(GPTLMConfig, {"frozen_ratio": -1}, source="model.yaml")
    with pytest.raises(ConfigError, match="mlp_kind"):
        from_dict(GPTLMConfig, {"mlp_kind": "butterfly"}, source="model.yaml")


# --------------------------------------------------------------------------------------- FLOPs


def test_flops_formula_matches_the_measured_frozen_and_structured_increments():
    """FlopCounterMode counts 2·m·n·k per matrix multiply (mm, bmm, addmm; einsum lowers to
    bmm) in the forward and in the backward autograd actually runs, and nothing for
    elementwise ops, softmax, LayerNorm or the embedding lookups. A frozen buffer has no
    weight gradient, so it costs forward + input-gradient (4 FLOPs/weight/token), a trainable
    weight 6. On CPU the fused SDPA kernel is not counted, so the attention term of the formula
    (12·depth·width·seq_len) is compared only where the counter sees an attention op.
    """
    from torch.utils.flop_counter import FlopCounterMode

    batch, T = 4, 32

    def measured(**kw):
        torch.manual_seed(0)
        model = build_model(GPTConfig(width=64, heads=8, depth=2, seq_len=T, base_width=32, **kw))
        x = _tokens(batch=batch, T=T)
        with FlopCounterMode(display=False) as counter:
            _, loss = model(x, x)
            loss.backward()
        ops = {str(op) for op in counter.get_flop_counts()["Global"]}
        return counter.get_total_flops() / (batch * T), count_params(model), ops

    dense, n_dense, ops = measured()
    doped, n_doped, _ = measured(frozen_ratio=2.0)
    monarch, n_monarch, _ = measured(mlp_kind="monarch", frozen_ratio=1.0)
    attention = 12 * 2 * 64 * T
    sdpa_counted = any("attention" in op for op in ops)
    for flops, counts in ((dense, n_dense), (doped, n_doped), (monarch, n_monarch)):
        expected = counts["flops_per_token"] - (0 if sdpa_counted else attention)
        assert flops == pytest.approx(expected, rel=0.03)
    # The frozen increment: 4 per frozen weight (the trainable count is unchanged).
    assert n_doped["params"] == n_dense["params"]
    assert doped - dense == pytest.approx(4 * n_doped["params_frozen"], rel=0.03)
    # Monarch + frozen: 6 per trainable matmul weight removed, 4 per frozen weight added.
    delta_trainable = n_monarch["params"] - n_dense["params"]  # LayerNorms are equal, so matmul weights
    assert monarch - dense == pytest.approx(6 * delta_trainable + 4 * n_monarch["params_frozen"], rel=0.03)


# -------------------------------------------------------------------------------------- report


def _synthetic_sweep(law: str, ratios=(0.0, 1.0, 3.0), widths=(16, 32, 64, 128, 256), seeds=1):
    """A collected-sweep Dataset whose loss is exactly a·N^b + c in the trainable or total N."""
    import xarray as xr

    trainable = np.array([12 * w * w + 6 * w for w in widths], dtype=float)[:, None] * np.ones(len(ratios))
    frozen = np.array([[r * 16 * w * w for r in ratios] for w in widths])
    n = trainable if law == "trainable" else trainable + frozen
    loss = 40.0 * n**-0.35 + 1.2
    dims = ("width", "frozen_ratio", "seed")
    rep = lambda a: np.repeat(a[..., None], seeds, axis=-1)
    shape = (len(widths), len(ratios), seeds)
    return xr.Dataset(
        {
            "final_val_loss": (dims, rep(loss)),
            "params": (dims, rep(trainable).astype(np.int64)),
            "params_frozen": (dims, rep(frozen).astype(np.int64)),
            "flops_per_token": (dims, rep(6 * trainable + 4 * frozen).astype(np.int64)),
            "tokens_per_step": (dims, np.full(shape, 512)),
            "steps_done": (dims, np.full(shape, 100)),
        },
        coords={"width": list(widths), "frozen_ratio": list(ratios), "seed": list(range(seeds))},
    )


@pytest.mark.parametrize("law", ["trainable", "total"])
def test_report_picks_the_count_the_loss_follows_and_recovers_the_law(law):
    from scaling.doping_report import doping_report

    report = doping_report(_synthetic_sweep(law))
    assert report["collapses"] == law and report["separated"] and report["settings"] == ["0", "1", "3"]
    fit = report["fits"][law]
    # Noise-free data: the profiled least-squares fit recovers (a, b, c) to ~1e-6.
    assert fit["a"] == pytest.approx(40.0, rel=1e-4) and fit["b"] == pytest.approx(-0.35, rel=1e-5)
    assert fit["c"] == pytest.approx(1.2, rel=1e-5) and fit["rmse"] < 1e-7
    other = report["fits"]["total" if law == "trainable" else "trainable"]
    assert other["rmse"] > 1e-3
    # The wrong count separates the settings: the mean residuals are ordered by frozen ratio.
    residuals = [other["mean_residual"][s] for s in report["settings"]]
    assert residuals == sorted(residuals) or residuals == sorted(residuals, reverse=True)
    assert f"N = {law} collapses" in report["verdict"]
    point = report["points"][0]
    assert point["compute"] == point["flops_per_token"] * 512 * 100


def test_report_compares_with_seed_noise():
    from scaling.doping_report import doping_report

    ds = _synthetic_sweep("trainable", seeds=3)
    rng = np.random.default_rng(0)
    ds["final_val_loss"] = ds["final_val_loss"] + rng.normal(0, 0.01, ds["final_val_loss"].shape)
    report = doping_report(ds)
    assert report["n_seeds"] == 3 and report["seed_noise"] == pytest.approx(0.01, rel=0.35)
    assert report["collapses"] == "trainable" and report["separated"] and "seed noise" in report["verdict"]


def test_report_bad_input_is_one_clean_line(tmp_path):
    from workbench.store import atomic_write_netcdf

    good = _synthetic_sweep("trainable")
    cases = {
        "nodope.nc": (good.isel(frozen_ratio=0, drop=True), ["no doping dimension"]),
        "nocounts.nc": (good.drop_vars("params_frozen"), ["params_frozen"]),
        "few.nc": (good.isel(width=[0], frozen_ratio=[0, 1]), ["at least 4"]),
    }
    for name, (ds, fragments) in cases.items():
        atomic_write_netcdf(ds, tmp_path / name)
        assert_clean_error(run_cli("lm", "doping-report", str(tmp_path / name)), *fragments)
    assert_clean_error(run_cli("lm", "doping-report", str(tmp_path / "missing")), "sweep not found")
    from scaling.doping_report import doping_report

    with pytest.raises(InputError, match="at least 2"):
        doping_report(good.isel(frozen_ratio=[0]))


@pytest.mark.slow
def test_doping_sweep_through_the_cli_collapses_on_trainable_parameters(tmp_path):
    """A real doping sweep through the jobs layer, on the source where width matters (order-1
    Markov over 64 symbols): frozen_ratio 0 and 4 at widths 16-48, 600 steps. The report must
    use each run's recorded counts; what it finds is the paper's claim at this scale: the loss
    follows the trainable count, and adding the frozen weights to N separates the curves."""
    text = (REPO / "jobs" / "configs" / "lm_doping_markov64.yaml").read_text()
    assert "root: runs\n" in text and "max_steps: 600" in text
    config = tmp_path / "lm_doping_markov64.yaml"
    config.write_text(text.replace("root: runs\n", f"root: {tmp_path / 'runs'}\n"))
    swept = run_cli("jobs", "sweep", str(config), "--executor", "local", "--grid", "model.width=16,24,32,48",
                    "--grid", "model.frozen_ratio=0,4", "--wait", "--json", cwd=REPO)  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    sweep = tmp_path / "runs" / "lm_doping_markov64"
    result = run_cli("lm", "doping-report", str(sweep), "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    print(json.dumps({k: report[k] for k in ("fits", "collapses", "separated", "verdict")}, indent=1))
    assert report["doping_dim"] == "frozen_ratio" and report["settings"] == ["0", "4"]
    assert len(report["points"]) == 8
    from jobs.sweep import collect

    ds = collect(sweep)
    for p in report["points"]:
        at = {"width": p["width"], "frozen_ratio": float(p["setting"])}
        assert p["params"] == int(ds["params"].sel(at)) == 2 * (12 * p["width"] ** 2 + 4 * p["width"]) + 2 * p["width"]
        frozen_units = round(at["frozen_ratio"] * 4 * p["width"])  # per block, each with width in and out
        assert p["params_frozen"] == int(ds["params_frozen"].sel(at)) == 2 * 2 * frozen_units * p["width"]
        assert p["flops_per_token"] == int(ds["flops_per_token"].sel(at))
        assert p["tokens"] == 16 * 32 * 600 and p["loss"] == pytest.approx(float(ds["final_val_loss"].sel(at)))
    assert report["collapses"] == "trainable" and report["separated"]
    assert report["fits"]["trainable"]["b"] < 0
    text = run_cli("lm", "doping-report", str(sweep), cwd=REPO)
    assert text.returncode == 0 and "collapses" in text.stdout
