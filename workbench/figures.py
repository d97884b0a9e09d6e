"""How every plot helper makes and saves its figure, so that it works in a notebook and in the CLI.

- `new_figure` never changes matplotlib's backend. Where pyplot is in use (a notebook or a
  script that imported it), the figure is a pyplot figure, so `plt.show()` and Jupyter's inline
  display show it like any other; elsewhere (the `workbench` command never imports pyplot) it is
  a bare `matplotlib.figure.Figure`, which needs no backend and leaves no global state behind.
- `ax=` draws into the caller's axes instead (single-panel helpers), for composing figures.
- `finish_figure` writes the PNG atomically when a path is given and returns the figure.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from workbench.atomic import atomic_savefig
from workbench.errors import InputError

__all__ = ["finish_figure", "new_figure"]


def new_figure(figsize: tuple[float, float], *, nrows: int = 1, ncols: int = 1, ax: Any = None, **kwargs):
    """(figure, axes as an (nrows, ncols) array). With `ax`, its figure and [[ax]] (one panel only)."""
    if ax is not None:
        if nrows * ncols != 1:
            raise InputError(f"ax=: this figure has {nrows * ncols} panels; pass no ax and use the returned figure")
        return ax.figure, np.array([[ax]], dtype=object)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        fig = pyplot.figure(figsize=figsize, **kwargs)
    else:
        from matplotlib.figure import Figure  # matplotlib only when a figure is drawn

        fig = Figure(figsize=figsize, **kwargs)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def finish_figure(fig, path=None, *, own: bool = True, dpi: int = 120, **savefig_kwargs):
    """Lay out (when the helper made the figure: `own`), write to `path` if given, return `fig`."""
    if own and not fig.get_layout_engine():
        fig.tight_layout()
    if path is not None:
        atomic_savefig(fig, path, dpi=dpi, **savefig_kwargs)
    return fig
