"""The PROSE multimodal transformer (official code: github.com/felix-lyx/prose, prose_ode/): shapes, query independence,
overfitting, the data-only ablation, decoding, input errors and the paper model's parameter count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators.odes import FAMILIES, generate
from operators.prose.model import (
    ProseConfig,
    ProseModel,
    batch_token_ids,
    count_parameters,
    prose_loss,
    symbol_loss,
    trajectory_loss,
)
from operators.prose.tokens import Vocabulary, detokenize, tokenize
from workbench.errors import ConfigError, InputError

VOCAB = Vocabulary(max_dim=3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box has 2 cores; tiny models gain nothing from threads
    yield
    torch.set_num_threads(threads)


def _tiny(**changes) -> ProseModel:
    torch.manual_seed(0)
    return ProseModel(ProseConfig.tiny(vocab_size=VOCAB.size, **changes))


def _random_inputs(batch=3, times=16, symbols=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    data_times = torch.linspace(0, 2, times).expand(batch, times).clone()
    data_values = torch.randn(batch, times, 3, generator=g)
    symbol_ids = torch.randint(4, VOCAB.size, (batch, symbols), generator=g)
    symbol_ids[0, -3:] = VOCAB.pad_id  # one padded row
    return data_times, data_values, symbol_ids


# --- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_queries", [1, 5, 128])
def test_output_shapes_for_any_query_set(n_queries):
    model = _tiny()
    data_times, data_values, symbol_ids = _random_inputs()
    target = torch.randint(4, VOCAB.size, (3, 11))
    out = model(data_times, data_values, symbol_ids, query_times=torch.linspace(2, 6, n_queries), target_ids=target)
    assert out.trajectory.shape == (3, n_queries, 3)
    assert out.symbol_logits.shape == (3, 11, VOCAB.size)
    assert torch.isfinite(out.trajectory).all() and torch.isfinite(out.symbol_logits).all()


def test_per_sample_query_times():
    model = _tiny().eval()
    inputs = _random_inputs()
    per_sample = torch.rand(3, 7) * 4 + 2
    out = model(*inputs, query_times=per_sample)
    assert out.trajectory.shape == (3, 7, 3)
    assert out.symbol_logits is None  # no target_ids given
    # Row b of per-sample queries equals querying sample b with a shared time set.
    shared = model(*inputs, query_times=per_sample[1]).trajectory[1]
    torch.testing.assert_close(out.trajectory[1], shared, rtol=0, atol=1e-6)


# --- query independence (no self-attention among queries) ---------------------------------------
def test_query_independence():
    model = _tiny().eval()
    inputs = _random_inputs()
    times = torch.linspace(2.0, 6.0, 128)
    together = model(*inputs, query_times=times).trajectory
    for index in (0, 37, 127):
        alone = model(*inputs, query_times=times[index : index + 1]).trajectory
        # 1e-6: only float32 summation order in batched matmuls may differ.
        torch.testing.assert_close(alone[:, 0], together[:, index], rtol=0, atol=1e-6)
    subset = model(*inputs, query_times=times[[5, 90, 3]]).trajectory
    torch.testing.assert_close(subset, together[:, [5, 90, 3]], rtol=0, atol=1e-6)


# --- overfitting a fixed batch -------------------------------------------------------------------
def _ode_batch():
    """8 samples (4 Thomas, 4 Rössler) on a short grid: 24 input points, 16 query points."""
    data = generate(["thomas", "rossler"], 4, seed=0, t_eval=np.linspace(0.0, 2.0, 40))
    t = torch.tensor(data["t"], dtype=torch.float32)
    u = torch.tensor(data["noisy"], dtype=torch.float32)
    skeletons, targets = [], []
    for i in range(len(data["dim"])):
        family = FAMILIES[data["families"][data["family"][i]]]
        exprs = family.expressions(data["params"][i, : len(family.params)])
        skeletons.append(VOCAB.encode(tokenize(exprs, skeleton=True, max_dim=3)))
        targets.append(VOCAB.encode(tokenize(exprs, max_dim=3)))
    symbol_ids, symbol_mask = batch_token_ids(skeletons, pad_id=VOCAB.pad_id)
    target_ids, _ = batch_token_ids(targets, pad_id=VOCAB.pad_id, bos_id=VOCAB.bos_id, eos_id=VOCAB.eos_id)
    dim_mask = torch.arange(3)[None, :] < torch.tensor(data["dim"])[:, None]
    n_in = 24
    return dict(
        data_times=t[:n_in].expand(len(u), n_in),
        data_values=u[:, :n_in],
        symbol_ids=symbol_ids,
        symbol_mask=symbol_mask,
        query_times=t[n_in:],
        target=u[:, n_in:],
        dim_mask=dim_mask,
        target_ids=target_ids,
        targets=targets,
    )


def test_tiny_model_overfits_a_fixed_batch():
    batch = _ode_batch()
    model = _tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(250):
        out = model(
            batch["data_times"],
            batch["data_values"],
            batch["symbol_ids"],
            batch["symbol_mask"],
            query_times=batch["query_times"],
            target_ids=batch["target_ids"],
        )
        losses = prose_loss(out, batch["target"], batch["dim_mask"], batch["target_ids"], VOCAB.pad_id)
        if step == 0:
            initial = losses.total.item()
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
    # Near zero: at initialisation the relative trajectory error is ~1.5 and the token cross-entropy
    # ~ln(1041) ~ 7 (total ~16). After 250 steps (seeded, one thread) they are ~1e-3 each; the bounds
    # leave ~10x headroom because Adam at this learning rate makes the trajectory loss wobble
    # (8e-3 at step 200). 2e-2 relative squared error is a ~14 % relative L2 error; 2e-2 nats per
    # token means the targets are memorised, which the greedy check below confirms exactly.
    assert initial > 5.0
    assert losses.trajectory.item() < 2e-2, losses
    assert losses.symbol.item() < 2e-2, losses
    assert losses.total.item() < 0.15, losses
    # The memorised targets come back under greedy decoding and parse.
    model.eval()
    decoded = model.greedy_decode(
        batch["data_times"], batch["data_values"], batch["symbol_ids"], batch["symbol_mask"], max_len=40
    )
    sequences = [beams[0] for beams in decoded.sequences(VOCAB.eos_id)]
    assert sequences == batch["targets"]
    assert all(detokenize(VOCAB.decode(s)).valid for s in sequences)


# --- data-only ablation --------------------------------------------------------------------------
def test_data_only_has_no_symbol_path():
    model = _tiny(data_only=True)
    counts = count_parameters(model)
    # The official --no_text builds no text encoder, no fusion and no text decoder.
    assert model.symbol_decoder is None and model.symbol_encoder is None and model.fusion is None
    assert counts["symbol_decoder"] == 0 and counts["symbol_encoder"] == 0 and counts["fusion"] == 0
    assert not any(
        name.startswith(("symbol_decoder", "symbol_encoder", "fusion")) for name, _ in model.named_parameters()
    )
    data_times, data_values, _ = _random_inputs()
    out = model(data_times, data_values, query_times=torch.linspace(2, 6, 4))
    assert out.symbol_logits is None and out.trajectory.shape == (3, 4, 3)
    losses = prose_loss(out, torch.randn(3, 4, 3), None, None)
    assert losses.symbol is None
    torch.testing.assert_close(losses.total, 6.0 * losses.trajectory)
    with pytest.raises(InputError, match="data_only"):
        model.greedy_decode(data_times, data_values)


def test_data_only_decoder_reads_the_data_encoder_output():
    """As the official trainer with --no_text: the data decoder attends straight to the data encoder."""
    model = _tiny(data_only=True).eval()
    data_times, data_values, _ = _random_inputs()
    seen = {}
    model.data_encoder.register_forward_hook(lambda m, args, out: seen.update(encoder=out))
    model.data_decoder.register_forward_hook(lambda m, args, out: seen.update(memory=args[1]))
    model(data_times, data_values, query_times=torch.linspace(2, 6, 4))
    assert seen["memory"] is seen["encoder"]


# --- decoding ------------------------------------------------------------------------------------
def test_greedy_and_beam_search():
    model = _tiny().eval()
    inputs = _random_inputs()
    max_len = 12
    greedy = model.greedy_decode(*inputs, max_len=max_len)
    assert greedy.tokens.shape[:2] == (3, 1) and greedy.tokens.shape[2] <= max_len
    assert ((greedy.lengths >= 1) & (greedy.lengths <= max_len)).all()

    beam1 = model.beam_search(*inputs, beam_size=1, max_len=max_len)
    assert torch.equal(beam1.tokens, greedy.tokens)
    torch.testing.assert_close(beam1.scores, greedy.scores, rtol=0, atol=1e-5)

    beam = model.beam_search(*inputs, beam_size=4, max_len=max_len)
    assert beam.tokens.shape[:2] == (3, 4) and beam.tokens.shape[2] <= max_len
    assert ((beam.lengths >= 1) & (beam.lengths <= max_len)).all()
    assert (beam.scores[:, 1:] <= beam.scores[:, :-1]).all()  # best first
    assert (beam.scores[:, 0] >= greedy.scores[:, 0] - 1e-5).all()  # beam finds at least greedy's score
    for tokens, length in zip(beam.tokens.reshape(12, -1), beam.lengths.reshape(-1)):
        body = tokens[:length]
        assert (body[:-1] != VOCAB.eos_id).all()  # <EOS> ends a sequence, never inside it
        assert (tokens[length:] == VOCAB.pad_id).all()
        assert (body != VOCAB.pad_id).all() and (body != VOCAB.bos_id).all()

    # Scores are the sequences' summed log-probabilities under teacher forcing.
    encoded = model.encode(*inputs)
    ids = torch.cat([torch.full((3, 1), VOCAB.bos_id), beam.tokens[:, 0]], dim=1)
    log_probs = torch.log_softmax(model.decode_symbols(encoded, ids)[:, :-1], -1)
    picked = log_probs.gather(-1, beam.tokens[:, 0, :, None])[..., 0]
    valid = torch.arange(ids.shape[1] - 1)[None] < beam.lengths[:, :1]
    torch.testing.assert_close((picked * valid).sum(1), beam.scores[:, 0], rtol=0, atol=1e-4)


# --- the two embedding LayerNorms ----------------------------------------------------------------
def _first_layer_input(module: torch.nn.Module, run) -> torch.Tensor:
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    run()
    handle.remove()
    return seen[0]


def _assert_layer_normalised(tokens: torch.Tensor) -> None:
    """Zero mean and unit variance over the features of every token (a LayerNorm at init)."""
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(tokens.shape[:2]), rtol=0, atol=1e-5)
    torch.testing.assert_close(tokens.var(-1, unbiased=False), torch.ones(tokens.shape[:2]), rtol=0, atol=1e-4)


def test_data_encoder_normalizes_the_embedder_output():
    """The official DataTransformerModel.fwd applies layer_norm_emb before its first layer: the first
    layer sees zero-mean, unit-variance tokens, whatever the scale of the embedder output."""
    model = _tiny().eval()
    inputs = _random_inputs()
    times = torch.linspace(2, 6, 5)
    first = model.data_encoder.layers[0]

    before = _first_layer_input(first, lambda: model(*inputs, query_times=times))
    _assert_layer_normalised(before)
    trajectory = model(*inputs, query_times=times).trajectory
    with torch.no_grad():  # scale the embedder's output by 7
        model.data_embedder.mlp[2].weight.mul_(7.0)
        model.data_embedder.mlp[2].bias.mul_(7.0)
    after = _first_layer_input(first, lambda: model(*inputs, query_times=times))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    torch.testing.assert_close(model(*inputs, query_times=times).trajectory, trajectory, rtol=0, atol=1e-5)


def test_data_decoder_normalizes_the_query_embedding():
    """The official DataOperatorModel.fwd applies layer_norm_emb to Linear(1 -> d)(t) before the first
    cross-attention."""
    model = _tiny().eval()
    inputs = _random_inputs()
    times = torch.linspace(2, 6, 5)
    first = model.data_decoder.layers[0]
    _assert_layer_normalised(_first_layer_input(first, lambda: model(*inputs, query_times=times)))
    trajectory = model(*inputs, query_times=times).trajectory
    with torch.no_grad():  # scale the query embedding by 5
        model.data_decoder.query.weight.mul_(5.0)
        model.data_decoder.query.bias.mul_(5.0)
    torch.testing.assert_close(model(*inputs, query_times=times).trajectory, trajectory, rtol=0, atol=1e-5)


def _old_layout(state: dict, fusion: dict | None = None) -> dict:
    """A state dict as the model before the two LayerNorms saved it (data_encoder.N. keys, no norms)."""
    old = {}
    for key, value in state.items():
        if key.startswith(("data_encoder.norm.", "data_decoder.query_norm.")):
            continue
        old[key.replace("data_encoder.layers.", "data_encoder.")] = value
    return {**old, **(fusion or {})}


def test_weights_of_the_earlier_layout_are_refused_clearly():
    model = _tiny()
    model.load_state_dict(_tiny().state_dict())  # the current layout loads
    with pytest.raises(InputError, match="earlier version of the model"):
        model.load_state_dict(_old_layout(model.state_dict()))
    data_only = _tiny(data_only=True)
    fusion = {f"fusion.{k}": v for k, v in model.fusion.state_dict().items()}
    with pytest.raises(InputError, match="fusion block, which the data_only model no longer has"):
        data_only.load_state_dict(_old_layout(data_only.state_dict(), fusion))
    # Nested, as Lightning loads a checkpoint of the LightningModule (keys "model.").
    holder = torch.nn.Module()
    holder.model = _tiny()
    nested = {f"model.{k}": v for k, v in _old_layout(model.state_dict()).items()}
    with pytest.raises(InputError, match="earlier version"):
        holder.load_state_dict(nested)


# --- losses --------------------------------------------------------------------------------------
def test_losses_follow_section_2_6():
    target = torch.randn(2, 5, 3)
    target[1, :, 2] = 0.0  # a padded component
    mask = torch.tensor([[True, True, True], [True, True, False]])
    predicted = target.clone()
    predicted[1, :, 2] = 100.0  # ignored: padded
    assert trajectory_loss(predicted, target, mask).item() == 0.0
    predicted = target * 0.5
    expected = torch.full((), 0.25) * (target**2).sum((1, 2)) / ((target**2).sum((1, 2)) + 1e-5)
    torch.testing.assert_close(trajectory_loss(predicted, target, mask), expected.mean())

    ids = torch.tensor([[VOCAB.bos_id, 10, 11, VOCAB.eos_id, VOCAB.pad_id]])
    logits = torch.full((1, 5, VOCAB.size), -30.0)
    for position, token in enumerate([10, 11, VOCAB.eos_id]):
        logits[0, position, token] = 30.0
    logits[0, 3:, :] = 0.0  # predictions after <EOS> are for <PAD>: ignored
    assert symbol_loss(logits, ids, VOCAB.pad_id).item() < 1e-6


# --- bad input -----------------------------------------------------------------------------------
def test_bad_inputs_raise_input_error():
    model = _tiny()
    data_times, data_values, symbol_ids = _random_inputs()
    with pytest.raises(InputError, match="query_times is empty"):
        model(data_times, data_values, symbol_ids, query_times=torch.zeros(0))
    with pytest.raises(InputError, match="d_max=3"):
        model(data_times, torch.zeros(3, 16, 5), symbol_ids, query_times=torch.ones(2))
    with pytest.raises(InputError, match="batch"):
        model(data_times, data_values, symbol_ids[:2], query_times=torch.ones(2))
    with pytest.raises(InputError, match="batch"):
        model(data_times[:2], data_values, symbol_ids, query_times=torch.ones(2))
    with pytest.raises(InputError, match="batch"):
        model(data_times, data_values, symbol_ids, query_times=torch.ones(2, 4))
    with pytest.raises(InputError, match="batch"):
        model(data_times, data_values, symbol_ids, query_times=torch.ones(2), target_ids=torch.zeros(2, 4).long())
    with pytest.raises(InputError, match="symbol_ids are required"):
        model(data_times, data_values, query_times=torch.ones(2))


def test_config_rejects_bad_combinations():
    with pytest.raises(ConfigError, match="not divisible"):
        ProseConfig(hidden=65, heads=4)
    with pytest.raises(ConfigError, match="must differ"):
        ProseConfig(bos_id=2)
    with pytest.raises(ConfigError, match="positive integer"):
        ProseConfig(fusion_layers=0)
    from workbench.config import from_dict

    with pytest.raises(ConfigError, match="dropout"):
        from_dict(ProseConfig, {"dropout": 1.5})


# --- parameter count -----------------------------------------------------------------------------
def test_paper_preset_parameter_count():
    # The meta device builds the 104 M-parameter model without allocating or initialising it.
    with torch.device("meta"):
        counts = count_parameters(ProseModel(ProseConfig.paper(vocab_size=1072)))
        ours = count_parameters(ProseModel(ProseConfig.paper(vocab_size=VOCAB.size)))
        data_only = count_parameters(ProseModel(ProseConfig.paper(vocab_size=1072, data_only=True)))
    # Per block, from the official code's layer shapes at d 512 and its 1 072-word vocabulary.
    table = {
        "data_embedder": 0.27e6,
        "data_encoder": 6.3e6,
        "symbol_encoder": 13.2e6,
        "fusion": 25.2e6,
        "data_decoder": 25.2e6,
        "symbol_decoder": 34.2e6,
    }
    for block, published in table.items():
        assert abs(counts[block] - published) <= 0.05e6, (block, counts[block])  # table rounds to 0.1 M
    assert abs(counts["total"] - 104e6) <= 0.5e6, counts["total"]
    # Exactly, with the official layer_norm_emb of the data encoder (embedder output) and of the
    # data decoder (query embedding): 2 x 2 x 512 parameters more than without them.
    assert counts == {"data_embedder": 265_216, "data_encoder": 6_305_792, "symbol_encoder": 13_159_424,
                      "fusion": 25_221_120, "data_decoder": 25_222_659, "symbol_decoder": 34_183_216,
                      "total": 104_357_427}  # fmt: skip
    # The official --no_text ablation: embedder, data encoder and data decoder only (31.8 M).
    assert data_only == {"data_embedder": 265_216, "data_encoder": 6_305_792, "symbol_encoder": 0, "fusion": 0,
                         "data_decoder": 25_222_659, "symbol_decoder": 0, "total": 31_793_667}  # fmt: skip
    # Our vocabulary (1 041 words for d_max 3, without the reference's unused operators) changes only
    # the two embeddings (symbol encoder, tied symbol decoder) and the output bias.
    assert counts["total"] - ours["total"] == (1072 - VOCAB.size) * (2 * 512 + 1)
