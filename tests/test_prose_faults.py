"""PROSE under faults: corrupt shards are rebuilt, unwritable outputs fail before any work, and bad
expressions get one clear line (operators/prose/dataset.py, cli.py, tokens.py, evaluate.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from operators.prose.dataset import load_dataset
from tests.conftest import assert_clean_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "jobs" / "configs" / "prose_data_tiny.yaml")
# 3 families x 30 train (shards of 40: 40, 40, 10) and x 8 val (one shard of 24): seconds to build.
SMALL = ["n_per_family=30", "val_per_family=8", "shard_size=40"]
ARRAYS = ("clean", "noisy", "y0", "dim", "family", "params", "index")


def _make_data_args(out) -> list[str]:
    return ["prose", "make-data", TINY, "--set", f"out={out}", *[x for s in SMALL for x in ("--set", s)]]


def _in_process(*argv: str) -> int:
    from workbench.cli import main

    return main(list(argv))


# --- item: a corrupt shard is rebuilt, never reported complete ------------------------------------
def test_make_data_rebuilds_truncated_and_damaged_shards(tmp_path):
    out = tmp_path / "data"
    args = _make_data_args(out)
    first = run_cli(*args, "--executor", "debug")
    assert first.returncode == 0, first.stderr
    before = {split: load_dataset(out, split) for split in ("train", "val")}

    npz = (out / "shard-00001.npz").read_bytes()
    (out / "shard-00001.npz").write_bytes(npz[: len(npz) // 2])  # lost its zip central directory
    tokens = (out / "shard-00000.tokens.jsonl").read_bytes()
    (out / "shard-00000.tokens.jsonl").write_bytes(tokens[: len(tokens) // 2])  # cut mid-line
    val = (out / "val-00000.tokens.jsonl").read_text().splitlines(keepends=True)
    (out / "val-00000.tokens.jsonl").write_text("".join(val[:5]))  # cut at a line boundary
    flipped = bytearray((out / "shard-00002.npz").read_bytes())
    flipped[len(flipped) // 3] ^= 0xFF  # inside an array: only its CRC-32 tells
    (out / "shard-00002.npz").write_bytes(bytes(flipped))
    assert run_cli(*args, "--check").returncode == 2

    again = run_cli(*args, "--executor", "debug", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    damaged = ["shard-00000", "shard-00001", "shard-00002", "val-00000"]
    assert summary["rebuilt_corrupt"] == damaged and sorted(summary["built"]) == damaged
    assert "rebuilding shard-00001" in again.stderr and "truncated or corrupt" in again.stderr

    check = run_cli(*args, "--check")
    assert check.returncode == 0 and "complete" in check.stdout, check.stderr
    for split, data in before.items():
        after = load_dataset(out, split)
        for key in ARRAYS:
            np.testing.assert_array_equal(after[key], data[key], err_msg=f"{split} {key}")
        assert after["tokens"] == data["tokens"] and after["rejected"] == data["rejected"]
    # Nothing left to repair: a third run builds nothing.
    third = run_cli(*args, "--executor", "debug", "--json")
    assert third.returncode == 0 and json.loads(third.stdout)["built"] == []


def test_build_does_not_list_a_shard_damaged_after_planning(tmp_path, monkeypatch):
    """finish_build reads back every shard it did not verify itself: a bad one is an error."""
    from operators.prose import dataset
    from operators.prose.cli import load_data_config, make_data

    config = load_data_config(TINY, [f"out={tmp_path / 'data'}", *SMALL])
    make_data(config, "debug")
    real_build = dataset.build_shard

    def build_then_damage(settings, shard, out, workers=1):
        result = real_build(settings, shard, out, workers)
        path = shard.tokens(out)
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
        return result

    (tmp_path / "data" / "shard-00001.npz").unlink()
    monkeypatch.setattr(dataset, "build_shard", build_then_damage)
    with pytest.raises(dataset.InputError, match=r"shard-00001\.tokens\.jsonl has 3 lines"):
        make_data(config, "debug")


# --- item: unwritable outputs fail before any work --------------------------------------------------
def test_make_data_unwritable_outputs_exit_2_before_building(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    assert_clean_error(run_cli(*_make_data_args(blocker / "data"), "--executor", "debug"), str(blocker))
    assert_clean_error(run_cli(*_make_data_args("/proc/prose-data"), "--executor", "debug"), "/proc/prose-data")
    # A directory where the manifest (written last) goes: refused before any shard is built.
    out = tmp_path / "data"
    (out / "manifest.json").mkdir(parents=True)
    assert_clean_error(run_cli(*_make_data_args(out), "--executor", "debug"), "manifest.json", "directory")
    assert not list(out.glob("*.npz"))
    (out / "manifest.json").rmdir()
    (out / "shard-00001.npz").mkdir()
    assert_clean_error(run_cli(*_make_data_args(out), "--executor", "debug"), "shard-00001.npz", "directory")
    assert not [p for p in out.glob("*.npz") if p.is_file()]


# --- items: bad expressions get one clear line ------------------------------------------------------
def _one_line_error(capsys, *argv: str) -> str:
    """Run `workbench ...` in this process; assert exit 2 with one line on stderr; return it."""
    capsys.readouterr()
    assert _in_process(*argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "" and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        # float64 cannot hold these: 1e-400 would silently be encoded as 0, 1e400 as inf.
        ("1e-400*u_0", ["1.00e-400", "underflows float64"]),
        ("u_0/10**400 + u_1", ["1.00e-400", "underflows float64"]),
        ("u_0 - 1e400", ["1.00e+400", "overflows float64"]),
        ("exp(u_0)", ["unsupported function exp()", "sin, cos"]),
        ("sin(u_0) + Function(u_1)", ["unsupported function Function()", "sin, cos"]),
        ("u_0(u_1 + 1)", ["u_0 is a state, not a function"]),
        ("sin(u_0", ["unmatched parenthesis", "'(' at character 4"]),
        ("(u_0 + u_1))*2", ["unmatched parenthesis", "')' at character 12"]),
        ("u_0**(10**400)", ["integer powers are limited to"]),
    ],
)
def test_tokenize_names_what_is_wrong_with_an_expression(capsys, expr, fragments):
    line = _one_line_error(capsys, "prose", "tokenize", f"u_1|{expr}")
    for fragment in fragments:
        assert fragment in line, line
    assert "Function' is not defined" not in line and "EOF in multi-line" not in line


def test_a_huge_expression_is_not_echoed_whole(capsys):
    huge = "+".join(["u_0"] * 25_000)  # 100 kB
    for expr in (huge + ")", huge + "+x", huge + "+exp(u_1)", "u_0|" * 20_000 + "|"):
        line = _one_line_error(capsys, "prose", "tokenize", expr)
        assert len(line) < 400 and "…" in line and "more characters" in line, line[:500]


def test_fixed_constants_still_tokenize():
    from operators.prose.cli import parse_system
    from operators.prose.tokens import tokenize

    # Tiny but representable constants keep the documented flush to zero; 0 itself is fine.
    assert tokenize(parse_system("1e-20*u_0 + 0*u_1 + sin(u_2)|cos(u_0)**2")) == (
        "add mul + N000 E0 u_0 sin u_2 | pow2 cos u_0".split()
    )


def test_evaluate_unwritable_out_exits_2_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from operators.prose import evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(evaluate, "load_run", no_work)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    run = str(tmp_path / "run")
    line = _one_line_error(capsys, "prose", "evaluate", run, "--out", str(blocker / "eval"))
    assert str(blocker / "eval") in line
    line = _one_line_error(capsys, "prose", "evaluate", run, "--out", "/proc/prose-eval")
    assert "/proc/prose-eval" in line
    (tmp_path / "eval" / "metrics.nc").mkdir(parents=True)  # a directory where the result goes
    line = _one_line_error(capsys, "prose", "evaluate", run, "--out", str(tmp_path / "eval"))
    assert "metrics.nc" in line and "directory" in line
