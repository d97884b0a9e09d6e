"""PROSE's symbolic encoding: sympy expressions <-> prefix tokens, after the official
code's `symbolicregression/envs/encoders.py` (github.com/felix-lyx/prose, folder `prose_ode/`;
"the reference" below).

An ODE right-hand side is a list of sympy expressions in the state symbols ``u_0, u_1, ...``, one
per component. :func:`tokenize` writes each as a prefix (Polish) tree and joins them with ``|``::

    [Add(10*u_1, -10*u_0, evaluate=False), ...]  ->  add mul + N100 E-1 u_1 mul - N100 E-1 u_0 | ...

Conventions (the reference's, unless stated):

- Binary ``add sub mul div``; unary ``neg inv sin cos pow2``, plus ``pow3`` (an addition to the
  reference's list here: the families' cubes, Aizawa's z³ and x³ and Duffing's u₁³, get one word).
  Larger integer powers are built from these words: x⁴ = ``pow2 pow2 x``, x⁵ = ``mul x pow2 pow2 x``,
  x⁻ⁿ = ``inv`` of xⁿ (|n| <= 1000). Non-integer powers and other functions are rejected.
- Sums are left-nested (a+b+c -> ``add add a b c``), products right-nested (``mul a mul b c``),
  with the numeric coefficient first.
- A term with coefficient exactly -1 is joined with ``sub`` (``neg`` when it leads its sum); any
  other coefficient keeps its sign inside the float and is joined with ``add``. This reproduces
  the reference's 33 Lorenz target tokens (tests/test_prose_tokens.py).
- Terms and factors are written in the order of ``expr.args``: sympy's canonical order for an
  evaluated expression, the construction order for ``sympy.Add(..., evaluate=False)``. Trees and
  expressions are not one-to-one (x − 2.1 vs x + (−2.1); (a+b)+c vs a+(b+c)), so compare
  functions, not tokens.
- Every number (Integer, Rational p/q, Float, constant subexpression such as ``pi``) is a float:
  three tokens, sign ``+``/``-``, mantissa ``N000``-``N999``, exponent ``E-10``-``E10``, value =
  sign x mantissa x 10^exponent, i.e. 3 significant digits (the reference's display bridge
  writes p/q as ``mul p pow q -1``; here it is one float). Exponents below -10 become
  ``N000 E0`` (zero, sign kept); exponents above 10 (|x| >= 9.995e12) cannot be written.
  A constant float64 cannot hold (1e-400, 1e400) is refused rather than read as 0 or inf.
- Skeletons (the reference's ``--use_skeleton``) replace every float, fixed constants included,
  with ``<PLACEHOLDER>``.

:func:`detokenize` is the model-output side: it never raises, and returns ``Decoded(valid=False,
error=...)`` for anything that is not a well-formed sequence of trees (as in the reference, any
decoding failure means invalid). :func:`corrupt` is the reference's symbol-input corruption (add
one term / delete one term).

The vocabulary (:class:`Vocabulary`) has 4 specials, 16 symbol words for ``max_dim=5`` (``|``,
10 operators, ``u_0``-``u_4``) and 1 023 float words: 1 043 words, not the reference's 1 074,
because the reference keeps the unused operators of its symbolic-regression parent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from workbench.errors import InputError

# --- words ----------------------------------------------------------------------------------------
BOS, EOS, PAD, PLACEHOLDER = "<BOS>", "<EOS>", "<PAD>", "<PLACEHOLDER>"
SPECIALS = (BOS, EOS, PAD, PLACEHOLDER)
SEPARATOR = "|"
BINARY = ("add", "sub", "mul", "div")
UNARY = ("neg", "inv", "sin", "cos", "pow2", "pow3")
SIGNS = ("+", "-")
MANTISSA_DIGITS = 3  # --float_precision 2: three significant digits
MAX_EXPONENT = 10  # --max_exponent 10
MAX_DIM = 5  # d_max of chaotic_ode_all
MANTISSAS = tuple(f"N{m:03d}" for m in range(10**MANTISSA_DIGITS))
EXPONENTS = tuple(f"E{e}" for e in range(-MAX_EXPONENT, MAX_EXPONENT + 1))
FLOAT_WORDS = SIGNS + MANTISSAS + EXPONENTS

_VARIABLE = re.compile(r"u_(\d+)")
# Integer powers are written with pow2/pow3/mul words, O(log n) of them; beyond this a power is not
# an ODE right-hand side anyone means, and u**(10**400) would exhaust the recursion.
MAX_POWER = 1000
ECHO_LIMIT = 100  # characters of the user's input quoted back in a message


def echo(text: Any, limit: int = ECHO_LIMIT) -> str:
    """`text` for an error message: at most `limit` characters, with an ellipsis saying how many more.

    Messages are one line; an expression of 100 kB must not become a 100 kB line.
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text) - limit + 1} more characters)"


def variables(max_dim: int = MAX_DIM) -> tuple[str, ...]:
    """The state-variable words ``u_0 ... u_{max_dim-1}``."""
    return tuple(f"u_{i}" for i in range(max_dim))


# --- floats ---------------------------------------------------------------------------------------
def _sci(value: float, digits: int) -> tuple[str, str, int]:
    """(sign, digit string, exponent of the last digit), rounded once by Python's formatting."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    sign = "-" if mantissa.startswith("-") else "+"
    return sign, mantissa.lstrip("-").replace(".", ""), int(exponent) - (digits - 1)


def encode_float(value: float) -> list[str]:
    """One number -> ``[sign, Nmmm, Ee]`` with value ~ sign x mmm x 10^e.

    Rounds to 3 significant digits (999.5 -> ``+ N100 E1``); exponents below -10 become zero as
    ``N000 E0``. Raises InputError for non-finite values and |value| >= 9.995e12.
    """
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"cannot encode the non-finite constant {value} as float tokens")
    sign, digits, exponent = _sci(value, MANTISSA_DIGITS)
    if exponent < -MAX_EXPONENT:
        digits, exponent = "0" * MANTISSA_DIGITS, 0
    if exponent > MAX_EXPONENT:
        raise InputError(f"constant {value:g} is too large for the float tokens (|x| must be below 9.995e12)")
    return [sign, f"N{digits}", f"E{exponent}"]


def decode_float(tokens: Sequence[str]) -> float:
    """``[sign, Nmmm, Ee]`` -> float. Raises InputError if the three words are not a float."""
    if len(tokens) != 3 or tokens[0] not in SIGNS or tokens[1] not in _MANTISSA_SET or tokens[2] not in _EXPONENT_SET:
        raise InputError(f"not a float token triple: {list(tokens)!r}")
    return float(f"{tokens[0]}{tokens[1][1:]}e{tokens[2][1:]}")


_MANTISSA_SET = frozenset(MANTISSAS)
_EXPONENT_SET = frozenset(EXPONENTS)


def _round_number(value: float, digits: int) -> sympy.Float:
    sign, mantissa, exponent = _sci(value, digits)
    return sympy.Float(f"{sign}{mantissa}e{exponent}")


def round_sig(expr: Any, digits: int = 3) -> sympy.Expr:
    """Round every number in ``expr`` to ``digits`` significant digits, as the float tokens do.

    Integer exponents of powers are structure (``pow2``, ``inv``), not numbers, and stay exact.
    Unlike :func:`encode_float` this does not flush |x| < 1e-8 to zero.
    """
    expr = sympy.sympify(expr)
    if expr.is_number:
        value = complex(expr)
        if value.imag != 0 or not math.isfinite(value.real):
            raise InputError(f"cannot round the non-real or non-finite constant {echo(expr)}")
        return _round_number(value.real, digits)
    if expr.is_Mul:
        coefficient, rest = _split_coefficient(expr)
        if coefficient is not sympy.S.One:  # one coefficient, one rounding, as in tokenize
            return round_sig(coefficient, digits) * round_sig(rest, digits)
    if expr.is_Pow and expr.exp.is_Integer:
        return sympy.Pow(round_sig(expr.base, digits), expr.exp)
    if not expr.args:
        return expr
    return expr.func(*(round_sig(arg, digits) for arg in expr.args))


# --- sympy -> tokens ------------------------------------------------------------------------------
def _encode_number(expr: sympy.Expr) -> list[str]:
    # sympy keeps numbers like 1e-400 and 10**400 exactly; float64 does not. A constant that
    # underflows would silently become 0 (and one that overflows inf), so both are refused here,
    # before the documented 3-digit rounding and the flush of |x| < 1e-10 to zero apply.
    try:
        value = complex(expr)
    except OverflowError:
        value = complex(math.inf)
    except (TypeError, ValueError) as reason:
        raise InputError(f"cannot evaluate the constant {_show_number(expr)} ({reason})") from None
    if value.imag != 0:
        raise InputError(f"cannot encode the complex constant {_show_number(expr)}")
    if not math.isfinite(value.real) and expr.is_finite:
        raise InputError(
            f"the constant {_show_number(expr)} overflows float64 (|x| > 1.8e308); "
            f"the float tokens write |x| < 9.995e12"
        )
    if value.real == 0 and expr.is_zero is False:
        raise InputError(
            f"the constant {_show_number(expr)} underflows float64 (|x| < 4.9e-324) and would be "
            f"encoded as 0; write 0 if zero is meant"
        )
    return encode_float(value.real)


def _show_number(expr: sympy.Expr) -> str:
    return echo(sympy.Float(expr, 3) if expr.is_Number else expr)


def _encode_power(base: sympy.Expr, n: int, max_dim: int) -> list[str]:
    """base**n for an integer n != 0, 1, with the words inv/pow2/pow3/mul."""
    if abs(n) > MAX_POWER:
        raise InputError(
            f"cannot encode {echo(base)} to the power {echo(n, 20)}: integer powers are limited to ±{MAX_POWER}"
        )
    if n < 0:
        return ["inv", *_encode_power(base, -n, max_dim)]
    if n == 1:
        return _encode(base, max_dim)
    if n == 2:
        return ["pow2", *_encode(base, max_dim)]
    if n == 3:
        return ["pow3", *_encode(base, max_dim)]
    if n % 2 == 0:
        return ["pow2", *_encode_power(base, n // 2, max_dim)]
    if n % 3 == 0:
        return ["pow3", *_encode_power(base, n // 3, max_dim)]
    return ["mul", *_encode(base, max_dim), *_encode_power(base, n - 1, max_dim)]


def _encode_factors(expr: sympy.Expr, max_dim: int) -> list[str]:
    """A product with coefficient 1: ``div``/``inv`` for a denominator, right-nested ``mul``."""
    numerator, denominator = sympy.fraction(expr)
    if denominator != 1:
        if numerator == 1:
            return ["inv", *_encode(denominator, max_dim)]
        return ["div", *_encode(numerator, max_dim), *_encode(denominator, max_dim)]
    factors = sympy.Mul.make_args(expr)
    out: list[str] = []
    for factor in factors[:-1]:
        out += ["mul", *_encode(factor, max_dim)]
    return out + _encode(factors[-1], max_dim)


def _split_coefficient(term: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """term -> (numeric coefficient, rest); a pure number has rest 1."""
    if term.is_number:
        return term, sympy.S.One
    if term.is_Mul:
        # Fold every constant factor (Rational, Float, pi, sqrt(2)) into one coefficient.
        numbers = [factor for factor in term.args if factor.is_number]
        if not numbers:
            return sympy.S.One, term
        return sympy.Mul(*numbers), sympy.Mul(*(f for f in term.args if not f.is_number))
    return sympy.S.One, term


def _encode_product(expr: sympy.Expr, max_dim: int) -> list[str]:
    coefficient, rest = _split_coefficient(expr)
    if coefficient is sympy.S.One:
        return _encode_factors(rest, max_dim)
    if coefficient is sympy.S.NegativeOne:
        return ["neg", *_encode_factors(rest, max_dim)]
    return ["mul", *_encode_number(coefficient), *_encode_factors(rest, max_dim)]


def _encode_sum(terms: Sequence[sympy.Expr], max_dim: int) -> list[str]:
    """Left-nested sum; a coefficient of exactly -1 becomes ``sub`` (``neg`` when leading)."""
    operators: list[str] = []
    operands: list[str] = []
    for position, term in enumerate(terms):
        coefficient, rest = _split_coefficient(term)
        negative = coefficient is sympy.S.NegativeOne and rest != 1
        body = _encode_factors(rest, max_dim) if negative else _encode(term, max_dim)
        if position == 0:
            operands += ["neg", *body] if negative else body
        else:
            operators.append("sub" if negative else "add")
            operands += body
    return operators[::-1] + operands


def _encode(expr: sympy.Expr, max_dim: int) -> list[str]:
    if expr.is_number:
        return _encode_number(expr)
    if expr.is_Symbol:
        match = _VARIABLE.fullmatch(expr.name)
        if not match or int(match.group(1)) >= max_dim:
            raise InputError(f"unknown variable {echo(expr.name)!r}: state variables are u_0 ... u_{max_dim - 1}")
        return [expr.name]
    if expr.is_Add:
        return _encode_sum(sympy.Add.make_args(expr), max_dim)
    if expr.is_Mul:
        return _encode_product(expr, max_dim)
    if expr.is_Pow:
        if not expr.exp.is_Integer:
            raise InputError(f"cannot encode {echo(expr)}: only integer powers have words (pow2, pow3, inv)")
        return _encode_power(expr.base, int(expr.exp), max_dim)
    if isinstance(expr, (sympy.sin, sympy.cos)):
        return [type(expr).__name__, *_encode(expr.args[0], max_dim)]
    raise InputError(f"cannot encode {echo(expr)}: supported are + - * / integer powers, sin, cos, numbers and u_i")


def tokenize(exprs: Sequence[Any], *, skeleton: bool = False, max_dim: int = MAX_DIM) -> list[str]:
    """Expressions (one per component) -> prefix tokens joined by ``|``.

    ``skeleton=True`` replaces each float with ``<PLACEHOLDER>``. Raises InputError for
    anything the vocabulary cannot write (unknown symbols or functions, non-integer powers,
    constants beyond 9.995e12).
    """
    if isinstance(exprs, (str, sympy.Basic)) or len(exprs) == 0:
        raise InputError("tokenize expects a non-empty list of expressions, one per component")
    tokens: list[str] = []
    for index, expr in enumerate(exprs):
        try:
            expr = sympy.sympify(expr)
        except (sympy.SympifyError, TypeError) as reason:
            raise InputError(f"component {index} is not an expression: {echo(reason)}") from None
        if index:
            tokens.append(SEPARATOR)
        tokens += _encode(expr, max_dim)
    return skeletonize(tokens) if skeleton else tokens


def skeletonize(tokens: Sequence[str]) -> list[str]:
    """Replace every 3-token float with one ``<PLACEHOLDER>`` (fixed constants too, as the reference)."""
    out: list[str] = []
    position = 0
    while position < len(tokens):
        if tokens[position] in SIGNS:
            decode_float(tokens[position : position + 3])  # a sign must start a whole float
            out.append(PLACEHOLDER)
            position += 3
        else:
            out.append(tokens[position])
            position += 1
    return out


# --- vocabulary -----------------------------------------------------------------------------------
class Vocabulary:
    """Words <-> ids: specials, ``|``, operators, ``u_0 ... u_{max_dim-1}``, float words."""

    def __init__(self, max_dim: int = MAX_DIM):
        if not isinstance(max_dim, int) or max_dim < 1:
            raise InputError(f"max_dim must be a positive integer, got {max_dim!r}")
        self.max_dim = max_dim
        self.words: tuple[str, ...] = SPECIALS + (SEPARATOR,) + BINARY + UNARY + variables(max_dim) + FLOAT_WORDS
        self._ids = {word: index for index, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @property
    def size(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word in self._ids

    def id(self, word: str) -> int:
        return self.encode([word])[0]

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def bos_id(self) -> int:
        return self._ids[BOS]

    @property
    def eos_id(self) -> int:
        return self._ids[EOS]

    @property
    def placeholder_id(self) -> int:
        return self._ids[PLACEHOLDER]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Tokens -> ids. Raises InputError naming the first unknown token and its position."""
        ids = []
        for position, token in enumerate(tokens):
            index = self._ids.get(token) if isinstance(token, str) else None
            if index is None:
                raise InputError(
                    f"unknown token {echo(token)!r} at position {position}: the vocabulary has "
                    f"{', '.join(SPECIALS)}, '|', {' '.join(BINARY + UNARY)}, "
                    f"u_0..u_{self.max_dim - 1}, and floats (+|-) N000..N999 E-10..E10"
                )
            ids.append(index)
        return ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids -> tokens. Raises InputError for an id outside ``[0, size)``."""
        words = []
        for position, index in enumerate(ids):
            is_int = isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_))
            if not (is_int and 0 <= index < len(self.words)):
                raise InputError(
                    f"token id {index!r} at position {position} is outside the vocabulary "
                    f"(ids 0..{len(self.words) - 1})"
                )
            words.append(self.words[int(index)])
        return words


# --- tokens -> sympy, never raising (decoding) -----------------------------------------------------
@dataclass(frozen=True)
class Decoded:
    """Result of decoding model output: ``exprs`` is None and ``error`` says why when invalid."""

    valid: bool
    exprs: list[sympy.Expr] | None
    error: str = ""


_NON_FINITE = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)
_APPLY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a: -a,
    "inv": lambda a: 1 / a,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "pow2": lambda a: a**2,
    "pow3": lambda a: a**3,
}


class _Invalid(Exception):
    """Internal: the reason a sequence does not decode."""


def _finite_number(value: sympy.Expr) -> sympy.Expr:
    """Keep constant subtrees float64-sized, so later nodes (sin of 1e900) stay cheap."""
    if value.has(*_NON_FINITE):
        raise _Invalid("non-finite value (division by zero or overflow)")
    if value.is_Number:
        as_float = float(value)
        if not math.isfinite(as_float):
            raise _Invalid("constant overflows float64")
        return sympy.Float(as_float)
    return value


def _parse_component(tokens: list[str], start: int, variable_words: frozenset[str]) -> sympy.Expr:
    """One prefix tree; ``start`` is its position in the whole sequence, for messages."""
    # Pass 1: group words into leaves/operators and check the arity count before touching sympy.
    units: list[tuple[str, Any]] = []
    position = 0
    needed = 1  # operands still owed
    while position < len(tokens):
        word = tokens[position]
        where = start + position
        if needed == 0:
            raise _Invalid(f"extra tokens after a complete tree at position {where}")
        if word in SIGNS:
            triple = tokens[position : position + 3]
            if len(triple) < 3:
                raise _Invalid(f"truncated float at position {where}")
            if triple[1] not in _MANTISSA_SET or triple[2] not in _EXPONENT_SET:
                raise _Invalid(f"malformed float {' '.join(triple)!r} at position {where}")
            units.append(("leaf", sympy.Float(decode_float(triple))))
            position += 3
            needed -= 1
            continue
        if word in _APPLY:
            units.append(("op", word))
            needed += 1 if word in BINARY else 0
        elif word in variable_words:
            units.append(("leaf", sympy.Symbol(word)))
            needed -= 1
        elif word in _MANTISSA_SET or word in _EXPONENT_SET:
            raise _Invalid(f"float word {word!r} without a sign at position {where}")
        elif word == PLACEHOLDER:
            raise _Invalid(f"unfilled <PLACEHOLDER> at position {where}")
        elif word in SPECIALS:
            raise _Invalid(f"special token {word} inside an expression at position {where}")
        elif isinstance(word, str) and _VARIABLE.fullmatch(word):
            raise _Invalid(f"variable {word} out of range at position {where}")
        else:
            raise _Invalid(f"unknown token {word!r} at position {where}")
        position += 1
    if needed > 0:
        raise _Invalid(f"truncated tree ending at position {start + len(tokens)}: {needed} operand(s) missing")
    # Pass 2: evaluate right to left with a stack; arities are known to balance.
    stack: list[sympy.Expr] = []
    for kind, item in reversed(units):
        if kind == "leaf":
            stack.append(item)
        elif item in BINARY:
            first, second = stack.pop(), stack.pop()
            stack.append(_finite_number(_APPLY[item](first, second)))
        else:
            stack.append(_finite_number(_APPLY[item](stack.pop())))
    (expr,) = stack
    return expr


def detokenize(tokens: Any, *, dim: int | None = None, max_dim: int = MAX_DIM) -> Decoded:
    """Model output -> expressions. Never raises: anything malformed gives ``valid=False``.

    A leading ``<BOS>``, trailing ``<PAD>``s and everything from the first ``<EOS>`` on are
    ignored. The rest is split at ``|`` and each component prefix-decoded; constant
    subtrees must stay finite in float64. With ``dim`` the output must have exactly ``dim``
    components in ``u_0 ... u_{dim-1}``; otherwise any ``u_i`` with i < max_dim.
    """
    try:
        words = list(tokens)
        if not all(isinstance(word, str) for word in words):
            return Decoded(False, None, "tokens must be strings")
        if words[:1] == [BOS]:
            words = words[1:]
        if EOS in words:
            words = words[: words.index(EOS)]
        while words and words[-1] == PAD:  # batch padding, not model content
            words.pop()
        if not words:
            return Decoded(False, None, "empty sequence")
        n_vars = max_dim if dim is None else min(dim, max_dim)
        variable_words = frozenset(variables(n_vars))
        exprs: list[sympy.Expr] = []
        start = 0
        for index, component in enumerate(_split(words)):
            if not component:
                return Decoded(False, None, f"component {index} is empty")
            expr = _parse_component(component, start, variable_words)
            if expr.has(*_NON_FINITE):
                return Decoded(False, None, f"component {index} is not finite")
            exprs.append(expr)
            start += len(component) + 1
        if dim is not None and len(exprs) != dim:
            return Decoded(False, None, f"{len(exprs)} components, expected {dim}")
        return Decoded(True, exprs, "")
    except _Invalid as reason:
        return Decoded(False, None, str(reason))
    except ZeroDivisionError:  # mpmath raises instead of returning zoo for Float(x)/Float(0)
        return Decoded(False, None, "division by zero")
    except Exception as reason:
        return Decoded(False, None, f"{type(reason).__name__} while decoding: {reason}"[:200])


def _split(words: list[str]) -> list[list[str]]:
    components: list[list[str]] = [[]]
    for word in words:
        if word == SEPARATOR:
            components.append([])
        else:
            components[-1].append(word)
    return components


# --- symbol-input corruption ----------------------------------------------------------------------
@dataclass(frozen=True)
class Corruption:
    """What :func:`corrupt` did: ``kind`` is ``"add"``, ``"delete"`` or ``"none"``."""

    kind: str
    component: int | None = None
    term: sympy.Expr | None = None
    position: int | None = None


def _corruptible(sizes: Sequence[int], framed: Sequence[bool]) -> list[int]:
    """The components that may be corrupted: the framed ones if any (the official double-pendulum
    rule), else all."""
    chosen = [i for i, is_framed in enumerate(framed) if is_framed]
    return chosen or list(range(len(sizes)))


def addition_locations(sizes: Sequence[int], framed: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """All (component, position) pairs where a term may be added, in the official order
    (``tree_with_additional_term``: component-major, positions 0..n of a component with n terms)."""
    framed = [False] * len(sizes) if framed is None else framed
    return [(i, j) for i in _corruptible(sizes, framed) for j in range(sizes[i] + 1)]


def deletion_locations(sizes: Sequence[int], framed: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """All (component, term) pairs that may be deleted: the terms of components with >= 2 terms
    (``tree_with_missing_term``)."""
    framed = [False] * len(sizes) if framed is None else framed
    return [(i, j) for i in _corruptible(sizes, framed) if sizes[i] >= 2 for j in range(sizes[i])]


def _framed_sum(expr: sympy.Expr) -> sympy.Expr | None:
    """The sum inside a quotient component, or None: ``N / D`` written by the tokenizer as
    ``div N D``, with N a sum or a product without a number factor and with exactly one sum
    factor (the double pendulum's ω̇₁ and ω̇₂; `operators.prose.skeleton` reads the same off tokens)."""
    if not expr.is_Mul or any(factor.is_number for factor in expr.args) or sympy.fraction(expr)[1] == 1:
        return None
    sums = [factor for factor in expr.args if factor.is_Add]
    return sums[0] if len(sums) == 1 else None


def additive_terms(expr: Any) -> tuple[sympy.Expr, ...]:
    """The terms of one component, the units the corruption adds or deletes: its top-level
    additive terms (a non-sum is one term), or, for a quotient with a sum in its numerator (the
    double pendulum), that sum's terms, as the official code's double-pendulum corruption."""
    expr = sympy.sympify(expr)
    inner = _framed_sum(expr)
    return sympy.Add.make_args(expr if inner is None else inner)


def _is_framed(expr: sympy.Expr) -> bool:
    return _framed_sum(expr) is not None


def _with_terms(expr: sympy.Expr, terms: Sequence[sympy.Expr]) -> sympy.Expr:
    """`expr` with its `additive_terms` replaced by `terms` (a quotient keeps its other factors)."""
    inner = _framed_sum(expr)
    if inner is None:
        return _join(terms)
    return sympy.Mul(_join(terms), *(factor for factor in expr.args if factor is not inner))


def candidate_monomials(dim: int) -> list[sympy.Expr]:
    """{1, u_i, u_i u_j (i <= j)}: the shapes an added term may take (10 for d = 3)."""
    u = [sympy.Symbol(name) for name in variables(dim)]
    return [sympy.S.One, *u, *(u[i] * u[j] for i in range(dim) for j in range(i, dim))]


def _join(terms: Sequence[sympy.Expr]) -> sympy.Expr:
    # Unevaluated, so an added c*u_0 stays its own term next to an existing 10*u_0, as in the
    # reference's tree surgery; tokenize keeps this order.
    return terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)


def corrupt(
    exprs: Sequence[Any],
    rng: np.random.Generator,
    add_prob: float = 0.15,
    miss_prob: float = 0.15,
    dim: int | None = None,
) -> tuple[list[sympy.Expr], Corruption]:
    """Term corruption of the symbol input (the reference's ``--add_term_prob``/``--miss_term_prob``).

    With probability ``add_prob`` insert one term c, c*u_i or c*u_i*u_j (i <= j < dim, shape drawn
    uniformly) at a (component, position) pair drawn uniformly from all of them; with probability
    ``miss_prob`` delete one term, a (component, term) pair drawn uniformly from the components
    with >= 2 terms (nothing happens if none has); otherwise return the expressions unchanged.
    This is the official ``tree_with_additional_term`` / ``tree_with_missing_term`` placement: a
    component with n terms has n + 1 positions, so longer components get more additions. The terms
    are those of :func:`additive_terms`; in a system with quotient components (the double
    pendulum) only their numerators' sums are corrupted, as the official double-pendulum code
    does. The coefficient c is log-uniform in [0.1, 10] with a random sign, rounded to 3 digits;
    it becomes ``<PLACEHOLDER>`` in a skeleton anyway.
    ``dim`` defaults to the number of components.
    """
    if isinstance(exprs, (str, sympy.Basic)) or len(exprs) == 0:
        raise InputError("corrupt expects a non-empty list of expressions, one per component")
    for name, p in (("add_prob", add_prob), ("miss_prob", miss_prob)):
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise InputError(f"{name} must be a probability in [0, 1], got {p!r}")
    if add_prob + miss_prob > 1.0:
        raise InputError(f"add_prob + miss_prob must be <= 1, got {add_prob} + {miss_prob}")
    dim = len(exprs) if dim is None else dim
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise InputError(f"dim must be an integer in 1..{MAX_DIM}, got {dim!r}")
    exprs = [sympy.sympify(expr) for expr in exprs]
    sizes = [len(additive_terms(expr)) for expr in exprs]
    framed = [_is_framed(expr) for expr in exprs]
    draw = rng.random()
    if draw < add_prob:
        shapes = candidate_monomials(dim)
        shape = shapes[int(rng.integers(len(shapes)))]
        magnitude = 10.0 ** rng.uniform(-1.0, 1.0)
        coefficient = round_sig(magnitude if rng.random() < 0.5 else -magnitude, MANTISSA_DIGITS)
        term = coefficient * shape
        locations = addition_locations(sizes, framed)
        component, position = locations[int(rng.integers(len(locations)))]
        terms = list(additive_terms(exprs[component]))
        terms.insert(position, term)
        exprs[component] = _with_terms(exprs[component], terms)
        return exprs, Corruption("add", component, term, position)
    if draw < add_prob + miss_prob:
        locations = deletion_locations(sizes, framed)
        if not locations:
            return exprs, Corruption("none")
        component, position = locations[int(rng.integers(len(locations)))]
        terms = list(additive_terms(exprs[component]))
        removed = terms.pop(position)
        exprs[component] = _with_terms(exprs[component], terms)
        return exprs, Corruption("delete", component, removed, position)
    return exprs, Corruption("none")
