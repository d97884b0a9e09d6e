"""Parameter/FLOP conventions against Porian et al.'s published shapes (their repository's
`architectures.csv`, bundled as the `porian-architectures` dataset)."""

import numpy as np
import pandas as pd
import pytest

from scaling import conventions
from scaling.conventions import CONVENTIONS, check_convention, flops_per_token, param_count, porian_budgets, swiglu_ffn
from scaling.datasets import load_dataset
from workbench.errors import InputError

VOCAB, SEQ_LEN = 50432, 2048  # Porian's OpenLM setup


@pytest.fixture(scope="module")
def shapes() -> pd.DataFrame:
    return load_dataset("porian-architectures")


def _porian(convention, shapes, **extra):
    return param_count(
        convention,
        width=shapes["width"].to_numpy(),
        depth=shapes["depth"].to_numpy(),
        vocab=VOCAB,
        seq_len=SEQ_LEN,
        **extra,
    )


def test_swiglu_ffn_matches_all_16_shapes(shapes):
    np.testing.assert_array_equal(swiglu_ffn(shapes["width"].to_numpy()), shapes["d_ff"])


@pytest.mark.parametrize(
    ("convention", "column"),
    [("kaplan", "N_kaplan_no_embed_no_head"), ("standard", "N_standard"), ("attention", "N_eff_with_attention")],
)
def test_param_count_reproduces_architectures_exactly(shapes, convention, column):
    # Integers below 2**53 are exact in float64, so equality (not a tolerance) is the right check.
    np.testing.assert_array_equal(_porian(convention, shapes), shapes[column])
    np.testing.assert_array_equal(_porian(convention, shapes, d_ff=shapes["d_ff"].to_numpy()), shapes[column])


@pytest.mark.parametrize(
    ("convention", "column"),
    [
        ("kaplan", "flops_per_token_kaplan"),
        ("standard", "flops_per_token_standard"),
        ("attention", "flops_per_token_attention"),
    ],
)
def test_flops_per_token_reproduces_architectures_exactly(shapes, convention, column):
    flops = flops_per_token(
        convention, width=shapes["width"].to_numpy(), depth=shapes["depth"].to_numpy(), vocab=VOCAB, seq_len=SEQ_LEN
    )
    np.testing.assert_array_equal(flops, shapes[column])


def test_smallest_shape_worked_example():
    kw = dict(width=96, depth=3, vocab=VOCAB, seq_len=SEQ_LEN)
    assert param_count("standard", **kw) == 5_173_248
    assert param_count("kaplan", **kw) == 331_776
    assert param_count("attention", **kw) == 5_763_072
    assert np.ndim(param_count("standard", **kw)) == 0  # scalars in, scalar out


def test_plain_mlp_is_kaplan_eq_2_1():
    # Kaplan Eq. 2.1: N = 12·L·d² for d_ff = 4d with a two-matrix MLP.
    width, depth = 512, 6
    n = param_count("kaplan", width=width, depth=depth, ffn="mlp")
    assert n == 12 * depth * width**2


def _chinchilla_70b(convention, **extra):
    # Hoffmann et al. Table 4: d_model 8192, 80 layers, 64 heads, d_ff = 4·d_model; vocab 32k.
    return param_count(convention, width=8192, depth=80, vocab=32_000, seq_len=2048, ffn="mlp", **extra)


def test_chinchilla_decomposes_into_standard_plus_embedding_and_attention():
    # Appendix F per token, x3 for training, /6: the head and the one-hot input embedding each
    # count V·d, the two S² matmuls 2·S·d per layer and the softmax 1.5·h·S per layer.
    width, depth, vocab, seq_len, heads = 1024, 23, VOCAB, SEQ_LEN, 16
    n_eff = param_count("chinchilla", width=width, depth=depth, vocab=vocab, seq_len=seq_len, n_heads=heads)
    n_standard = param_count("standard", width=width, depth=depth, vocab=vocab)
    expected = n_standard + vocab * width + 2 * seq_len * width * depth + 1.5 * heads * seq_len * depth
    assert n_eff == pytest.approx(expected, rel=1e-12)  # same sum, different float order


def test_chinchilla_is_close_to_6n_plus_attention_for_a_big_model():
    n_eff = _chinchilla_70b("chinchilla", n_heads=64)
    n_total = _chinchilla_70b("standard") + 32_000 * 8192  # with input embedding
    approx = n_total + 2048 * 8192 * 80  # Kaplan Eq. 2.2 / Porian attention term
    # 3 %: App. F also counts the second S² matmul (softmax @ values), an extra S/(12·d) = 2.1 %
    # of N at d = 8192, S = 2048; the softmax term adds < 0.01 %.
    assert n_eff == pytest.approx(approx, rel=0.03)
    assert n_eff > _chinchilla_70b("kaplan")
    assert n_eff > _chinchilla_70b("attention")


def test_chinchilla_default_heads_barely_matter():
    # The softmax term is tiny, so the head-size default (64) is a harmless choice.
    default = _chinchilla_70b("chinchilla")
    explicit = _chinchilla_70b("chinchilla", n_heads=64)
    assert default == pytest.approx(explicit, rel=1e-3)


def test_vectorised_over_arrays():
    widths = np.array([96, 128, 160])
    n = param_count("standard", width=widths, depth=np.array([3, 4, 5]), vocab=VOCAB)
    assert n.shape == (3,)
    assert np.all(np.diff(n) > 0)


def test_porian_budgets():
    budgets = porian_budgets()
    assert len(budgets) == 12
    assert budgets[0] == pytest.approx(1.25e16, rel=1e-15)
    assert budgets[-1] == pytest.approx(2.56e19, rel=1e-15)
    np.testing.assert_allclose(budgets[1:] / budgets[:-1], 2.0)


def test_check_convention_lists_valid_names():
    assert check_convention("standard") == "standard"
    with pytest.raises(InputError) as info:
        check_convention("kaplan2020")
    for name in CONVENTIONS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("convention", "kwargs", "missing"),
    [
        ("attention", dict(vocab=VOCAB), "seq_len"),
        ("standard", dict(seq_len=SEQ_LEN), "vocab"),
        ("chinchilla", dict(), "vocab, seq_len"),
    ],
)
def test_missing_arguments_are_named(convention, kwargs, missing):
    with pytest.raises(InputError, match=missing):
        param_count(convention, width=96, depth=3, **kwargs)


def test_bad_sizes_are_named():
    with pytest.raises(InputError, match="depth"):
        param_count("kaplan", width=96, depth=0)
    with pytest.raises(InputError, match="width"):
        param_count("kaplan", width=np.array([96, np.nan]), depth=3)
    with pytest.raises(InputError, match="ffn"):
        param_count("kaplan", width=96, depth=3, ffn="geglu")


def test_required_arguments():
    assert conventions.required_arguments("kaplan") == ()
    assert conventions.required_arguments("attention") == ("vocab", "seq_len")
