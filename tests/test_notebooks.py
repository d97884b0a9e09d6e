"""Execute every analysis notebook (jupytext percent-format .py) with small settings."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("WORKBENCH_SMALL", "1")  # inherited by the kernel
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    text = "".join(
        o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream"
    )
    assert text.strip(), "the notebook printed nothing"


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found"


def test_a_plot_helper_then_plt_show_displays_inline(monkeypatch):
    """In Jupyter with the inline backend, a workbench plot helper's figure is shown by plt.show()
    (the helpers never change the backend), and ax= draws into the caller's axes."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)
    cells = [
        "import matplotlib.pyplot as plt\n"
        "from scaling.report import plot_ladder\n"
        "steps = [{'step': 'a', 'a': 0.7, 'a_ci': [0.6, 0.8]}, {'step': 'b', 'a': 0.5, 'a_ci': [0.45, 0.55]}]\n"
        "fig = plot_ladder(steps)\n"
        "plt.show()",
        "fig, (left, right) = plt.subplots(1, 2)\n"
        "assert plot_ladder(steps, ax=right) is fig and right.get_title()\n"
        "plt.show()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    for cell in notebook.cells:
        kinds = [o.get("output_type") for o in cell.outputs]
        assert "error" not in kinds, cell.outputs
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.outputs
