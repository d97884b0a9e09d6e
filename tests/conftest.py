"""Shared fixtures (the Epoch Chinchilla points, not bundled: no licence), the CLI runner, and the
order and threading that let the suite share two cores (`./wb test` runs it with pytest-xdist).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# OpenMP threads that wait for work sleep instead of spinning. Tests run side by side (two xdist
# workers, job arrays of local processes), so spinning threads would steal the cores the other
# processes need; the numbers do not change, only how idle threads wait. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    """Slow tests first: with `--dist loadfile` the files that hold them start first, and the many
    short files fill the other worker meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def epoch_runs():
    from scaling.datasets import load_epoch_chinchilla

    try:
        return load_epoch_chinchilla()
    except FileNotFoundError as reason:
        pytest.skip(
            f"Epoch Chinchilla data is not bundled (no licence) and the shared reference folder is absent: {reason}"
        )


@pytest.fixture(scope="session")
def epoch_fit(epoch_runs):
    from scaling.fit import fit_parametric

    return fit_parametric(epoch_runs["N"], epoch_runs["D"], epoch_runs["loss"])


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run `workbench ...` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def one_line_error(capsys, *argv: str) -> str:
    """`workbench ARGV` in this process: exit 2, one line on stderr and no traceback; that line."""
    from workbench.cli import main

    capsys.readouterr()
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "" and "Traceback" not in captured.err, captured.err
    return lines[0]


def assert_clean_error(result, *fragments):
    """Exit 2, one line on stderr naming the problem, no traceback, nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""


def processes(fragment: str, under: Path) -> list[int]:
    """Pids whose command line holds `fragment` and the path `under`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if fragment in cmdline and str(under) in cmdline:
                pids.append(int(proc.name))
    return pids
