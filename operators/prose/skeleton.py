"""Symbol-input corruption on token lists, without sympy (the term add/delete of the
official PROSE code, github.com/felix-lyx/prose `prose_ode/symbolicregression/envs/generators.py`).

`operators.prose.tokens.corrupt` does that term corruption on sympy expressions; calling it
(and then `tokenize`) for every sample of every training step would make the CPU, not the GPU,
the bottleneck. Here the same corruption runs on precomputed token lists:

- :func:`component_terms` splits a target's prefix tokens, once per sample, into components and
  each component into its terms ``(sign, tokens)``, the units that are added or deleted. The
  tokenizer writes a sum left-nested, ``o_n .. o_1 t_0 t_1 .. t_n`` with ``o_k`` in {add, sub},
  and a leading coefficient -1 as ``neg t_0``, so the terms are read off the leftmost spine.
  A component written as a quotient whose numerator is a sum, or a product of factors without
  a number of which exactly one is a sum (the double pendulum's ω̇₁ and ω̇₂), has that sum's
  terms, framed by the tokens before and after it (:class:`Component`): the official
  ``double_pendulum_additional_term`` / ``double_pendulum_missing_term`` corrupt the numerators.
- :class:`SkeletonCorruptor` holds those terms as skeleton word ids and, per draw, adds or
  deletes one term with list operations and joins the terms back into prefix form: a negative
  term after the first is joined with ``sub``, a negative first term is written ``neg t``
  (the reference's "a leading sub becomes neg" rule on delete, which works in both directions).

Placement, as the official ``tree_with_additional_term`` / ``tree_with_missing_term``: an added
term goes to one (component, position) pair drawn uniformly from all of them (a component with n
terms has n + 1 positions), a deleted one is one (component, term) pair drawn uniformly from the
components with >= 2 terms. When a system has framed components (the double pendulum), only they
are corrupted: the official double-pendulum functions place terms in the two numerators only.

Random draws are consumed in the same order as `tokens.corrupt` (draw, shape, magnitude, sign,
location for an add; draw, location for a delete), so with equal generators both give the same
skeleton; the tests check that on every family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from operators.prose.tokens import (
    BINARY,
    PLACEHOLDER,
    SEPARATOR,
    SIGNS,
    UNARY,
    Vocabulary,
    addition_locations,
    deletion_locations,
    variables,
)
from workbench.errors import InputError

__all__ = [
    "Component",
    "SkeletonCorruptor",
    "addition_locations",
    "component_terms",
    "deletion_locations",
    "join_terms",
    "split_components",
]

Term = tuple[int, list[str]]  # (+1 or -1, the term's prefix tokens without its sign)
SUMS = ("add", "sub")


@dataclass(frozen=True)
class Component(Sequence):
    """One component's terms: a sequence of ``(sign, tokens)`` (words or ids), and the tokens
    around their sum (``head``, ``tail``; both empty when the component is the sum itself)."""

    terms: tuple
    head: tuple = ()
    tail: tuple = ()

    def __getitem__(self, index):
        return self.terms[index]

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def framed(self) -> bool:
        """Whether the terms are those of a sum inside the component (a quotient's numerator)."""
        return bool(self.head or self.tail)

    def with_terms(self, terms: Sequence) -> Component:
        return Component(tuple(terms), self.head, self.tail)


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


def _sum_terms(tokens: Sequence[str]) -> list[Term]:
    """The terms of one prefix sum (left-nested; a single term is a sum of one)."""
    # Walk down the leftmost spine of add/sub nodes; their right operands are terms n..1.
    operators: list[str] = []
    position = 0
    while tokens[position] in SUMS:
        operators.append(tokens[position])
        position += 1
    first_end = _subtree_end(tokens, position)
    first = list(tokens[position:first_end])
    terms: list[Term] = [(-1, first[1:]) if first[0] == "neg" else (1, first)]
    for operator in reversed(operators):  # innermost operator joins term 1
        end = _subtree_end(tokens, first_end)
        terms.append((-1 if operator == "sub" else 1, list(tokens[first_end:end])))
        first_end = end
    return terms


def _framed_sum(tokens: Sequence[str]) -> tuple[int, int] | None:
    """(start, end) of the sum inside a quotient component, or None.

    ``div N D`` with N a sum, or N a ``mul`` chain of factors without a number of which exactly
    one is a sum (the tokenizer's form of the double pendulum's ω̇₁ and ω̇₂).
    """
    if tokens[0] != "div":
        return None
    if tokens[1] in SUMS:
        return 1, _subtree_end(tokens, 1)
    sums, position = [], 1
    while True:
        factor = position + 1 if tokens[position] == "mul" else position
        if tokens[factor] in SIGNS:  # a number factor: not the tokenizer's form of such a quotient
            return None
        end = _subtree_end(tokens, factor)
        if tokens[factor] in SUMS:
            sums.append((factor, end))
        if tokens[position] != "mul":
            break
        position = end
    return sums[0] if len(sums) == 1 else None


def _terms_of(tokens: list[str]) -> Component:
    """One component's prefix tokens -> its terms (see the module docstring)."""
    if _subtree_end(tokens, 0) != len(tokens):
        raise InputError(f"not one prefix expression: {' '.join(tokens)!r}")
    frame = _framed_sum(tokens)
    if frame is None:
        return Component(tuple(_sum_terms(tokens)))
    start, end = frame
    return Component(tuple(_sum_terms(tokens[start:end])), tuple(tokens[:start]), tuple(tokens[end:]))


def component_terms(tokens: Sequence[str]) -> list[Component]:
    """Target (or skeleton) prefix tokens -> per component, its ``(sign, tokens)`` terms.

    The terms are those of `tokens.additive_terms` on the tokenized expression, in order: a
    coefficient other than -1 stays inside its float (sign +1 here), -1 gives sign -1.
    """
    return [_terms_of(component) for component in split_components(tokens)]


def join_terms(terms: Sequence[tuple[int, Sequence]], add, sub, neg) -> list:
    """``(sign, tokens)`` terms -> one left-nested prefix sum (works on words or ids alike),
    inside its frame when `terms` is a framed :class:`Component`."""
    (sign, body), rest = terms[0], terms[1:]
    operands = ([neg] if sign < 0 else []) + list(body)
    operators = []
    for sign, body in rest:
        operators.append(sub if sign < 0 else add)
        operands += body
    joined = operators[::-1] + operands
    if isinstance(terms, Component) and terms.framed:
        return [*terms.head, *joined, *terms.tail]
    return joined


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

    def prepare(self, target_tokens: Sequence[str]) -> list[Component]:
        """Once per sample: the target's per-component terms (and frames) as skeleton ids
        (constants -> placeholder)."""
        from operators.prose.tokens import skeletonize

        encode = self.vocabulary.encode
        return [
            Component(
                tuple((sign, encode(skeletonize(body))) for sign, body in component),
                tuple(encode(skeletonize(component.head))),
                tuple(encode(skeletonize(component.tail))),
            )
            for component in component_terms(target_tokens)
        ]

    def skeleton(self, terms: Sequence[Component]) -> list[int]:
        """Prepared terms -> skeleton ids, components joined by ``|``."""
        out: list[int] = []
        for index, component in enumerate(terms):
            if index:
                out.append(self.separator)
            out += join_terms(component, self.add, self.sub, self.neg)
        return out

    def corrupt(
        self, terms: Sequence[Component], rng: np.random.Generator, dim: int | None = None
    ) -> tuple[list[int], str]:
        """One corruption draw: (skeleton ids, "add" | "delete" | "none").

        Add (p = add_prob): a term of a uniformly drawn shape at a (component, position) pair
        drawn uniformly from `addition_locations`, joined with ``add`` (its constant is a
        placeholder, so its sign is not shown). Delete (p = miss_prob): a (component, term) pair
        drawn uniformly from `deletion_locations` (components with >= 2 terms); "none" if there is
        none.
        """
        dim = len(terms) if dim is None else dim
        sizes = [len(component) for component in terms]
        framed = [isinstance(component, Component) and component.framed for component in terms]
        draw = rng.random()
        if draw < self.add_prob:
            shapes = self.shapes(dim)
            shape = shapes[int(rng.integers(len(shapes)))]
            rng.uniform(-1.0, 1.0)  # the constant's magnitude and sign in tokens.corrupt:
            rng.random()  # drawn, then hidden by the placeholder; kept for an equal stream
            locations = addition_locations(sizes, framed)
            component, position = locations[int(rng.integers(len(locations)))]
            changed = list(terms[component])
            changed.insert(position, (1, shape))
            return self.skeleton(_replace(terms, component, changed)), "add"
        if draw < self.add_prob + self.miss_prob:
            locations = deletion_locations(sizes, framed)
            if not locations:
                return self.skeleton(terms), "none"
            component, position = locations[int(rng.integers(len(locations)))]
            changed = list(terms[component])
            changed.pop(position)
            return self.skeleton(_replace(terms, component, changed)), "delete"
        return self.skeleton(terms), "none"


def _replace(terms: Sequence, index: int, changed: list) -> list:
    """`terms` with component `index`'s terms replaced by `changed` (its frame kept)."""
    old = terms[index]
    new = old.with_terms(changed) if isinstance(old, Component) else changed
    return [*terms[:index], new, *terms[index + 1 :]]
