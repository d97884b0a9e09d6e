"""PROSE symbolic encoding: tokens, floats, skeletons, corruption, decoding, against the official PROSE
encoder (github.com/felix-lyx/prose, prose_ode/symbolicregression/envs/encoders.py)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import sympy

from operators.prose.tokens import (
    BINARY,
    EXPONENTS,
    FLOAT_WORDS,
    PLACEHOLDER,
    SIGNS,
    UNARY,
    Decoded,
    Vocabulary,
    additive_terms,
    candidate_monomials,
    corrupt,
    decode_float,
    detokenize,
    encode_float,
    round_sig,
    skeletonize,
    tokenize,
)
from workbench.errors import InputError

U = sympy.symbols("u_0:5")
u0, u1, u2, u3, u4 = U


def _sum(*terms):
    """A sum kept in the written order, as the reference's trees are."""
    return sympy.Add(*terms, evaluate=False)


def _lorenz(sigma, rho, beta):
    return [_sum(sigma * u1, -sigma * u0), _sum(rho * u0, -u0 * u2, -u1), _sum(u0 * u1, -beta * u2)]


LORENZ_TOKENS = (  # the official encoder's Lorenz target (a sampled draw: rho 30.6, beta 2.74)
    "add mul + N100 E-1 u_1 mul - N100 E-1 u_0 | sub sub mul + N306 E-1 u_0 mul u_0 u_2 u_1 "
    "| add mul u_0 u_1 mul - N274 E-2 u_2"
)
LORENZ_SKELETON = (
    "add mul <PLACEHOLDER> u_1 mul <PLACEHOLDER> u_0 | sub sub mul <PLACEHOLDER> u_0 mul u_0 u_2 u_1 "
    "| add mul u_0 u_1 mul <PLACEHOLDER> u_2"
)


def _evaluate(expr, point):
    """Float value of an expression at u = point, walking the tree (lambdify's codegen is slow)."""
    if expr.is_Symbol:
        return point[int(expr.name[2:])]
    if expr.is_number:
        return float(expr)
    args = [_evaluate(arg, point) for arg in expr.args]
    if expr.is_Add:
        return math.fsum(args)
    if expr.is_Mul:
        return math.prod(args)
    if expr.is_Pow:
        return args[0] ** args[1]
    return {sympy.sin: math.sin, sympy.cos: math.cos}[expr.func](*args)


def _assert_same_function(got, want, rng, n_points=3):
    """Equal as functions: 1e-9 of the summed term magnitudes (round-off of reordered sums only)."""
    assert len(got) == len(want)
    for p in rng.uniform(-2.0, 2.0, size=(n_points, 5)):
        for a, b in zip(got, want):
            scale = 1.0 + sum(abs(_evaluate(t, p)) for t in additive_terms(b))
            assert abs(_evaluate(a, p) - _evaluate(b, p)) <= 1e-9 * scale, (a, b, p)


# --- the official Lorenz example ----------------------------------------------------------------
def test_lorenz_example_is_33_tokens_with_a_25_token_skeleton():
    exprs = _lorenz(10, 30.6, 2.74)
    tokens = tokenize(exprs)
    assert " ".join(tokens) == LORENZ_TOKENS
    assert len(tokens) == 33
    skeleton = tokenize(exprs, skeleton=True)
    assert " ".join(skeleton) == LORENZ_SKELETON
    assert len(skeleton) == 25
    assert skeletonize(tokens) == skeleton
    decoded = detokenize(LORENZ_TOKENS.split())
    assert decoded.valid, decoded.error
    _assert_same_function(decoded.exprs, exprs, np.random.default_rng(0))


def test_lorenz_nominal_parameters_encode_28_and_8_over_3():
    exprs = _lorenz(10, 28, sympy.Rational(8, 3))
    tokens = tokenize(exprs)
    assert " ".join(tokens) == LORENZ_TOKENS.replace("N306 E-1", "N280 E-1").replace("N274", "N267")
    assert len(tokens) == 33 and len(tokenize(exprs, skeleton=True)) == 25
    decoded = detokenize(tokens)
    assert decoded.valid, decoded.error
    _assert_same_function(decoded.exprs, [round_sig(e) for e in exprs], np.random.default_rng(1))


def test_lorenz_in_sympy_canonical_order():
    # Evaluated sympy sums are written in sympy's args order (documented deviation): the
    # leading -u_1 becomes `neg`, so the second tree gains one token (34 in all, skeleton 26).
    exprs = [10 * (u1 - u0), 28 * u0 - u0 * u2 - u1, u0 * u1 - sympy.Rational(8, 3) * u2]
    tokens = tokenize(exprs)
    assert " ".join(tokens) == (
        "add mul - N100 E-1 u_0 mul + N100 E-1 u_1 | sub add neg u_1 mul + N280 E-1 u_0 mul u_0 u_2 "
        "| add mul - N267 E-2 u_2 mul u_0 u_1"
    )
    assert len(tokenize(exprs, skeleton=True)) == 26
    decoded = detokenize(tokens)
    assert decoded.valid, decoded.error
    _assert_same_function(decoded.exprs, [round_sig(e) for e in exprs], np.random.default_rng(2))


def test_sub_and_neg_for_unit_coefficients():
    # Deleting the leading term of `sub sub a b c` leaves `sub neg b c`.
    assert tokenize([_sum(-u0 * u2, -u1)]) == "sub neg mul u_0 u_2 u_1".split()
    assert tokenize([-u0]) == ["neg", "u_0"]
    assert tokenize([sympy.Integer(-1)]) == ["-", "N100", "E-2"]  # a constant stays a float
    assert tokenize([sympy.Float(-1.0) * u0]) == "mul - N100 E-2 u_0".split()


# --- floats ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        (0.17, "+ N170 E-3"),
        (-28, "- N280 E-1"),
        (8 / 3, "+ N267 E-2"),
        (3.0, "+ N300 E-2"),
        (0.0, "+ N000 E-2"),
        (999.5, "+ N100 E1"),  # rounding carries into the exponent
        (999.4, "+ N999 E0"),
        (-0.0995, "- N995 E-4"),
        (1.234e-8, "+ N123 E-10"),  # smallest exponent still written
        (1e-12, "+ N000 E0"),  # exponent below -10: zero, as the official encoder
        (-3e-11, "- N000 E0"),
        (9.99e12, "+ N999 E10"),
    ],
)
def test_encode_float(value, tokens):
    assert encode_float(value) == tokens.split()
    expected = float(f"{value:.2e}") if abs(value) >= 1e-8 else 0.0
    assert decode_float(tokens.split()) == expected


@pytest.mark.parametrize("value", [9.995e12, -1e20, math.inf, -math.inf, math.nan])
def test_encode_float_rejects_unwritable_values(value):
    with pytest.raises(InputError):
        encode_float(value)


def test_decode_float_rejects_non_floats():
    for bad in (["+", "N12", "E0"], ["+", "N120"], ["*", "N120", "E0"], ["+", "N120", "E11"]):
        with pytest.raises(InputError):
            decode_float(bad)


def test_every_float_word_round_trips_through_the_codec():
    # Each mantissa/exponent pair decodes to a value whose re-encoding is itself (when normalised).
    rng = np.random.default_rng(3)
    for _ in range(2000):
        mantissa, exponent = int(rng.integers(100, 1000)), int(rng.integers(-10, 11))
        sign = SIGNS[int(rng.integers(2))]
        tokens = [sign, f"N{mantissa:03d}", f"E{exponent}"]
        assert encode_float(decode_float(tokens)) == tokens


# --- round trips -------------------------------------------------------------------------------
def _coefficient(rng):
    if rng.random() < 0.1:
        return sympy.Integer(int(rng.choice([-1, 1])))  # unit coefficients: sub/neg paths
    if rng.random() < 0.1:
        return sympy.Rational(int(rng.integers(-9, 10)) or 1, int(rng.integers(2, 8)))
    magnitude = 10.0 ** rng.uniform(-3.0, 3.0)
    return sympy.Float(magnitude if rng.random() < 0.5 else -magnitude)


def _random_term(rng, d):
    u = U[:d]
    kind = rng.integers(6)
    if kind == 0:
        return _coefficient(rng)
    if kind <= 2:  # monomial of degree 1..3
        degree = int(rng.integers(1, 4))
        return _coefficient(rng) * sympy.Mul(*(u[int(i)] for i in rng.integers(d, size=degree)))
    if kind == 3:
        trig = sympy.sin if rng.random() < 0.5 else sympy.cos
        argument = u[int(rng.integers(d))]
        if rng.random() < 0.3:
            argument = _coefficient(rng) * argument + u[int(rng.integers(d))]
        return _coefficient(rng) * trig(argument)
    if kind == 4:  # product of a variable and a trig factor
        return _coefficient(rng) * u[int(rng.integers(d))] * sympy.cos(u[int(rng.integers(d))])
    # a quotient, as in the double pendulum
    return _coefficient(rng) * u[int(rng.integers(d))] / (3 + u[int(rng.integers(d))] ** 2)


def _random_system(rng):
    d = int(rng.integers(3, 6))
    return [sympy.Add(*(_random_term(rng, d) for _ in range(rng.integers(1, 5)))) for _ in range(d)]


def test_round_trip_on_random_family_like_systems():
    rng = np.random.default_rng(4)
    vocabulary = Vocabulary()
    n_components = 0
    for _ in range(300):  # 300 systems of 3..5 components: > 1 000 expressions
        exprs = _random_system(rng)
        n_components += len(exprs)
        tokens = tokenize(exprs)
        assert vocabulary.decode(vocabulary.encode(tokens)) == tokens
        decoded = detokenize(tokens)
        assert decoded.valid, (exprs, decoded.error)
        assert decoded.exprs is not None
        _assert_same_function(decoded.exprs, [round_sig(e) for e in exprs], rng, n_points=2)
        skeleton = tokenize(exprs, skeleton=True)
        assert len(tokens) - len(skeleton) == 2 * skeleton.count(PLACEHOLDER)
        assert not set(skeleton) & set(FLOAT_WORDS)
    assert n_components >= 1000


def test_round_trip_on_1000_sampled_family_systems():
    """Round trip on the real generators: parameters drawn as for the dataset (operators.odes),
    every family, 1,050 systems; tokens -> sympy equals the 3-significant-digit target."""
    from operators.odes import FAMILIES

    rng = np.random.default_rng(11)
    n = 0
    for family in FAMILIES.values():
        for _ in range(70):
            exprs = family.expressions(family.sample_params(rng))
            decoded = detokenize(tokenize(exprs), dim=family.dim)
            assert decoded.valid, (family.name, decoded.error)
            _assert_same_function(decoded.exprs, [round_sig(e) for e in exprs], rng, n_points=2)
            n += 1
    assert n >= 1000


def test_round_trip_on_hand_written_families():
    # Families with pow3, div, cos, a constant component and nested trig (the official generator's equations).
    a, b, g = 0.95, 0.7, 9.81
    delta = u0 - u1
    systems = {
        "aizawa": [
            (u2 - b) * u0 - 3.5 * u1,
            3.5 * u0 + (u2 - b) * u1,
            0.6 + a * u2 - u2**3 / 3 - u0**2 + 0.1 * u2 * u0**3,
        ],
        "duffing": [sympy.Float(1.0), u2, -0.02 * u2 - u1 - 5 * u1**3 + 8 * sympy.cos(0.5 * u0)],
        "double_pendulum": [
            u2,
            u3,
            (
                -3 * g * sympy.sin(u0)
                - g * sympy.sin(u0 - 2 * u1)
                - 2 * sympy.sin(delta) * (u3**2 + u2**2 * sympy.cos(delta))
            )
            / (3 - sympy.cos(2 * delta)),
            sympy.sin(delta)
            * (4 * u2**2 + 4 * g * sympy.cos(u0) + u3**2 * sympy.cos(delta))
            / (3 - sympy.cos(2 * delta)),
        ],
        "halvorsen": [
            -0.35 * u0 - 4 * u1 - 4 * u2 - u1**2,
            -0.35 * u1 - 4 * u2 - 4 * u0 - u2**2,
            -0.35 * u2 - 4 * u0 - 4 * u1 - u0**2,
        ],
        "lorenz_96_5d": [(U[(i + 1) % 5] - U[(i - 2) % 5]) * U[(i - 1) % 5] - U[i] + 8 for i in range(5)],
        "powers": [u0**4 + u1**5 + u2**6 / u0**2 + 1 / u1 + sympy.pi * u0 / 7],
    }
    rng = np.random.default_rng(5)
    for name, exprs in systems.items():
        tokens = tokenize(exprs)
        assert "pow3" in tokens or name not in ("aizawa", "duffing")
        assert "div" in tokens or name != "double_pendulum"
        decoded = detokenize(tokens)
        assert decoded.valid, (name, decoded.error)
        _assert_same_function(decoded.exprs, [round_sig(e) for e in exprs], rng, n_points=5)


def test_round_sig_rounds_numbers_not_powers():
    assert round_sig(1234.5 * u0**3) == sympy.Float("1.23e3") * u0**3
    assert round_sig(sympy.Rational(8, 3) * u0) == sympy.Float("2.67") * u0
    assert round_sig(sympy.sin(0.123456 * u1)) == sympy.sin(sympy.Float("0.123") * u1)


@pytest.mark.parametrize(
    "exprs", [[sympy.exp(u0)], [sympy.sqrt(u0)], [sympy.Symbol("x")], [u4 * 1e13], [sympy.I * u0], [], "u_0"]
)
def test_tokenize_rejects_what_the_vocabulary_cannot_write(exprs):
    with pytest.raises(InputError):
        tokenize(exprs)


def test_tokenize_rejects_variables_beyond_max_dim():
    with pytest.raises(InputError, match="u_3"):
        tokenize([u3], max_dim=3)


# --- corruption --------------------------------------------------------------------------------
def _check_corruption(before, after, record, dim):
    counts_before = [len(additive_terms(e)) for e in before]
    counts_after = [len(additive_terms(e)) for e in after]
    others = [i for i in range(len(before)) if i != record.component]
    if record.kind == "none":
        assert after == before
        return
    assert all(after[i] == before[i] for i in others)
    k = record.component
    if record.kind == "add":
        assert counts_after[k] == counts_before[k] + 1
        assert additive_terms(after[k])[record.position] == record.term
        coefficient, shape = record.term.as_coeff_Mul()
        assert coefficient.is_Float and coefficient != 0
        assert shape in candidate_monomials(dim)
    else:
        assert record.kind == "delete"
        assert counts_before[k] >= 2
        assert counts_after[k] == counts_before[k] - 1
        remaining = Counter(additive_terms(before[k]))
        remaining[record.term] -= 1
        assert +remaining == Counter(additive_terms(after[k]))


def test_corruption_changes_exactly_one_term():
    rng = np.random.default_rng(6)
    systems = [
        _lorenz(10, 28, sympy.Rational(8, 3)),
        [sympy.Float(1.0), u2, -0.02 * u2 - u1 - 5 * u1**3 + 8 * sympy.cos(0.5 * u0)],  # Duffing
        [u1 + u2, -u0 + 0.5 * u1, u0**2 - u2],  # Sprott-Linz F
    ]
    kinds = Counter()
    for draw in range(1500):
        exprs = systems[draw % len(systems)]
        after, record = corrupt(exprs, rng, add_prob=0.3, miss_prob=0.3)
        _check_corruption(exprs, after, record, dim=3)
        kinds[record.kind] += 1
        # The corrupted input is still writable and its skeleton decodes structurally.
        assert detokenize(tokenize(after)).valid
    assert min(kinds.values()) > 300, kinds


def test_corruption_never_deletes_from_single_term_components():
    rng = np.random.default_rng(7)
    exprs = [u1, 0.5 * u0 * u2, sympy.Float(1.0)]
    for _ in range(300):
        after, record = corrupt(exprs, rng, add_prob=0.0, miss_prob=1.0)
        assert record.kind == "none" and after == exprs


def test_corruption_rates_and_term_shapes():
    # The official rates (--add_term_prob/--miss_term_prob 0.15) to +- 0.01 over 1e4 samples
    # (binomial sd 0.0036, so ~2.8 sd).
    rng = np.random.default_rng(42)
    exprs = _lorenz(10, 28, sympy.Rational(8, 3))
    kinds, shapes = Counter(), Counter()
    n = 10_000
    for _ in range(n):
        _, record = corrupt(exprs, rng)
        kinds[record.kind] += 1
        if record.kind == "add":
            shapes[record.term.as_coeff_Mul()[1]] += 1
    assert abs(kinds["add"] / n - 0.15) < 0.01, kinds
    assert abs(kinds["delete"] / n - 0.15) < 0.01, kinds
    assert abs(kinds["none"] / n - 0.70) < 0.015, kinds
    assert set(shapes) == set(candidate_monomials(3)) and len(shapes) == 10  # uniform over 10 shapes
    assert max(shapes.values()) < 2 * min(shapes.values())


@pytest.mark.parametrize(
    "kwargs", [dict(add_prob=-0.1), dict(miss_prob=1.5), dict(add_prob=0.6, miss_prob=0.6), dict(dim=0)]
)
def test_corruption_rejects_bad_arguments(kwargs):
    with pytest.raises(InputError):
        corrupt([u0], np.random.default_rng(0), **kwargs)


# --- decoding never raises ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "tokens",
    [
        ["add", "u_0"],
        ["mul"],
        ["u_9"],
        ["+", "N12", "E0"],
        ["foo"],
        [],
        ["|"],
        ["u_0", "|"],
        ["|", "u_0"],
        ["u_0", "|", "|", "u_1"],
        ["u_0", "u_1"],
        ["+", "N100"],
        ["N100", "E0"],
        ["+", "N100", "E11"],
        ["<PLACEHOLDER>"],
        ["add", "u_0", "<PAD>"],
        ["<BOS>"],
        ["<EOS>", "u_0"],
        ["inv", "+", "N000", "E-2"],
        ["div", "u_0", "sub", "u_1", "u_1"],
        ["pow3", "pow3", "pow3", "pow3", "+", "N999", "E10"],  # overflows float64
        ["sin", "pow3", "pow3", "pow3", "pow3", "pow3", "pow3", "pow3", "pow3", "+", "N999", "E10"],
        [1, 2],
        None,
        7,
        ["u_0", None],
        ["u_0", 3.5],
    ],
)
def test_malformed_sequences_decode_to_invalid(tokens):
    decoded = detokenize(tokens)
    assert isinstance(decoded, Decoded)
    assert not decoded.valid and decoded.exprs is None and decoded.error


def test_model_output_framing_and_dim_check():
    body = LORENZ_TOKENS.split()
    assert detokenize(["<BOS>", *body, "<EOS>", "<PAD>", "junk"]).valid
    assert detokenize([*body, "<PAD>", "<PAD>"]).valid  # batch padding
    assert not detokenize(["<PAD>", *body]).valid
    assert detokenize(["div", "+", "N100", "E0", "+", "N000", "E0"]).error == "division by zero"
    assert detokenize(body, dim=3).valid
    assert not detokenize(body, dim=4).valid
    assert "u_2" in detokenize(body, dim=2).error  # the variable is named


def test_every_truncation_and_extension_of_a_valid_sequence_is_invalid():
    body = LORENZ_TOKENS.split()
    for cut in range(1, len(body)):
        prefix = body[:cut]
        decoded = detokenize(prefix)
        # A prefix is valid only if it ends exactly after a whole component tree.
        complete = cut in (11, 23)
        assert decoded.valid == complete, (prefix, decoded.error)
    for extra in (["u_0"], ["add"], ["+", "N100", "E0"], ["|"]):
        assert not detokenize(body + extra).valid


def test_random_token_soups_never_raise():
    vocabulary = Vocabulary()
    rng = np.random.default_rng(8)
    structural = ["|", *BINARY, *UNARY, "u_0", "u_1", "u_2", "u_3", "u_4"]
    n_valid, n = 0, 3000
    for draw in range(n):
        length = int(rng.integers(1, 30))
        if draw % 2:  # uniform over the whole vocabulary, specials included
            tokens = vocabulary.decode(rng.integers(len(vocabulary), size=length).tolist())
        else:  # structure-heavy: operators, variables and whole floats, so trees get deep
            tokens = []
            for _ in range(length):
                if rng.random() < 0.02:  # a stray exponent word
                    tokens.append(str(rng.choice(EXPONENTS)))
                elif rng.random() < 0.2:  # a whole float, tiny to huge
                    tokens += encode_float(rng.normal() * 10.0 ** rng.integers(-12, 12))
                else:
                    tokens.append(str(rng.choice(structural)))
        decoded = detokenize(tokens)
        assert isinstance(decoded, Decoded)
        if decoded.valid:
            n_valid += 1
            assert decoded.error == "" and len(decoded.exprs) == tokens.count("|") + 1
            assert not any(e.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) for e in decoded.exprs)
        else:
            assert decoded.exprs is None and decoded.error
    assert n_valid < n // 10  # soups are almost never trees


def test_deep_outputs_do_not_crash():
    assert detokenize(["neg"] * 5000 + ["u_0"]).valid
    assert not detokenize(["sin"] * 5000).valid


# --- vocabulary --------------------------------------------------------------------------------
def test_vocabulary_layout_and_round_trip():
    vocabulary = Vocabulary()
    # 4 specials + '|' + 10 operators + 5 variables + 1 023 float words (official code: 1 074 at d_max 5)
    assert len(vocabulary) == vocabulary.size == 4 + 1 + 10 + 5 + 1023 == 1043
    assert len(Vocabulary(max_dim=3)) == 1041
    assert len(set(vocabulary.words)) == len(vocabulary)
    ids = list(range(len(vocabulary)))
    assert vocabulary.encode(vocabulary.decode(ids)) == ids
    specials = [vocabulary.pad_id, vocabulary.bos_id, vocabulary.eos_id, vocabulary.placeholder_id]
    assert vocabulary.decode(specials) == ["<PAD>", "<BOS>", "<EOS>", "<PLACEHOLDER>"]
    tokens = LORENZ_TOKENS.split()
    assert vocabulary.decode(vocabulary.encode(tokens)) == tokens


@pytest.mark.parametrize("token", ["foo", "u_5", "N12", "E11", "", 3])
def test_unknown_token_is_an_input_error(token):
    with pytest.raises(InputError, match="position 1"):
        Vocabulary().encode(["u_0", token])


@pytest.mark.parametrize("index", [-1, 1043, 2.0, True])
def test_bad_id_is_an_input_error(index):
    with pytest.raises(InputError, match="position 0"):
        Vocabulary().decode([index])


# --- the families' targets: PROSE's expanded sums of terms ----------------------------------------
# Per component, the terms of the official target without their coefficients, in the official
# order: prose_ode/symbolicregression/envs/generators.py, `generate_<family>` (the `term_list`
# of each tree; the double pendulum's are the terms of its numerators' sums, which
# `double_pendulum_additional_term` / `double_pendulum_missing_term` corrupt). At nominal parameters.
OFFICIAL_TERMS = {
    "thomas": [["sin(u_1)", "u_0"], ["sin(u_2)", "u_1"], ["sin(u_0)", "u_2"]],
    "lorenz_3d": [["u_1", "u_0"], ["u_0", "u_0*u_2", "u_1"], ["u_0*u_1", "u_2"]],
    "aizawa": [["u_0*u_2", "u_0", "u_1"], ["u_0", "u_1*u_2", "u_1"], ["1", "u_2", "u_2**3", "u_0**2", "u_0**3*u_2"]],
    "chen_lee": [["u_0", "u_1*u_2"], ["u_1", "u_0*u_2"], ["u_2", "u_0*u_1"]],
    "dadras": [["u_1", "u_0", "u_1*u_2"], ["u_1", "u_0*u_2", "u_2"], ["u_0*u_1", "u_2"]],
    "rossler": [["u_1", "u_2"], ["u_0", "u_1"], ["1", "u_0*u_2", "u_2"]],
    "halvorsen": [["u_0", "u_1", "u_2", "u_1**2"], ["u_1", "u_2", "u_0", "u_2**2"], ["u_2", "u_0", "u_1", "u_0**2"]],
    "fabrikant": [["u_1*u_2", "u_1", "u_0**2*u_1", "u_0"], ["u_0*u_2", "u_0", "u_0**3", "u_1"], ["u_2", "u_0*u_1*u_2"]],
    "sprott_B": [["u_1*u_2"], ["u_0", "u_1"], ["1", "u_0*u_1"]],
    "sprott_linz_F": [["u_1", "u_2"], ["u_1", "u_0"], ["u_0**2", "u_2"]],
    "four_wing": [["u_0", "u_1*u_2"], ["u_0", "u_1", "u_0*u_2"], ["u_2", "u_0*u_1"]],
    "lorenz_96_4d": [
        ["u_1*u_3", "u_2*u_3", "u_0", "1"],
        ["u_0*u_2", "u_0*u_3", "u_1", "1"],
        ["u_1*u_3", "u_0*u_1", "u_2", "1"],
        ["u_0*u_2", "u_1*u_2", "u_3", "1"],
    ],
    "lorenz_96_5d": [
        ["u_1*u_4", "u_3*u_4", "u_0", "1"],
        ["u_0*u_2", "u_0*u_4", "u_1", "1"],
        ["u_1*u_3", "u_0*u_1", "u_2", "1"],
        ["u_2*u_4", "u_1*u_2", "u_3", "1"],
        ["u_0*u_3", "u_2*u_3", "u_4", "1"],
    ],
    "duffing": [["1"], ["u_2"], ["u_2", "u_1", "u_1**3", "cos(0.5*u_0)"]],
    "double_pendulum": [
        ["u_2"],
        ["u_3"],
        ["sin(u_0)", "sin(u_0 - 2*u_1)", "(u_3**2 + u_2**2*cos(u_0 - u_1))*sin(u_0 - u_1)"],
        ["u_2**2", "cos(u_0)", "u_3**2*cos(u_0 - u_1)"],
    ],
}
# Terms per component (the lengths of the lists above). Before the expanded targets, 7 families had
# fewer: lorenz_3d [2, 2, 2], aizawa [2, 2, 5], rossler [2, 2, 2], fabrikant [2, 2, 1], lorenz_96 3
# each, double_pendulum [1, 1, 1, 1] (each quotient one term, so nothing could be deleted).
TERM_COUNTS = {
    "thomas": [2, 2, 2],
    "lorenz_3d": [2, 3, 2],
    "aizawa": [3, 3, 5],
    "chen_lee": [2, 2, 2],
    "dadras": [3, 3, 2],
    "rossler": [2, 2, 3],
    "halvorsen": [4, 4, 4],
    "fabrikant": [4, 4, 2],
    "sprott_B": [1, 2, 2],
    "sprott_linz_F": [2, 2, 2],
    "four_wing": [2, 3, 2],
    "lorenz_96_4d": [4, 4, 4, 4],
    "lorenz_96_5d": [4, 4, 4, 4, 4],
    "duffing": [1, 1, 4],
    "double_pendulum": [1, 1, 3, 3],
}


def _families():
    from operators.odes import FAMILIES

    return FAMILIES


def test_official_term_tables_agree():
    from operators.odes import FAMILIES

    assert set(OFFICIAL_TERMS) == set(TERM_COUNTS) == set(FAMILIES)
    assert all([len(c) for c in OFFICIAL_TERMS[name]] == TERM_COUNTS[name] for name in TERM_COUNTS)


@pytest.mark.parametrize("name", list(OFFICIAL_TERMS))
def test_family_target_is_the_official_expanded_sum_of_terms(name):
    from operators.prose.skeleton import component_terms

    family = _families()[name]
    exprs = family.expressions(family.nominal)
    terms = [additive_terms(e) for e in exprs]
    assert [len(c) for c in terms] == TERM_COUNTS[name]
    # In the official order, term by term (coefficients aside).
    got = [[term.as_coeff_Mul()[1] for term in component] for component in terms]
    assert got == [[sympy.sympify(t) for t in component] for component in OFFICIAL_TERMS[name]]
    # The token lists have the same terms: what the training-time corruption adds to or deletes from.
    for params in (family.nominal, family.sample_params(np.random.default_rng(0))):
        tokens = tokenize(family.expressions(params))
        assert [len(c) for c in component_terms(tokens)] == TERM_COUNTS[name]
        assert [len(c) for c in component_terms(skeletonize(tokens))] == TERM_COUNTS[name]


def test_lorenz_family_target_is_the_official_33_tokens():
    family = _families()["lorenz_3d"]
    tokens = tokenize(family.expressions([10.0, 30.6, 2.74]))
    assert " ".join(tokens) == LORENZ_TOKENS and len(tokens) == 33  # was 32: x(rho - z) - y factored
    assert " ".join(tokenize(family.expressions([10.0, 30.6, 2.74]), skeleton=True)) == LORENZ_SKELETON
    for seed in range(5):
        exprs = family.expressions(family.sample_params(np.random.default_rng(seed)))
        assert len(tokenize(exprs)) == 33 and len(tokenize(exprs, skeleton=True)) == 25  # was 24


def test_double_pendulum_corruption_keeps_the_quotient():
    # Terms are added to and deleted from the numerators' sums; the denominators stay.
    family = _families()["double_pendulum"]
    exprs = family.expressions(family.nominal)
    rng = np.random.default_rng(12)
    kinds = Counter()
    for _ in range(60):
        after, record = corrupt(exprs, rng, add_prob=0.5, miss_prob=0.5)
        kinds[record.kind] += 1
        _check_corruption(exprs, after, record, dim=4)
        assert record.component in (2, 3)  # u_2, u_3 (dθ/dt) are never corrupted, as in the official code
        den = sympy.fraction(exprs[record.component])[1]
        assert sympy.fraction(after[record.component])[1] == den
        assert detokenize(tokenize(after), dim=4).valid
    assert kinds["add"] > 15 and kinds["delete"] > 15


# --- corruption rates and placement on every family ----------------------------------------------
def _prepared(name):
    from operators.prose.skeleton import SkeletonCorruptor

    family = _families()[name]
    vocabulary = Vocabulary(max_dim=5)
    tokens = tokenize(family.expressions(family.sample_params(np.random.default_rng(1))))
    return family, vocabulary, SkeletonCorruptor(vocabulary).prepare(tokens)


@pytest.mark.parametrize("name", list(OFFICIAL_TERMS))
def test_corruption_rates_on_every_family(name):
    # --add_term_prob / --miss_term_prob 0.15 on every family (the double pendulum included, whose
    # numerator terms make deletions possible): 1e4 draws, binomial sd 0.0036 (add, delete), 0.0046 (none).
    from operators.prose.skeleton import SkeletonCorruptor

    family, vocabulary, terms = _prepared(name)
    corruptor = SkeletonCorruptor(vocabulary)
    rng = np.random.default_rng(100 + family.row)
    kinds = Counter(corruptor.corrupt(terms, rng, family.dim)[1] for _ in range(10_000))
    assert abs(kinds["add"] / 1e4 - 0.15) <= 0.01, kinds
    assert abs(kinds["delete"] / 1e4 - 0.15) <= 0.01, kinds
    assert abs(kinds["none"] / 1e4 - 0.70) <= 0.02, kinds


def _marked_corruptor(vocabulary, add_prob, miss_prob):
    """A SkeletonCorruptor whose every added term is ``inv u_0`` (no target has it), so an addition's
    (component, position) can be read off the result."""
    from operators.prose.skeleton import SkeletonCorruptor

    class Marked(SkeletonCorruptor):
        def shapes(self, dim):
            return [vocabulary.encode(["inv", "u_0"])]

    return Marked(vocabulary, add_prob, miss_prob)


def _located(corruptor, terms, rng, dim, n):
    """(kind, component, position) of n draws, read off the corrupted skeletons."""
    from operators.prose.skeleton import component_terms

    vocabulary = corruptor.vocabulary
    before = [[(sign, tuple(vocabulary.decode(body))) for sign, body in component] for component in terms]
    marker = ("inv", "u_0")
    out = Counter()
    for _ in range(n):
        ids, kind = corruptor.corrupt(terms, rng, dim)
        after = [[(sign, tuple(body)) for sign, body in c] for c in component_terms(vocabulary.decode(ids))]
        changed = [i for i, (b, a) in enumerate(zip(before, after)) if a != b]
        assert len(changed) == 1, (kind, after)
        (i,) = changed
        if kind == "add":
            positions = [j for j, (_, body) in enumerate(after[i]) if body == marker]
            assert len(positions) == 1 and len(after[i]) == len(before[i]) + 1
            out[("add", i, positions[0])] += 1
        else:
            assert kind == "delete"
            positions = [j for j in range(len(before[i])) if before[i][:j] + before[i][j + 1 :] == after[i]]
            assert len(positions) == 1, (before[i], after[i])  # the families' terms are distinct
            out[("delete", i, positions[0])] += 1
    return out


@pytest.mark.parametrize("name", list(OFFICIAL_TERMS))
def test_additions_are_uniform_over_component_position_pairs(name):
    # tree_with_additional_term: one draw over all (component, position) pairs, so a component
    # with n terms gets (n + 1) / sum(n_k + 1) of the additions (the double pendulum: its two
    # numerators only, 4 positions each).
    family, vocabulary, terms = _prepared(name)
    counts = TERM_COUNTS[name]
    components = [2, 3] if name == "double_pendulum" else range(len(counts))
    expected = [(i, j) for i in components for j in range(counts[i] + 1)]
    n = 300 * len(expected)
    located = _located(_marked_corruptor(vocabulary, 1.0, 0.0), terms, np.random.default_rng(7), family.dim, n)
    assert {(i, j) for _, i, j in located} == set(expected)
    # 300 expected per pair, sd ~17: +-90 is > 5 sd (a component-first draw misses by more on most families).
    assert all(abs(located[("add", i, j)] - 300) < 90 for i, j in expected), located
    for i in components:
        share = sum(located[("add", i, j)] for j in range(counts[i] + 1)) / n
        assert abs(share - (counts[i] + 1) / len(expected)) < 0.03, (i, share)


def test_aizawa_five_term_component_gets_six_fourteenths_of_the_additions():
    family, vocabulary, terms = _prepared("aizawa")
    n = 7000
    located = _located(_marked_corruptor(vocabulary, 1.0, 0.0), terms, np.random.default_rng(8), 3, n)
    shares = [sum(v for (_, i, _), v in located.items() if i == k) / n for k in range(3)]
    # (3+1, 3+1, 5+1) / 14; a component-first draw would give 1/3 each. sd ~0.006.
    assert shares == pytest.approx([4 / 14, 4 / 14, 6 / 14], abs=0.025), shares


@pytest.mark.parametrize("name", list(OFFICIAL_TERMS))
def test_deletions_are_uniform_over_component_term_pairs(name):
    # tree_with_missing_term: one draw over all (component, term) pairs of components with >= 2 terms.
    family, vocabulary, terms = _prepared(name)
    counts = TERM_COUNTS[name]
    expected = [(i, j) for i, n_i in enumerate(counts) if n_i >= 2 for j in range(n_i)]
    n = 300 * len(expected)
    located = _located(_marked_corruptor(vocabulary, 0.0, 1.0), terms, np.random.default_rng(9), family.dim, n)
    assert {(i, j) for _, i, j in located} == set(expected)
    assert all(abs(located[("delete", i, j)] - 300) < 90 for i, j in expected), located
