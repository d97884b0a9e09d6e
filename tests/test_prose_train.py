"""The `prose` trainable (operators.prose.module): schedule, token-level corruption, per-step data
noise, harness runs.

Fast tests only; the learning checks are in tests/test_prose_evaluate.py (marked slow).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sympy

from operators.odes import FAMILIES
from operators.prose.config import ProseTrainableConfig
from operators.prose.skeleton import SkeletonCorruptor, component_terms, join_terms
from operators.prose.tokens import PLACEHOLDER, Vocabulary, additive_terms, corrupt, detokenize, tokenize
from workbench.errors import ConfigError, InputError

VOCABULARY = Vocabulary(max_dim=5)


def _target(name: str, seed: int = 0) -> list:
    family = FAMILIES[name]
    return family.expressions(family.sample_params(np.random.default_rng(seed)))


# --- schedule -------------------------------------------------------------------------------------
def test_inverse_sqrt_schedule_matches_the_reference_values():
    # The official adam_inverse_sqrt (warm-up 20k to 1e-4): 1e-4 at step 20k and 1e-4 * sqrt(1/2) ~ 7.07e-5 at 40k.
    assert inverse_sqrt_lr(20_000, 1e-4, 20_000) == pytest.approx(1e-4, rel=1e-12)
    assert inverse_sqrt_lr(40_000, 1e-4, 20_000) == pytest.approx(7.0711e-5, rel=1e-4)
    assert inverse_sqrt_lr(0, 1e-4, 20_000) == pytest.approx(1e-7)  # warmup starts at ~0
    assert inverse_sqrt_lr(10_000, 1e-4, 20_000) == pytest.approx(0.5 * (1e-4 + 1e-7), rel=1e-9)
    steps = np.arange(0, 60_000, 97)
    values = np.array([inverse_sqrt_lr(int(s), 1e-4, 20_000) for s in steps])
    peak = int(np.argmax(values))
    assert np.all(np.diff(values[: peak + 1]) > 0) and np.all(np.diff(values[peak:]) < 0)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="not divisible by heads"):
        ProseTrainableConfig(hidden=66, heads=4)
    with pytest.raises(ConfigError, match="d_max: 5"):
        ProseTrainableConfig(families="chaotic_ode_all", d_max=3)
    with pytest.raises(ConfigError, match="families"):
        ProseTrainableConfig(families="lorenz_3d,nope")
    with pytest.raises(ConfigError, match="must be <= 1"):
        ProseTrainableConfig(add_term_prob=0.6, miss_term_prob=0.6)


# --- token-level corruption ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_terms_are_sympys_additive_terms(name):
    exprs = _target(name)
    tokens = tokenize(exprs)
    terms = component_terms(tokens)
    assert [len(c) for c in terms] == [len(additive_terms(e)) for e in exprs]
    # Joining the terms again gives back the tokens exactly.
    rebuilt = []
    for index, component in enumerate(terms):
        rebuilt += (["|"] if index else []) + join_terms(component, "add", "sub", "neg")
    assert rebuilt == tokens


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_corruption_draws_equal_tokens_corrupt(name):
    """Same generator state -> the same skeleton as tokens.corrupt + tokenize(skeleton=True)."""
    exprs, dim = _target(name), FAMILIES[name].dim
    corruptor = SkeletonCorruptor(VOCABULARY)
    terms = corruptor.prepare(tokenize(exprs))
    assert VOCABULARY.decode(corruptor.skeleton(terms)) == tokenize(exprs, skeleton=True)
    checked = 0
    for seed in range(150):
        expected, what = corrupt(exprs, np.random.default_rng(seed), dim=dim)
        ids, kind = corruptor.corrupt(terms, np.random.default_rng(seed), dim)
        assert kind == what.kind
        if (
            kind == "add"
            and additive_terms(exprs[what.component])[0].is_number
            and len(additive_terms(exprs[what.component])) == 1
        ):
            # Duffing's constant component: sympy folds c + 1 into one number; the token lists keep
            # the added term, as the official PROSE code's tree surgery does.
            continue
        assert VOCABULARY.decode(ids) == tokenize(expected, skeleton=True), (seed, what)
        checked += 1
    assert checked > 140


def _fill(words: list[str], rng) -> list[str]:
    out = []
    for word in words:
        out += ["+", f"N{int(rng.integers(100, 1000))}", "E-2"] if word == PLACEHOLDER else [word]
    return out


@pytest.mark.parametrize("name", ["lorenz_3d", "rossler", "four_wing", "halvorsen", "chen_lee", "sprott_B"])
def test_corruption_adds_or_removes_exactly_one_term(name):
    """Filled with numbers, a corrupted skeleton detokenizes to one term more or fewer."""
    exprs, dim = _target(name), FAMILIES[name].dim
    corruptor = SkeletonCorruptor(VOCABULARY)
    terms = corruptor.prepare(tokenize(exprs))
    before = [len(additive_terms(e)) for e in exprs]
    fill_rng = np.random.default_rng(1)
    kinds = set()
    for seed in range(200):
        ids, kind = corruptor.corrupt(terms, np.random.default_rng(seed), dim)
        filled = _fill(VOCABULARY.decode(ids), fill_rng)
        decoded = detokenize(filled, dim=dim)
        assert decoded.valid, decoded.error
        tokens_change = [len(c) - b for c, b in zip(component_terms(filled), before)]
        sympy_change = [len(additive_terms(e)) - b for e, b in zip(decoded.exprs, before)]
        expected = {"none": 0, "add": 1, "delete": -1}[kind]
        assert sorted(tokens_change) == sorted([expected] + [0] * (dim - 1)), (kind, tokens_change)
        if kind == "add":
            # sympy folds an added c*u_0 into an existing 10*u_0 (the same monomial): +1 or 0.
            assert sum(sympy_change) in (0, 1) and min(sympy_change) == 0
        else:
            assert sorted(sympy_change) == sorted(tokens_change)
        kinds.add(kind)
    assert kinds == {"add", "delete", "none"}


def test_leading_negative_term_becomes_neg_after_delete():
    # Rossler u_0' = -u_1 - u_2: deleting -u_1 leaves "neg u_2", deleting -u_2 leaves "neg u_1".
    corruptor = SkeletonCorruptor(VOCABULARY, add_prob=0.0, miss_prob=1.0)
    terms = corruptor.prepare(tokenize([-sympy.Symbol("u_1") - sympy.Symbol("u_2"), sympy.Symbol("u_0")]))
    seen = set()
    for seed in range(40):
        ids, kind = corruptor.corrupt(terms, np.random.default_rng(seed))
        assert kind == "delete"
        seen.add(" ".join(VOCABULARY.decode(ids)))
    assert seen == {"neg u_2 | u_0", "neg u_1 | u_0"}


def test_corruption_rates_are_fifteen_percent():
    # The official add and delete rates 0.15 +- 0.01 over 10^4 draws (binomial sd 0.0036).
    corruptor = SkeletonCorruptor(VOCABULARY)
    terms = corruptor.prepare(tokenize(_target("lorenz_3d")))
    rng = np.random.default_rng(0)
    kinds = [corruptor.corrupt(terms, rng, 3)[1] for _ in range(10_000)]
    assert kinds.count("add") / 1e4 == pytest.approx(0.15, abs=0.01)
    assert kinds.count("delete") / 1e4 == pytest.approx(0.15, abs=0.01)


def test_added_terms_are_drawn_uniformly_from_the_ten_shapes():
    corruptor = SkeletonCorruptor(VOCABULARY, add_prob=1.0, miss_prob=0.0)
    shapes = [" ".join(VOCABULARY.decode(s)) for s in corruptor.shapes(3)]
    assert len(shapes) == 10 and shapes[0] == PLACEHOLDER and "mul <PLACEHOLDER> pow2 u_0" in shapes
    skeleton = tokenize(_target("lorenz_3d"), skeleton=True)
    terms = corruptor.prepare(tokenize(_target("lorenz_3d")))

    def term_strings(words):
        return Counter(" ".join(body) for component in component_terms(words) for _, body in component)

    original = term_strings(skeleton)
    rng = np.random.default_rng(0)
    added = Counter()
    for _ in range(5000):
        ids, kind = corruptor.corrupt(terms, rng, 3)
        added += term_strings(VOCABULARY.decode(ids)) - original
    assert set(added) == set(shapes) and sum(added.values()) == 5000
    # 500 expected per shape, binomial sd ~21: +-100 is ~5 sd.
    assert all(abs(count - 500) < 100 for count in added.values()), added


# --- training through the harness ---------------------------------------------------------------
torch = pytest.importorskip("torch")

from operators.odes import NOISE_GAMMA  # noqa: E402
from operators.prose.module import (  # noqa: E402
    NOISE_STREAM,
    add_training_noise,
    data_noise_gamma,
    inverse_sqrt_lr,
)
from workbench.batches import StepBatches, step_rng  # noqa: E402
from workbench.registry import get_trainable  # noqa: E402
from workbench.store import create_run_dir, open_dataset  # noqa: E402
from workbench.train import TrainConfig, load_weights, train  # noqa: E402

TINY = ProseTrainableConfig(hidden=32, heads=2, ffn=64, fusion_layers=1, data_decoder_layers=1,
                            symbol_decoder_layers=1, families="thomas,rossler", n_train=12, n_val=4,
                            batch_size=8, lr=1e-3, warmup_steps=5, eval_every=4, eval_samples=6,
                            max_symbol_len=80)  # fmt: skip


def test_registered_with_preflight():
    trainable = get_trainable("prose")
    assert trainable.config_type is ProseTrainableConfig and trainable.preflight is not None
    trainable.preflight(TINY)  # in-process data: nothing to check


def test_preflight_rejects_a_missing_data_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        get_trainable("prose").preflight(dataclasses.replace(TINY, data=str(tmp_path / "nope")))


def test_trains_records_validation_losses_and_resumes_exactly(tmp_path):
    whole = create_run_dir(tmp_path, "prose", "whole", config=TINY)
    result = train(TINY, TrainConfig(max_steps=8, checkpoint_every=4, seed=3), whole)
    assert result["status"] == "completed" and result["steps"] == 8
    ds = open_dataset(whole.metrics_path)
    assert list(ds["eval_step"].values) == [0, 4, 8]
    assert np.all(np.isfinite(ds["val_data_loss"].values)) and np.all(np.isfinite(ds["val_symbol_loss"].values))
    assert ds["val_symbol_loss"].values[-1] < ds["val_symbol_loss"].values[0]  # lr 1e-3: CE falls at once
    assert int(ds["params"]) == sum(
        int(ds[f"params_{b}"])
        for b in ("data_embedder", "data_encoder", "symbol_encoder", "fusion", "data_decoder", "symbol_decoder")
    )
    split = create_run_dir(tmp_path, "prose", "split", config=TINY)
    train(TINY, TrainConfig(max_steps=5, checkpoint_every=4, seed=3), split)
    resumed = train(TINY, TrainConfig(max_steps=8, checkpoint_every=4, seed=3), split)
    assert resumed["resumed_from_step"] == 5
    a, b = load_weights(whole), load_weights(split)
    assert all(torch.equal(a[k], b[k]) for k in a)  # step-seeded batches: resume is exact on CPU
    other = open_dataset(split.metrics_path)
    assert list(other["eval_step"].values) == [0, 4, 5, 8]  # + the end of the first leg
    assert np.array_equal(other["val_data_loss"].sel(eval_step=[0, 4, 8]).values, ds["val_data_loss"].values)


def test_data_only_ablation_trains_without_symbols(tmp_path):
    config = dataclasses.replace(TINY, data_only=True)
    run = create_run_dir(tmp_path, "prose", "data_only", config=config)
    train(config, TrainConfig(max_steps=3, checkpoint_every=3), run)
    ds = open_dataset(run.metrics_path)
    assert np.all(np.isnan(ds["val_symbol_loss"].values)) and int(ds["params_symbol_decoder"]) == 0


def test_schedule_reaches_the_optimizer(tmp_path):
    """The LightningModule's scheduler follows inverse_sqrt_lr step by step."""
    module = get_trainable("prose").build(dataclasses.replace(TINY, lr=1e-3, warmup_steps=3), 0)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    group = optimizer.param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.999), 1e-8, 1e-4)
    seen = []
    for _ in range(6):
        seen.append(group["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([inverse_sqrt_lr(s, 1e-3, 3) for s in range(6)], rel=1e-12)
    assert seen[3] == pytest.approx(1e-3) and seen[5] == pytest.approx(1e-3 * math.sqrt(3 / 5))


def test_loader_workers_give_the_same_batches_in_step_order():
    from workbench.batches import StepBatches

    module = get_trainable("prose").build(TINY, 7)
    batches = StepBatches(module.draw, seed=7, start=3, build=module.build_batch)

    def first(loader, k=5):
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == k:
                return out

    alone = first(torch.utils.data.DataLoader(batches, batch_size=None))
    pooled = first(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2))
    for a, b in zip(alone, pooled):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- data noise, fresh at every step (the official enc_dec_step) ---------------------------------
def _trajectories(batch: dict) -> np.ndarray:
    """Input and target of a batch joined again: the whole (B, T, d_max) trajectories it trains on."""
    return np.concatenate([batch["data_values"].numpy(), batch["target"].numpy()], axis=1)


def test_add_training_noise_follows_the_official_additive_noise():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(3, 20, 3)) * np.array([1.0, 5.0, 0.5])
    clean[1, :, 2] = 0.0  # a 2-D sample padded to d_max 3
    eps = rng.standard_normal(clean.shape)
    noisy = add_training_noise(clean, eps, np.array([3, 2, 3]), 0.02)
    assert noisy.dtype == np.float32 and np.all(noisy[1, :, 2] == 0.0)  # padded components stay 0
    noise = noisy - clean
    real = [eps[0], eps[1][:, :2], eps[2]]
    for b in range(3):
        # sigma = gamma ||u|| / (||eps|| + 1e-6), norms over the whole trajectory and the real components
        sigma = 0.02 * np.linalg.norm(clean[b]) / (np.linalg.norm(real[b]) + 1e-6)
        np.testing.assert_allclose(noise[b][:, : real[b].shape[1]], sigma * real[b], rtol=0, atol=1e-6)
        assert np.linalg.norm(noise[b]) / np.linalg.norm(clean[b]) == pytest.approx(0.02, rel=1e-5)
    assert np.array_equal(add_training_noise(clean, eps, np.array([3, 2, 3]), 0.0), clean.astype(np.float32))


def test_training_noise_is_drawn_on_clean_data_at_every_step():
    module = get_trainable("prose").build(TINY, 7)
    data, n_in = module.train_data, TINY.input_len
    assert module.noise_gamma == NOISE_GAMMA == 0.02

    def step(k):
        share = module.draw(step_rng(7, k), k)
        return share[0], module.build_batch(share)

    rows, batch = step(3)
    clean, stored = data.clean[rows], data.noisy[rows]
    whole = _trajectories(batch)
    # The batch starts from the clean trajectories: the noise is ~2 % of each, and is not the copy
    # stored at generation.
    ratio = np.linalg.norm(whole - clean, axis=(1, 2)) / np.linalg.norm(clean, axis=(1, 2))
    np.testing.assert_allclose(ratio, 0.02, rtol=1e-4)
    assert not np.allclose(whole, stored, rtol=0, atol=1e-4)
    # Exactly this step's draw from its own stream; input and target carry the same draw (one sigma,
    # one eps over the whole trajectory), as the official trainer noises `data` before splitting it.
    eps = step_rng(7, 3, NOISE_STREAM).standard_normal((TINY.batch_size, len(data.t), TINY.d_max))
    expected = add_training_noise(clean, eps, data.dim[rows], NOISE_GAMMA)
    assert np.array_equal(batch["data_values"].numpy(), expected[:, :n_in])
    assert np.array_equal(batch["target"].numpy(), expected[:, n_in:])
    noise_in, noise_out = (whole - clean)[:, :n_in], (whole - clean)[:, n_in:]
    sigma_in = (noise_in * eps[:, :n_in]).sum((1, 2)) / (eps[:, :n_in] ** 2).sum((1, 2))
    sigma_out = (noise_out * eps[:, n_in:]).sum((1, 2)) / (eps[:, n_in:] ** 2).sum((1, 2))
    np.testing.assert_allclose(sigma_in, sigma_out, rtol=1e-4)
    # Another step gives the same sample other noise.
    for k in range(4, 20):
        other_rows, other = step(k)
        common = sorted(set(rows.tolist()) & set(other_rows.tolist()))
        if common:
            break
    i, j = list(rows).index(common[0]), list(other_rows).index(common[0])
    assert not np.allclose(_trajectories(other)[j], whole[i], rtol=0, atol=1e-4)
    np.testing.assert_allclose(_trajectories(other)[j], whole[i], rtol=0, atol=0.2 * np.abs(clean[i]).max())


def test_training_noise_follows_the_step_for_resumes_and_ranks():
    build = get_trainable("prose").build
    module = build(TINY, 7)
    keys = ("data_values", "target", "dim_mask")
    # A resumed run (a fresh module whose loader starts at step 5) sees the noise of an
    # uninterrupted one at step 5.
    uninterrupted = StepBatches(module.draw, seed=7, start=0, build=module.build_batch).batch(5)
    resumed_module = build(TINY, 7)
    resumed = next(iter(StepBatches(resumed_module.draw, seed=7, start=5, build=resumed_module.build_batch)))
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in keys)
    # Two data-parallel ranks take rows 0, 2, ... and 1, 3, ... of the one global draw.
    for rank in (0, 1):
        share = StepBatches(module.draw, seed=7, start=0, rank=rank, world=2, build=module.build_batch).batch(5)
        assert all(torch.equal(share[k], uninterrupted[k][rank::2]) for k in keys)


def test_noise_level_is_the_datas(tmp_path):
    assert data_noise_gamma(TINY) == NOISE_GAMMA  # in-process data are generated with it
    (tmp_path / "manifest.json").write_text('{"data": {"noise_gamma": 0.05}}')
    assert data_noise_gamma(dataclasses.replace(TINY, data=str(tmp_path))) == 0.05
    with pytest.raises(InputError, match="noise_gamma"):
        data_noise_gamma(dataclasses.replace(TINY, data=str(tmp_path / "nope")))


@pytest.fixture(scope="module")
def made_data(tmp_path_factory):
    from operators.prose.cli import load_data_config, make_data

    out = tmp_path_factory.mktemp("prose_data") / "data"
    config = load_data_config(
        Path(__file__).resolve().parents[1] / "jobs" / "configs" / "prose_data_tiny.yaml",
        [f"out={out}", "n_per_family=8", "val_per_family=3", "shard_size=10", "families=[thomas,rossler]"],
    )
    make_data(config, "debug")
    return out


def test_trains_from_a_make_data_directory(tmp_path, made_data):
    config = dataclasses.replace(TINY, data=str(made_data), eval_samples=100)
    get_trainable("prose").preflight(config)
    module = get_trainable("prose").build(config, 0)
    assert (len(module.train_data), len(module.val_data)) == (16, 6)  # train split; val split
    assert module.noise_gamma == 0.02  # the directory's noise_gamma (prose_data_tiny.yaml)
    run = create_run_dir(tmp_path, "prose", "from_disk", config=config)
    assert train(config, TrainConfig(max_steps=2, checkpoint_every=2), run)["status"] == "completed"


def test_preflight_names_a_missing_shard(made_data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(made_data, broken)
    (broken / "shard-00001.npz").unlink()
    with pytest.raises(InputError, match="shard-00001.npz is missing"):
        get_trainable("prose").preflight(dataclasses.replace(TINY, data=str(broken)))


def test_a_run_saved_before_the_layernorms_is_refused_clearly(tmp_path):
    """model.pt of the earlier layout (data_encoder.N., no embedding LayerNorms) is one InputError."""
    from operators.prose.evaluate import load_run
    from operators.prose.model import ProseModel

    run = create_run_dir(tmp_path, "prose", "old", config=TINY)
    state = {}
    for key, value in ProseModel(TINY.model_config()).state_dict().items():
        if not key.startswith(("data_encoder.norm.", "data_decoder.query_norm.")):
            state["model." + key.replace("data_encoder.layers.", "data_encoder.")] = value
    torch.save(state, Path(run.path) / "model.pt")
    with pytest.raises(InputError, match="earlier version of the model"):
        load_run(run.path)


def test_job_configs_load_and_follow_the_official_code():
    from jobs.entrypoints import load_job_config
    from operators.prose.model import ProseConfig

    configs = Path(__file__).resolve().parents[1] / "jobs" / "configs"
    tiny = load_job_config(configs / "prose_tiny.yaml")
    assert tiny.kind == "prose" and tiny.model.data == "" and tiny.job.gpus_per_node == 0
    paper = load_job_config(configs / "prose_paper.yaml")
    m, expected = paper.model, ProseConfig.paper()
    assert dataclasses.replace(m.model_config(), vocab_size=expected.vocab_size) == expected  # official sizes
    assert (m.batch_size, m.lr, m.warmup_steps, paper.train.max_steps) == (256, 1e-4, 20_000, 160_000)  # official
    assert (m.weight_decay, m.beta1, m.beta2, m.eps, m.grad_clip) == (1e-4, 0.9, 0.999, 1e-8, 1.0)
    assert (m.add_term_prob, m.miss_term_prob, m.input_len) == (0.15, 0.15, 64)  # official corruption, input window
    assert paper.job.gpus_per_node == 1 and m.data == "data/prose_paper"
