"""The README's Python API examples run as they stand (each block in a fresh interpreter, in an
empty folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_an_example_per_area():
    blocks = _blocks()
    assert len(blocks) == 4
    for needed in ("fit_parametric", "collect(", "evaluate(", "plt.show()"):
        assert any(needed in block for block in blocks), needed


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4))
def test_readme_python_example_runs(index, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", _blocks()[index]], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() or index == 3
