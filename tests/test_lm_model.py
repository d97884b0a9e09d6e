"""muP GPT: parametrisation rules (as microsoft/mup implements Tensor Programs V) and the wrappers
for mup's traps (workbench.lm.model)."""

import copy
import math

import pytest
import torch

from workbench.config import from_dict
from workbench.errors import ConfigError, InputError
from workbench.lm.model import (
    GPT,
    GPTConfig,
    base_shapes,
    build_model,
    check_lr_ratios,
    copy_model,
    ema_model,
    make_optimizer,
    model_from_state_dict,
    relative_lr_scheduler,
    save_base_shapes,
    strip_module_prefix,
    unwrap_model,
    warmup_cosine,
)

TINY = dict(depth=2, seq_len=16, base_width=32)


def _tokens(seed=0, batch=4, T=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, T), generator=g)


def _infshapes(model):
    return {name: p.infshape for name, p in model.named_parameters()}


def test_width_not_divisible_by_heads_is_a_config_error_naming_both():
    with pytest.raises(ConfigError, match=r"width = 100 .*heads = 3"):
        GPTConfig(width=100, heads=3)
    with pytest.raises(ConfigError, match=r"width = 100.*heads = 3.*model.json"):
        from_dict(GPTConfig, {"width": 100, "heads": 3}, source="model.json")


def test_attention_scale_is_one_over_d_head_under_mup_and_one_over_sqrt_under_sp():
    mu = GPT(GPTConfig(width=64, heads=4, parametrization="mup", attn_mult=2.0, **TINY))
    sp = GPT(GPTConfig(width=64, heads=4, parametrization="sp", **TINY))
    assert mu.blocks[0].attn.scale == pytest.approx(2.0 / 16)
    assert sp.blocks[0].attn.scale == pytest.approx(1 / math.sqrt(16))


def test_mup_init_zero_readout_and_query_and_hidden_std_shrinks_with_width():
    # Hidden matrices: std = 0.02 / sqrt(width / base_width) (mup.init after set_base_shapes);
    # embeddings keep 0.02 at every width. Tolerance 5 %: >= 16k samples per matrix.
    for width in (64, 256):
        torch.manual_seed(0)
        model = build_model(GPTConfig(width=width, heads=width // 8, **TINY))
        mult = width / 32
        assert torch.count_nonzero(model.lm_head.weight) == 0
        assert torch.count_nonzero(model.blocks[0].attn.c_q.weight) == 0
        assert model.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02 / math.sqrt(mult), rel=0.05)
        assert model.blocks[0].attn.c_k.weight.std().item() == pytest.approx(0.02 / math.sqrt(mult), rel=0.05)
        assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_tied_readout_shares_the_embedding_and_keeps_its_std_width_constant():
    # mup 1.0.0's set_base_shapes rescales a MuSharedReadout's weight by sqrt(width_mult) unless
    # the weights are re-initialised afterwards.
    for width in (32, 512):
        torch.manual_seed(0)
        model = build_model(GPTConfig(width=width, heads=4, tie_readout=True, **TINY))
        assert model.lm_head.weight is model.wte.weight
        assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
        _, loss = model(_tokens(), _tokens(1))
        assert torch.isfinite(loss)


def test_mu_adamw_divides_hidden_lr_by_width_mult_and_sp_does_not():
    model = build_model(GPTConfig(width=128, heads=16, **TINY))
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    hidden = {id(p) for b in model.blocks for p in b.parameters() if p.ndim == 2}
    for group in opt.param_groups:
        for p in group["params"]:
            expected = 1e-2 / 4 if id(p) in hidden else 1e-2
            assert group["lr"] == pytest.approx(expected)
    sp = build_model(GPTConfig(width=128, heads=16, parametrization="sp", **TINY))
    assert {g["lr"] for g in make_optimizer(sp, lr=1e-2).param_groups} == {1e-2}
    assert type(make_optimizer(sp, name="sgd", lr=0.1)) is torch.optim.SGD
    # MuSGD: hidden (inf x inf) keeps lr, vector-like (embeddings, LN) gets lr * width_mult.
    sgd = make_optimizer(model, name="sgd", lr=0.1)
    lrs = {id(p): g["lr"] for g in sgd.param_groups for p in g["params"]}
    assert lrs[id(model.blocks[0].mlp.c_fc.weight)] == pytest.approx(0.1)
    assert lrs[id(model.wte.weight)] == pytest.approx(0.4)


def test_bsh_round_trip_and_mismatch_is_an_input_error(tmp_path):
    config = GPTConfig(width=128, heads=16, **TINY)
    path = tmp_path / "gpt.bsh"
    base_shapes(config, savefile=path)
    torch.manual_seed(0)
    from_file = build_model(config, base=path)
    torch.manual_seed(0)
    direct = build_model(config)
    assert _infshapes(from_file) == _infshapes(direct)
    assert from_file.blocks[0].mlp.c_fc.weight.infshape.width_mult() == 4

    deeper = GPTConfig(width=128, heads=16, depth=3, seq_len=16, base_width=32)
    with pytest.raises(InputError, match=r"gpt.bsh does not match the model.*blocks\.2"):
        build_model(deeper, base=path)
    garbage = tmp_path / "bad.bsh"
    garbage.write_text("{not: [valid")
    with pytest.raises(InputError, match="cannot read base shape file .*bad.bsh"):
        build_model(config, base=garbage)
    with pytest.raises(InputError, match="not found"):
        build_model(config, base=tmp_path / "missing.bsh")
    # A delta that did not vary the MLP hidden size leaves c_fc's fan-out finite: mup's
    # hidden-size assertion, reported as bad input.
    text = path.read_text().replace("- 128\n- 32", "- null\n- 32")
    wrong = tmp_path / "wrong_delta.bsh"
    wrong.write_text(text)
    assert text != path.read_text()
    with pytest.raises(InputError, match=r"wrong_delta.bsh does not match the model: .*c_fc"):
        build_model(config, base=wrong)


def test_deepcopy_loses_infshape_but_copy_model_keeps_it():
    model = build_model(GPTConfig(width=64, heads=8, **TINY))
    x = _tokens()
    plain = copy.deepcopy(model)
    assert not hasattr(plain.lm_head.weight, "infshape")  # the trap: deepcopy drops infshape
    clone = copy_model(model)
    assert _infshapes(clone) == _infshapes(model)
    torch.testing.assert_close(clone(x)[0], model(x)[0])
    make_optimizer(clone, lr=1e-3)  # MuAdamW asserts infshape on every parameter


def test_ema_model_keeps_infshape_and_averages():
    model = build_model(GPTConfig(width=64, heads=8, **TINY))
    ema = ema_model(model, decay=0.5)
    assert _infshapes(ema.module) == _infshapes(model)
    opt = make_optimizer(model, lr=1e-2)
    x, y = _tokens(), _tokens(1)
    model(x, y)[1].backward()
    opt.step()
    ema.update_parameters(model)
    logits, _ = ema(x)
    assert torch.isfinite(logits).all()


def test_model_from_state_dict_restores_infshape_without_rescaling_and_strips_module_prefix():
    config = GPTConfig(width=64, heads=8, **TINY)
    model = build_model(config)
    opt = make_optimizer(model, lr=1e-2)
    x, y = _tokens(), _tokens(1)
    for _ in range(2):  # make the readout non-zero so a wrong rescale would show
        opt.zero_grad()
        model(x, y)[1].backward()
        opt.step()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    restored = model_from_state_dict(config, state)
    assert _infshapes(restored) == _infshapes(model)
    torch.testing.assert_close(restored(x)[0], model(x)[0])
    with pytest.raises(InputError, match="checkpoint does not match"):
        model_from_state_dict(GPTConfig(width=32, heads=8, **TINY), state)


def test_relative_scheduler_keeps_mup_lr_ratios_and_absolute_one_cycle_is_caught():
    model = build_model(GPTConfig(width=128, heads=16, **TINY))
    opt = make_optimizer(model, lr=1e-2)
    initial = [g["lr"] for g in opt.param_groups]
    sched = relative_lr_scheduler(opt, warmup_cosine(warmup_steps=2, total_steps=10))
    for _ in range(5):
        opt.step()
        sched.step()
        check_lr_ratios(opt, initial)
    opt = make_optimizer(model, lr=1e-2)
    initial = [g["lr"] for g in opt.param_groups]
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)  # sets absolute LRs
    opt.step()
    one_cycle.step()
    with pytest.raises(ConfigError, match="muP ratio"):
        check_lr_ratios(opt, initial)


def test_wrapped_model_base_shapes_have_no_module_prefix(tmp_path):
    # mup strips a 'module.' prefix with str.strip, which eats characters ('module.embed.weight' → 'bed.weight').
    assert strip_module_prefix({"module.embed.weight": 1, "wte.weight": 2}) == {"embed.weight": 1, "wte.weight": 2}
    model = build_model(GPTConfig(width=64, heads=8, **TINY))
    wrapped = torch.nn.DataParallel(model)  # CPU: just a wrapper with 'module.' names
    assert all(name.startswith("module.") for name, _ in wrapped.named_parameters())
    assert unwrap_model(wrapped) is model
    save_base_shapes(wrapped, tmp_path / "w.bsh")
    text = (tmp_path / "w.bsh").read_text()
    assert "module." not in text and "wte.weight" in text
    build_model(GPTConfig(width=128, heads=16, **TINY), base=tmp_path / "w.bsh")


def test_tiny_model_learns_the_markov_corpus():
    from workbench.lm.corpora import markov_corpus

    torch.manual_seed(0)
    corpus = markov_corpus(n_tokens=1 << 14, val_tokens=1 << 10)
    model = build_model(GPTConfig(width=32, heads=4, **TINY))
    opt = make_optimizer(model, lr=1e-2)
    losses = []
    for step in range(30):
        x, y = corpus.sample_batch("train", 8, 16, step)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(256), rel=1e-3)  # zero readout: uniform logits
    assert sum(losses[-5:]) / 5 < 0.8 * math.log(256)


def test_torch_compile_and_bf16_autocast_smoke():
    # microsoft/mup#60 (torch.compile failing on FakeTensors without infshape) was not reproduced; keep
    # a smoke test.
    # aot_eager traces with FakeTensors like inductor but needs no C++ compiler on CPU.
    config = GPTConfig(width=64, heads=8, **TINY)
    torch.manual_seed(0)
    model = build_model(config)
    opt = make_optimizer(model, lr=1e-2)
    compiled = torch.compile(model, backend="aot_eager")
    x, y = _tokens(), _tokens(1)
    for _ in range(2):
        _, loss = compiled(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert unwrap_model(compiled) is model
    torch.testing.assert_close(compiled(x)[0], model(x)[0])
    restored = model_from_state_dict(config, compiled.state_dict())  # '_orig_mod.' prefixes
    torch.testing.assert_close(restored(x)[0], model(x)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(x, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32 and torch.isfinite(loss)
