"""Installing into an environment that already has torch (a cluster's CUDA build, here the CPU
2.13.0 one) must leave torch, torchvision and the nvidia-* wheels as they are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROTECTED = ("torch", "torchvision")


def _run(*args: str, timeout: float = 900, cwd=None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def _touched(report: dict) -> list[str]:
    names = [item["metadata"]["name"].lower() for item in report.get("install", [])]
    return [n for n in names if n in PROTECTED or n.startswith("nvidia-")]


@pytest.mark.slow
def test_pip_install_keeps_an_installed_torch(tmp_path):
    import torch

    version = torch.__version__.split("+")[0]
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    pip = (python, "-m", "pip", "--disable-pip-version-check")
    _run(*pip, "install", "--quiet", f"torch=={version}")
    before = _run(python, "-c", "import torch; print(torch.__version__)").strip()

    # A copy of the project: building it writes build/ and *.egg-info next to its sources.
    import shutil

    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                 ".pytest_cache", "runs", ".device"))  # fmt: skip
    # The resolver's plan for the README's route: nothing of torch's is installed or changed.
    for target in (str(source), f"{source}[dev]"):
        report_path = tmp_path / "report.json"
        _run(*pip, "install", "--dry-run", "--quiet", "--report", str(report_path), target)
        assert _touched(json.loads(report_path.read_text())) == [], target
    report_path = tmp_path / "mup.json"
    _run(*pip, "install", "--dry-run", "--quiet", "--no-deps", "--report", str(report_path), "mup>=1.0")
    assert [i["metadata"]["name"] for i in json.loads(report_path.read_text())["install"]] == ["mup"]

    # And followed for real: torch is the same, the workbench and its muP model import.
    _run(*pip, "install", "--quiet", str(source))
    _run(*pip, "install", "--quiet", "--no-deps", "mup>=1.0")
    after = _run(python, "-c", "import torch; print(torch.__version__)").strip()
    assert after == before
    _run(python, "-c", "import workbench.lm.model, workbench.cli; print(workbench.__version__)", cwd=tmp_path)
    listed = _run(*pip, "list", "--format", "json")
    assert not [p["name"] for p in json.loads(listed) if p["name"].lower() == "torchvision"]


def test_without_mup_the_lm_says_how_to_install_it(tmp_path):
    """A clear InputError (exit 2 at the CLI), not a ModuleNotFoundError."""
    code = (
        "import sys; sys.modules['mup'] = None\n"  # as if mup were not installed
        "from workbench.errors import InputError\n"
        "try:\n    import workbench.lm.model\nexcept InputError as e:\n    print(e)\n"
    )
    out = _run(sys.executable, "-c", code)
    assert "pip install --no-deps 'mup>=1.0'" in out and "torchvision would replace your torch" in out
