"""Symbol-input corruption on token lists, without sympy (the term add/delete of the
official PROSE code, github.com/felix-lyx/prose `prose_ode/symbolicregression/envs/generators.py`).

`operators.prose.tokens.corrupt` does that term corruption on sympy expressions; calling it
(and then `tokenize`) for every sample of every training step would make the CPU, not the GPU,
the bottleneck. Here the same corruption runs on precomputed token lists:

- :func:`component_terms` splits a target's prefix tokens, once per sample, into components and
  each component into its top-level additive terms ``(sign, tokens)``. The tokenizer writes a
  sum left-nested, ``o_n .. o_1 t_0 t_1 .. t_n`` with ``o_k`` in {add, sub}, and a leading
  coefficient -1 as ``neg t_0``, so the terms are read off the leftmost spine.
- :class:`SkeletonCorruptor` holds those terms as skeleton word ids and, per draw, adds or
  deletes one term with list operations and joins the terms back into prefix form: a negative
  term after the first is joined with ``sub``, a negative first term is written ``neg t``
  (the reference's "a leading sub becomes neg" rule on delete, which works in both directions).

Random draws are consumed in the same order as `tokens.corrupt` (draw, shape, magnitude, sign,
component, position for an add; draw, component, position for a delete), so with equal
generators both give the same skeleton; the tests check that on every family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from operators.prose.tokens import BINARY, PLACEHOLDER, SEPARATOR, SIGNS, UNARY, Vocabulary, variables
from workbench.errors import InputError

__all__ = ["SkeletonCorruptor", "component_terms", "join_terms", "split_components"]

Term = tuple[int, list[str]]  # (+1 or -1, the term's prefix tokens without its sign)


def split_components(tokens: Sequence[str]) -> list[list[str]]:
    """Prefix tokens -> one token list per component (split at ``|``)."""
    components: list[list[str]] = [[]]
    for word in tokens:
        if word == SEPARATOR:
            components.append([])
        else:
            components[-1].append(word)
    return components


def _subtree_end(tokens: Sequence[str], start: int) -> int:
    """Index one past the prefix subtree that starts at ``start``."""
    needed, position = 1, start
    while needed:
        if position >= len(tokens):
            raise InputError(f"truncated prefix expression: {' '.join(tokens)!r}")
        word = tokens[position]
        if word in SIGNS:  # a 3-token float is one leaf
            position += 3
            needed -= 1
            continue
        if word in BINARY:
            needed += 1
        elif word not in UNARY:
            needed -= 1
        position += 1
    return position


def _terms_of(tokens: list[str]) -> list[Term]:
    """Top-level additive terms of one component's prefix tokens (sums are left-nested)."""
    if _subtree_end(tokens, 0) != len(tokens):
        raise InputError(f"not one prefix expression: {' '.join(tokens)!r}")
    # Walk down the leftmost spine of add/sub nodes; their right operands are terms n..1.
    operators: list[str] = []
    position = 0
    while tokens[position] in ("add", "sub"):
        operators.append(tokens[position])
        position += 1
    first_end = _subtree_end(tokens, position)
    first = tokens[position:first_end]
    terms: list[Term] = [(-1, first[1:]) if first[0] == "neg" else (1, first)]
    for operator in reversed(operators):  # innermost operator joins term 1
        end = _subtree_end(tokens, first_end)
        terms.append((-1 if operator == "sub" else 1, tokens[first_end:end]))
        first_end = end
    return terms


def component_terms(tokens: Sequence[str]) -> list[list[Term]]:
    """Target (or skeleton) prefix tokens -> per component, its list of ``(sign, tokens)`` terms.

    The terms are those of ``sympy.Add.make_args`` on the tokenized expression, in order: a
    coefficient other than -1 stays inside its float (sign +1 here), -1 gives sign -1.
    """
    return [_terms_of(component) for component in split_components(tokens)]


def join_terms(terms: Sequence[tuple[int, Sequence]], add, sub, neg) -> list:
    """``(sign, tokens)`` terms -> one left-nested prefix sum (works on words or ids alike)."""
    (sign, body), rest = terms[0], terms[1:]
    operands = ([neg] if sign < 0 else []) + list(body)
    operators = []
    for sign, body in rest:
        operators.append(sub if sign < 0 else add)
        operands += body
    return operators[::-1] + operands


class SkeletonCorruptor:
    """Term add/delete on skeleton ids, one instance per vocabulary (cheap to call per sample)."""

    def __init__(self, vocabulary: Vocabulary, add_prob: float = 0.15, miss_prob: float = 0.15):
        for name, p in (("add_prob", add_prob), ("miss_prob", miss_prob)):
            if not 0.0 <= p <= 1.0:
                raise InputError(f"{name} must be a probability in [0, 1], got {p!r}")
        if add_prob + miss_prob > 1.0:
            raise InputError(f"add_prob + miss_prob must be <= 1, got {add_prob} + {miss_prob}")
        self.vocabulary, self.add_prob, self.miss_prob = vocabulary, add_prob, miss_prob
        ids = vocabulary.encode
        self.add, self.sub, self.neg, self.separator = ids(["add", "sub", "neg", SEPARATOR])
        self._shapes: dict[int, list[list[int]]] = {}

    def shapes(self, dim: int) -> list[list[int]]:
        """Skeleton ids of {c, c·u_i, c·u_i·u_j (i <= j)} in `tokens.candidate_monomials` order.

        c·u_i² is written ``mul c pow2 u_i``, as the tokenizer writes sympy's u_i**2.
        """
        if dim not in self._shapes:
            u = variables(dim)
            words = [[PLACEHOLDER], *(["mul", PLACEHOLDER, v] for v in u)]
            for i in range(dim):
                for j in range(i, dim):
                    words.append(
                        ["mul", PLACEHOLDER, "pow2", u[i]] if i == j else ["mul", PLACEHOLDER, "mul", u[i], u[j]]
                    )
            self._shapes[dim] = [self.vocabulary.encode(w) for w in words]
        return self._shapes[dim]

    def prepare(self, target_tokens: Sequence[str]) -> list[list[tuple[int, list[int]]]]:
        """Once per sample: the target's per-component terms as skeleton ids (constants -> placeholder)."""
        from operators.prose.tokens import skeletonize

        return [
            [(sign, self.vocabulary.encode(skeletonize(body))) for sign, body in component]
            for component in component_terms(target_tokens)
        ]

    def skeleton(self, terms: Sequence[Sequence[tuple[int, list[int]]]]) -> list[int]:
        """Prepared terms -> skeleton ids, components joined by ``|``."""
        out: list[int] = []
        for index, component in enumerate(terms):
            if index:
                out.append(self.separator)
            out += join_terms(component, self.add, self.sub, self.neg)
        return out

    def corrupt(
        self, terms: Sequence[Sequence[tuple[int, list[int]]]], rng: np.random.Generator, dim: int | None = None
    ) -> tuple[list[int], str]:
        """One corruption draw: (skeleton ids, "add" | "delete" | "none").

        Add (p = add_prob): a term of a uniformly drawn shape at a random position of a random
        component, joined with ``add`` (its constant is a placeholder, so its sign is not shown).
        Delete (p = miss_prob): one term of a random component with >= 2 terms.
        """
        dim = len(terms) if dim is None else dim
        draw = rng.random()
        if draw < self.add_prob:
            shapes = self.shapes(dim)
            shape = shapes[int(rng.integers(len(shapes)))]
            rng.uniform(-1.0, 1.0)  # the constant's magnitude and sign in tokens.corrupt:
            rng.random()  # drawn, then hidden by the placeholder; kept for an equal stream
            component = int(rng.integers(len(terms)))
            changed = list(terms[component])
            changed.insert(int(rng.integers(len(changed) + 1)), (1, shape))
            return self.skeleton([*terms[:component], changed, *terms[component + 1 :]]), "add"
        if draw < self.add_prob + self.miss_prob:
            eligible = [i for i, component in enumerate(terms) if len(component) >= 2]
            if not eligible:
                return self.skeleton(terms), "none"
            component = eligible[int(rng.integers(len(eligible)))]
            changed = list(terms[component])
            changed.pop(int(rng.integers(len(changed))))
            return self.skeleton([*terms[:component], changed, *terms[component + 1 :]]), "delete"
        return self.skeleton(terms), "none"
