"""`workbench prose families | tokenize | detokenize`: the JSON interface other tools rely on."""

import json

import pytest

from tests.conftest import assert_clean_error, run_cli


def _json(*args):
    result = run_cli("prose", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_families_json_lists_name_dim_and_sympy_rhs():
    rows = _json("families")
    assert len(rows) == 15 and {r["name"] for r in rows} >= {"lorenz_3d", "double_pendulum", "lorenz_96_5d"}
    lorenz = next(r for r in rows if r["name"] == "lorenz_3d")
    assert lorenz["dim"] == 3 and len(lorenz["rhs"]) == 3 and "sigma" in lorenz["rhs"][0]
    assert len(_json("families", "--preset", "chaotic_ode_3d")) == 12


def test_tokenize_then_detokenize_round_trips_lorenz():
    tokens = _json("tokenize", "10*(u_1 - u_0)|u_0*(28 - u_2) - u_1|u_0*u_1 - 8/3*u_2")
    assert tokens.count("|") == 2 and "N280" in tokens and "N267" in tokens
    decoded = _json("detokenize", *tokens)
    assert decoded["valid"] and len(decoded["expr"]) == 3
    import sympy

    u = sympy.symbols("u_0:3")
    got = [sympy.sympify(e, locals={f"u_{i}": u[i] for i in range(3)}) for e in decoded["expr"]]
    want = [10 * (u[1] - u[0]), u[0] * (28 - u[2]) - u[1], u[0] * u[1] - 2.67 * u[2]]
    assert all(sympy.simplify(g - w) == 0 for g, w in zip(got, want))
    skeleton = _json("tokenize", "sin(u_1) - 0.17*u_0", "--skeleton")
    assert "<PLACEHOLDER>" in skeleton and not any(t.startswith("N") for t in skeleton)


def test_detokenize_reports_invalid_output_without_failing():
    decoded = _json("detokenize", "add", "u_0")
    assert decoded == {"valid": False, "expr": None, "error": decoded["error"]} and decoded["error"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["families", "--preset", "lorenz,bogus"], "unknown ODE family"),
        (["tokenize", "u_7 + 1"], "u_7"),
        (["tokenize", "u_0 +* 1"], "not an expression"),
        (["tokenize", "u_0||u_1"], "component 1"),
        (["tokenize", "__import__('os').getcwd()"], "not an expression"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, fragment):
    assert_clean_error(run_cli("prose", *args), fragment)
