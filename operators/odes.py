"""The 15 ODE families of PROSE and their trajectory generator (Liu, Zhang, Schaeffer 2023).

The ground truth is the official code, github.com/felix-lyx/prose, folder `prose_ode/`:
`ODEGenerator` in `symbolicregression/envs/generators.py` (the families "as implemented", their
nominal parameters and solver methods, parameter and initial-condition draws) and
`symbolicregression/envs/environment.py` (`EnvDataset`: integration and rejection), plus the data
noise of `symbolicregression/trainer.py`; "the reference" below means that code. Each family is a
frozen `ODEFamily` whose right-hand side is a tuple of sympy expressions in the states
`u_0, u_1, ...` and the family's *free* (sampled) parameters; fixed constants (0.5, 3, -10,
0.25, ...) are literal numbers.

Each family has two forms of the same right-hand side: `rhs`, integrated (the reference's numeric
`f_closure`, factored where the reference's is, e.g. Lorenz x(ρ − z) − y), and `terms`, the symbolic
target as the reference writes its tree: the expanded sum of terms, in the order of the reference's
`generate_<family>` / `<family>_tree_list` (Lorenz ρx − xz − y). The terms are the units that the
symbol-input corruption adds or deletes. The double pendulum's ω̇ components are quotients; their
terms are those of the numerator's sum (the reference's `double_pendulum_additional_term` /
`double_pendulum_missing_term`), and `factors` holds what that sum is multiplied by.

Deviations from the PROSE code, on purpose:
- Aizawa's `e` is drawn but unused in PROSE; it is not a parameter here (its
  −(x²+y²)(1+ez) term is reduced to −x² there).
- Double pendulum: PROSE draws g, l *unrounded* and rounds a = -3g/l, b = -g/l, c = 4g/l to 3
  significant digits. Here g, l are the parameters (rounded like every other family) and
  a, b, c are the exact expressions of them.
- PROSE draws 20 ICs per parameter draw; here one sample is one parameter draw with one
  trajectory, kept from the first of up to 10 initial conditions that passes the rejection rule.

Two integration engines give the same samples (same draws, trajectories equal to solver
tolerance): `engine="solve_ivp"` (the default; the reference's scipy solve, one trajectory at a
time, with the table's method) and `engine="batched"` (`operators/batched_solve.py`: Dormand–Prince
5(4) over all pending samples of a family at once, ~100x faster; no family is stiff here).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import sympy
from scipy.integrate import solve_ivp

from workbench.errors import InputError

T_RANGE, T_NUM = 6.0, 192  # --t_range 6.0 --t_num 192: t_eval = linspace(0, 6, 192), dt ~ 0.0314
PARAM_RANGE_GAMMA = 0.1  # --ode_param_range_gamma: p ~ U[p0 - 0.1|p0|, p0 + 0.1|p0|]
SIGNIFICANT_DIGITS = 3  # the reference's `refine_floats`
IC_LOW, IC_HIGH = -2.0, 2.0  # u(0) ~ U[-2, 2]^d
MAX_ABS = 1e3  # rejection: keep only if status == 0 and max|u| < 1e3
IC_ATTEMPTS = 10  # rejection: up to 10x the needed ICs are tried
NOISE_GAMMA = 0.02  # --train/eval_noise_gamma: ||sigma eps||_2 = 0.02 ||u||_2 per whole trajectory

RHS = Callable[[float, np.ndarray, Sequence[float]], np.ndarray]


def default_t_eval() -> np.ndarray:
    """The PROSE time grid: 192 points on [0, 6]."""
    return np.linspace(0.0, T_RANGE, T_NUM)


@dataclass(frozen=True)
class ODEFamily:
    """One row of the family table (`_TABLE` below).

    `rhs[i]` is du_i/dt as a sympy expression in `states` and `params`; `nominal` holds p0 for
    each entry of `params` (same order); `method` is the `solve_ivp` method of the table.
    `terms[i]` are the additive terms of the symbolic target of component i in the reference's
    order, and du_i/dt = sum(terms[i]) * factors[i] (`factors[i]` is 1 but for the double
    pendulum's quotients); the tests check that this equals `rhs[i]`.
    """

    name: str
    row: int
    dim: int
    states: tuple[sympy.Symbol, ...]
    params: tuple[sympy.Symbol, ...]
    nominal: tuple[float, ...]
    rhs: tuple[sympy.Expr, ...]
    method: str
    terms: tuple[tuple[sympy.Expr, ...], ...]
    factors: tuple[sympy.Expr, ...]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def check_params(self, params: Sequence[float]) -> np.ndarray:
        """Return params as a float vector, or raise InputError naming the expected length."""
        p = np.asarray(params, dtype=float)
        if p.shape != (len(self.params),):
            names = ", ".join(str(s) for s in self.params)
            raise InputError(
                f"ODE family '{self.name}' expects {len(self.params)} parameter(s) ({names}), got shape {p.shape}"
            )
        return p

    def check_state(self, y0: Sequence[float]) -> np.ndarray:
        """Return y0 as a float vector, or raise InputError naming the expected length."""
        y = np.asarray(y0, dtype=float)
        if y.shape != (self.dim,):
            raise InputError(
                f"ODE family '{self.name}' has dimension {self.dim}: the initial state must have "
                f"length {self.dim}, got shape {y.shape}"
            )
        return y

    def sample_params(self, rng: np.random.Generator) -> np.ndarray:
        """p ~ U[p0 - 0.1|p0|, p0 + 0.1|p0|], rounded to 3 significant digits.

        Rounding can move a draw just past the ±10 % bound by at most half a unit in the third
        significant digit (e.g. g: 10.79 -> 10.8), exactly as PROSE's `refine_floats` does.
        """
        p0 = np.asarray(self.nominal, dtype=float)
        half = PARAM_RANGE_GAMMA * np.abs(p0)
        draw = rng.uniform(p0 - half, p0 + half)
        return np.array([round_significant(x) for x in draw])

    def sample_initial(self, rng: np.random.Generator) -> np.ndarray:
        """u(0) ~ U[-2, 2]^d."""
        return rng.uniform(IC_LOW, IC_HIGH, self.dim)

    def expressions(self, params: Sequence[float]) -> list[sympy.Expr]:
        """The symbolic target, parameter values substituted: per component the unevaluated sum of
        its `terms` in the reference's order (times its factor), e.g. Lorenz's
        ``[10.0*u_1 - 10.0*u_0, 30.6*u_0 - u_0*u_2 - u_1, u_0*u_1 - 2.74*u_2]`` at (10, 30.6, 2.74).

        The sum is built with ``evaluate=False``, so `tokenize` writes the terms in this order;
        a substitution or arithmetic on it re-evaluates it into sympy's canonical order.
        """
        p = self.check_params(params)
        values = {s: sympy.Float(float(v)) for s, v in zip(self.params, p)}
        out = []
        for terms, factor in zip(self.terms, self.factors):
            body = [term.xreplace(values) for term in terms]  # xreplace: ~10x cheaper than subs
            expr = body[0] if len(body) == 1 else sympy.Add(*body, evaluate=False)
            out.append(expr if factor == 1 else expr * factor.xreplace(values))
        return out

    def numeric_rhs(self) -> RHS:
        """f(t, y, p) -> dy/dt, lambdified once and cached.

        y may be one state of shape (dim,) or a batch of shape (dim, n); the result has y's
        shape (constant components such as Duffing's du_0/dt = 1 are broadcast).
        """
        if "rhs" not in self._cache:
            raw = sympy.lambdify(self.states + self.params, list(self.rhs), modules="numpy", cse=True)
            dim = self.dim

            def rhs(t: float, y: np.ndarray, p: Sequence[float]) -> np.ndarray:
                out = np.empty((dim,) + np.shape(y)[1:])
                for i, value in enumerate(raw(*y, *p)):
                    out[i] = value
                return out

            self._cache["rhs"] = rhs
        return self._cache["rhs"]


def round_significant(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """Round to `digits` significant digits (0.17234 -> 0.172; 10.79 -> 10.8)."""
    return float(f"{float(x):.{digits - 1}e}")


# ---------------------------------------------------------------------------------------------
# The family table: the equations as implemented in the reference's `generators.py`.


def _u(dim: int) -> tuple[sympy.Symbol, ...]:
    return tuple(sympy.Symbol(f"u_{i}") for i in range(dim))


class _Scaled(NamedTuple):
    """A target component that is a sum of terms times a factor (the double pendulum's quotients)."""

    terms: list
    factor: sympy.Expr


def _family(name, row, method, dim, nominal: dict[str, float], rhs_of, terms_of) -> ODEFamily:
    """One table row. `rhs_of` and `terms_of` take (states..., params...); `terms_of` returns per
    component the list of its terms, or a `_Scaled` (terms, factor)."""
    states = _u(dim)
    params = tuple(sympy.Symbol(k) for k in nominal)
    rhs = tuple(sympy.sympify(e) for e in rhs_of(*states, *params))
    components = [c if isinstance(c, _Scaled) else _Scaled(c, sympy.S.One) for c in terms_of(*states, *params)]
    return ODEFamily(
        name=name,
        row=row,
        dim=dim,
        states=states,
        params=params,
        nominal=tuple(float(v) for v in nominal.values()),
        rhs=rhs,
        method=method,
        terms=tuple(tuple(sympy.sympify(t) for t in c.terms) for c in components),
        factors=tuple(sympy.sympify(c.factor) for c in components),
    )


R = sympy.Rational
sin, cos = sympy.sin, sympy.cos


def _lorenz_96(dim: int):
    # Row 12/13: du_i/dt = (u_{i+1} - u_{i-2}) u_{i-1} - u_i + F, indices cyclic.
    def rhs(*args):
        u, (F,) = args[:dim], args[dim:]
        return [(u[(i + 1) % dim] - u[(i - 2) % dim]) * u[(i - 1) % dim] - u[i] + F for i in range(dim)]

    return rhs


def _lorenz_96_terms(dim: int):
    # The reference's lorenz_96_{4,5}d_tree_list: u_{i+1}u_{i-1} - u_{i-2}u_{i-1} - u_i + F.
    def terms(*args):
        u, (F,) = args[:dim], args[dim:]
        return [
            [u[(i + 1) % dim] * u[(i - 1) % dim], -u[(i - 2) % dim] * u[(i - 1) % dim], -u[i], F] for i in range(dim)
        ]

    return terms


def _double_pendulum(th1, th2, w1, w2, g, length):
    # Row 15: a = -3g/l, b = -g/l, c = 4g/l; coefficient 1 on w2^2 cos(Delta) is PROSE's
    # (the textbook form has 2); kept so targets match the reference.
    a, b, c = -3 * g / length, -g / length, 4 * g / length
    delta = th1 - th2
    den = 3 - cos(2 * delta)
    return [
        w1,
        w2,
        (a * sin(th1) + b * sin(th1 - 2 * th2) - 2 * sin(delta) * (w2**2 + w1**2 * cos(delta))) / den,
        sin(delta) * (4 * w1**2 + c * cos(th1) + w2**2 * cos(delta)) / den,
    ]


def _double_pendulum_terms(th1, th2, w1, w2, g, length):
    # The reference's generate_double_pendulum tree: the terms are those of the numerators' sums,
    # which its double_pendulum_additional_term / _missing_term corrupt.
    a, b, c = -3 * g / length, -g / length, 4 * g / length
    delta = th1 - th2
    den = 3 - cos(2 * delta)
    return [
        [w1],
        [w2],
        _Scaled([a * sin(th1), b * sin(th1 - 2 * th2), -2 * sin(delta) * (w2**2 + w1**2 * cos(delta))], 1 / den),
        _Scaled([4 * w1**2, c * cos(th1), w2**2 * cos(delta)], sin(delta) / den),
    ]


# Each row: name, row, method, dim, nominal parameters, the integrated right-hand side, and the
# target's terms in the order of the reference's `generate_<name>` tree.
_TABLE = [
    _family(
        "thomas",
        1,
        "BDF",
        3,
        {"b": 0.17},
        lambda x, y, z, b: [sin(y) - b * x, sin(z) - b * y, sin(x) - b * z],
        lambda x, y, z, b: [[sin(y), -b * x], [sin(z), -b * y], [sin(x), -b * z]],
    ),
    _family(
        "lorenz_3d",
        2,
        "BDF",
        3,
        {"sigma": 10, "rho": 28, "beta": 8 / 3},
        lambda x, y, z, s, r, bt: [s * (y - x), x * (r - z) - y, x * y - bt * z],
        lambda x, y, z, s, r, bt: [[s * y, -s * x], [r * x, -x * z, -y], [x * y, -bt * z]],
    ),
    _family(
        "aizawa",
        3,
        "BDF",
        3,
        {"a": 0.95, "b": 0.7, "c": 0.6, "d": 3.5, "f": 0.1},
        lambda x, y, z, a, b, c, d, f: [
            (z - b) * x - d * y,
            d * x + (z - b) * y,
            c + a * z - z**3 / 3 - x**2 + f * z * x**3,
        ],
        lambda x, y, z, a, b, c, d, f: [
            [x * z, -b * x, -d * y],
            [d * x, y * z, -b * y],
            [c, a * z, -(z**3) / 3, -(x**2), f * x**3 * z],
        ],
    ),
    _family(
        "chen_lee",
        4,
        "LSODA",
        3,
        {"a": 5, "d": -0.38},
        lambda x, y, z, a, d: [a * x - y * z, -10 * y + x * z, d * z + x * y / 3],
        lambda x, y, z, a, d: [[a * x, -y * z], [-10 * y, x * z], [d * z, x * y / 3]],
    ),
    _family(
        "dadras",
        5,
        "LSODA",
        3,
        {"a": 1.25, "b": 1.15, "c": 0.75, "d": 0.8, "e": 4},
        lambda x, y, z, a, b, c, d, e: [
            R(1, 2) * y - a * x + b * y * z,
            c * y - R(1, 2) * x * z + R(1, 2) * z,
            d * x * y - e * z,
        ],
        lambda x, y, z, a, b, c, d, e: [
            [R(1, 2) * y, -a * x, b * y * z],
            [c * y, -R(1, 2) * x * z, R(1, 2) * z],
            [d * x * y, -e * z],
        ],
    ),
    _family(
        "rossler",
        6,
        "LSODA",
        3,
        {"a": 0.1, "b": 0.1, "c": 14},
        lambda x, y, z, a, b, c: [-y - z, x + a * y, b + z * (x - c)],
        lambda x, y, z, a, b, c: [[-y, -z], [x, a * y], [b, x * z, -c * z]],
    ),
    _family(
        "halvorsen",
        7,
        "RK45",
        3,
        {"a": -0.35},
        lambda x, y, z, a: [
            a * x - y - z - R(1, 4) * y**2,
            a * y - z - x - R(1, 4) * z**2,
            a * z - x - y - R(1, 4) * x**2,
        ],
        lambda x, y, z, a: [
            [a * x, -y, -z, -R(1, 4) * y**2],
            [a * y, -z, -x, -R(1, 4) * z**2],
            [a * z, -x, -y, -R(1, 4) * x**2],
        ],
    ),
    _family(
        "fabrikant",
        8,
        "BDF",
        3,
        {"alpha": 0.98, "gamma": 0.1},
        lambda x, y, z, al, ga: [y * (z - 1 + x**2) + ga * x, x * (3 * z + 1 - x**2) + ga * y, -2 * z * (al + x * y)],
        lambda x, y, z, al, ga: [
            [y * z, -y, x**2 * y, ga * x],
            [3 * x * z, x, -(x**3), ga * y],
            [-2 * al * z, -2 * x * y * z],
        ],
    ),
    _family(
        "sprott_B",
        9,
        "BDF",
        3,
        {"a": 0.4, "b": 1.2, "c": 1},
        lambda x, y, z, a, b, c: [a * y * z, x - b * y, c - x * y],
        lambda x, y, z, a, b, c: [[a * y * z], [x, -b * y], [c, -x * y]],
    ),
    _family(
        "sprott_linz_F",
        10,
        "BDF",
        3,
        {"a": 0.5},
        lambda x, y, z, a: [y + z, -x + a * y, x**2 - z],
        lambda x, y, z, a: [[y, z], [a * y, -x], [x**2, -z]],
    ),
    _family(
        "four_wing",
        11,
        "BDF",
        3,
        {"a": 0.2, "b": 0.01, "c": -0.4},
        lambda x, y, z, a, b, c: [a * x + y * z, b * x + c * y - x * z, -z - x * y],
        lambda x, y, z, a, b, c: [[a * x, y * z], [b * x, c * y, -x * z], [-z, -x * y]],
    ),
    _family("lorenz_96_4d", 12, "BDF", 4, {"F": 8}, _lorenz_96(4), _lorenz_96_terms(4)),
    _family("lorenz_96_5d", 13, "BDF", 5, {"F": 8}, _lorenz_96(5), _lorenz_96_terms(5)),
    # Row 14: u_0 plays the role of t (du_0/dt = 1), so the forcing is cos(omega u_0).
    _family(
        "duffing",
        14,
        "BDF",
        3,
        {"alpha": -1, "beta": -5, "gamma": 8, "delta": -0.02, "omega": 0.5},
        lambda t, x, v, al, be, ga, de, om: [sympy.Integer(1), v, de * v + al * x + be * x**3 + ga * cos(om * t)],
        lambda t, x, v, al, be, ga, de, om: [[sympy.Integer(1)], [v], [de * v, al * x, be * x**3, ga * cos(om * t)]],
    ),
    _family("double_pendulum", 15, "BDF", 4, {"g": 9.81, "l": 1}, _double_pendulum, _double_pendulum_terms),
]

FAMILIES: dict[str, ODEFamily] = {f.name: f for f in _TABLE}
PRESETS: dict[str, tuple[str, ...]] = {
    # The reference's default `--types chaotic_ode_3d` is rows 1-11 and 14; `chaotic_ode_all` is all 15 (d_max 5).
    "chaotic_ode_3d": tuple(f.name for f in _TABLE if f.row <= 11 or f.row == 14),
    "chaotic_ode_all": tuple(FAMILIES),
}


def get_family(name: str) -> ODEFamily:
    """The family called `name`, or InputError listing the valid names."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown ODE family {name!r}; valid families: {', '.join(FAMILIES)}") from None


def family_names(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Resolve a preset name or a comma-separated list (or a sequence) of family names."""
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    if not names:
        raise InputError(f"empty ODE family list; give a preset ({', '.join(PRESETS)}) or family names")
    for n in names:
        if n in PRESETS:
            raise InputError(f"preset {n!r} cannot be mixed with family names")
        get_family(n)
    if len(set(names)) != len(names):
        raise InputError(f"duplicate ODE family in {', '.join(names)}")
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# Generation: draws, integration, rejection and data noise.


def solve(
    family: ODEFamily,
    params: Sequence[float],
    y0: Sequence[float],
    t_eval: np.ndarray | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> np.ndarray | None:
    """Integrate with the family's method; None if rejected (see below).

    y0 is the state at t_eval[0]. Returns shape (len(t_eval), dim). A trajectory is kept only if
    the solver reports status 0 and every |u| < 1e3; solver exceptions count as rejections.
    `vectorized=True` only lets the implicit methods build their finite-difference Jacobian
    from one batched RHS call; it does not change the method or tolerances.
    """
    p = family.check_params(params)
    y0 = family.check_state(y0)
    t = default_t_eval() if t_eval is None else np.asarray(t_eval, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0):
        raise InputError("t_eval must be a strictly increasing 1-D grid of at least 2 times")
    if not (rtol > 0 and atol > 0):
        raise InputError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    f = family.numeric_rhs()
    try:
        with np.errstate(all="ignore"):
            sol = solve_ivp(
                f, (t[0], t[-1]), y0, method=family.method, t_eval=t, args=(p,), rtol=rtol, atol=atol, vectorized=True
            )
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if sol.status != 0 or sol.y.shape != (family.dim, t.size):
        return None
    u = sol.y.T
    if not np.all(np.abs(u) < MAX_ABS):  # also rejects NaN/inf
        return None
    return u


def add_noise(u: np.ndarray, gamma: float = NOISE_GAMMA, rng: np.random.Generator | None = None) -> np.ndarray:
    """PROSE's `--noise_type additive` on a whole trajectory: u + sigma eps, ||sigma eps||_2 = gamma ||u||_2."""
    if gamma < 0:
        raise InputError(f"noise gamma must be >= 0, got {gamma}")
    rng = np.random.default_rng() if rng is None else rng
    u = np.asarray(u, dtype=float)
    eps = rng.standard_normal(u.shape)
    norm_eps = np.linalg.norm(eps)
    if norm_eps == 0.0:
        return u.copy()
    return u + (gamma * np.linalg.norm(u) / norm_eps) * eps


def _one_sample(name: str, seed: np.random.SeedSequence, t_eval: np.ndarray, gamma: float):
    """One parameter draw, up to 10 ICs, the first kept trajectory and its noisy copy."""
    family = FAMILIES[name]
    rng = np.random.default_rng(seed)
    params = family.sample_params(rng)
    for _ in range(IC_ATTEMPTS):
        y0 = family.sample_initial(rng)
        u = solve(family, params, y0, t_eval)
        if u is not None:
            return params, y0, u, add_noise(u, gamma, rng)
    return params, None, None, None


ENGINES = ("solve_ivp", "batched")
BATCH_CHUNK = 1024  # samples of one family per batched solve; fixed, so results do not depend on workers


def sample_seeds(seed: int, start: int, stop: int) -> list[np.random.SeedSequence]:
    """Children start..stop-1 of SeedSequence(seed): identical to `SeedSequence(seed).spawn(stop)[start:]`
    (numpy gives child i the spawn key (i,)), without making the earlier ones."""
    return [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(start, stop)]


def _batched_family(name: str, seeds: Sequence[np.random.SeedSequence], t_eval: np.ndarray, gamma: float):
    """`_one_sample` for many samples of one family at once, with the batched Dormand–Prince solver.

    Each sample's generator is used in exactly `_one_sample`'s order (params, IC 1, [IC 2, ...],
    noise), so both engines draw the same parameters and initial conditions. Rounds: integrate all
    pending samples together, draw a new IC for those rejected, up to IC_ATTEMPTS rounds.
    """
    from operators.batched_solve import integrate_batch

    family = FAMILIES[name]
    rhs = family.numeric_rhs()
    rngs = [np.random.default_rng(s) for s in seeds]
    params = np.array([family.sample_params(rng) for rng in rngs]).reshape(len(rngs), len(family.params))
    results: list = [(params[i], None, None, None) for i in range(len(rngs))]
    pending = np.arange(len(rngs))
    for _ in range(IC_ATTEMPTS):
        if pending.size == 0:
            break
        y0 = np.array([family.sample_initial(rngs[i]) for i in pending])
        u, ok = integrate_batch(rhs, params[pending], y0, t_eval)
        for j in np.flatnonzero(ok):
            i = pending[j]
            results[i] = (params[i], y0[j], u[j], add_noise(u[j], gamma, rngs[i]))
        pending = pending[~ok]
    return results


def _batched_unit(name, indices, seeds, t_eval, gamma):
    return indices, _batched_family(name, seeds, t_eval, gamma)


def generate_samples(
    order: Sequence[str],
    seeds: Sequence[np.random.SeedSequence],
    t_eval: np.ndarray,
    noise_gamma: float = NOISE_GAMMA,
    engine: str = "solve_ivp",
    workers: int = 1,
) -> list[tuple]:
    """(params, y0, clean, noisy) for sample i of family order[i] drawn from seeds[i]; y0, clean and
    noisy are None when all IC_ATTEMPTS initial conditions were rejected.

    engine "solve_ivp": one scipy solve per trajectory with the family's method.
    engine "batched": `operators.batched_solve.integrate_batch`, all samples of a family together
    in chunks of BATCH_CHUNK; `workers` processes take chunks. Both are deterministic and
    independent of `workers`.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    t = np.asarray(t_eval, dtype=float)
    if engine == "solve_ivp":
        args = (list(order), list(seeds), [t] * len(order), [noise_gamma] * len(order))
        if workers == 1:
            return list(map(_one_sample, *args))
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(order) // (4 * workers))
            return list(pool.map(_one_sample, *args, chunksize=chunk))
    units = []
    for name in dict.fromkeys(order):
        mine = [i for i, n in enumerate(order) if n == name]
        for start in range(0, len(mine), BATCH_CHUNK):
            idx = mine[start : start + BATCH_CHUNK]
            units.append((name, idx, [seeds[i] for i in idx], t, noise_gamma))
    results: list = [None] * len(order)
    if workers == 1 or len(units) == 1:
        done = (_batched_unit(*u) for u in units)
        pool = None
    else:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(units)))
        done = pool.map(_batched_unit, *zip(*units))
    try:
        for idx, res in done:
            for i, r in zip(idx, res):
                results[i] = r
    finally:
        if pool is not None:
            pool.shutdown()
    return results


def pack_samples(names: Sequence[str], order: Sequence[str], results: Sequence[tuple], t: np.ndarray) -> dict:
    """Stack kept samples into arrays padded to the d_max / p_max of `names` (see `generate`)."""
    d_max = max(FAMILIES[n].dim for n in names)
    p_max = max(len(FAMILIES[n].params) for n in names)
    kept = [(n, r) for n, r in zip(order, results) if r[2] is not None]
    m = len(kept)
    clean = np.zeros((m, t.size, d_max))
    noisy = np.zeros((m, t.size, d_max))
    y0s = np.zeros((m, d_max))
    params = np.full((m, p_max), np.nan)
    dims = np.zeros(m, dtype=np.int64)
    index = np.zeros(m, dtype=np.int64)
    names = list(names)
    for i, (name, (p, y0, u, un)) in enumerate(kept):
        d = FAMILIES[name].dim
        clean[i, :, :d], noisy[i, :, :d], y0s[i, :d] = u, un, y0
        params[i, : p.size] = p
        dims[i], index[i] = d, names.index(name)
    rejected = {n: sum(1 for o, r in zip(order, results) if o == n and r[2] is None) for n in names}
    return {
        "t": t,
        "clean": clean,
        "noisy": noisy,
        "y0": y0s,
        "dim": dims,
        "family": index,
        "params": params,
        "families": tuple(names),
        "rejected": rejected,
    }


def generate(
    family_names: str | Sequence[str],
    n_per_family: int,
    seed: int,
    workers: int = 1,
    t_eval: np.ndarray | None = None,
    noise_gamma: float = NOISE_GAMMA,
    engine: str = "solve_ivp",
) -> dict[str, object]:
    """A PROSE data set: `n_per_family` samples of each family, round-robin.

    Sample i (families visited round-robin, i = k * n_families + j) draws everything from
    `SeedSequence(seed).spawn(n)[i]`, so the result is identical for any `workers`.
    A sample whose 10 initial conditions are all rejected is dropped and counted in
    `rejected`; in practice this is rare near the nominal parameters.

    `engine` is "solve_ivp" (the reference's per-trajectory scipy solve with the family's method)
    or "batched" (`operators.batched_solve`, many trajectories per step, much faster). They draw
    the same parameters and initial conditions and agree to solver tolerance; a borderline
    trajectory (blow-up near t = 6) may be kept by one and rejected by the other, after which
    that sample's later draws differ.

    Returns a dict of arrays, padded to d_max (the largest family dimension) so that the
    families stack; `dim` says how many leading components are real (padded ones are zero,
    in both `clean` and `noisy`, and must be masked in losses and metrics):
      t (T,), clean (n, T, d_max), noisy (n, T, d_max), y0 (n, d_max), dim (n,),
      family (n,) index into `families`, params (n, p_max) NaN-padded, families (names),
      rejected {name: count}, seed.
    """
    names = _parse_names(family_names)
    if not isinstance(n_per_family, (int, np.integer)) or n_per_family < 1:
        raise InputError(f"n_per_family must be a positive integer, got {n_per_family!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    t = default_t_eval() if t_eval is None else np.asarray(t_eval, dtype=float)
    order = [names[j] for _ in range(n_per_family) for j in range(len(names))]
    seeds = sample_seeds(seed, 0, len(order))
    results = generate_samples(order, seeds, t, noise_gamma, engine, workers)
    return {**pack_samples(names, order, results, t), "seed": seed}


# `generate`'s argument is called `family_names` (its public signature); it resolves through this.
_parse_names = family_names
