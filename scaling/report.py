"""Text tables and figures shared by the scaling commands.

Each method's own Dataset and figure live in its module under `scaling.methods`; this module
stays light (numpy only at import) because those modules are imported when `workbench` builds
its parser.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.figures import finish_figure, new_figure


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Plain aligned text table; `columns` are (key, header) pairs, floats shown with 4 significant digits.

    A NaN or infinite number is shown as n/a: it marks a value that could not be computed (an
    interval without bootstrap draws), never a result."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}" if np.isfinite(v) else "n/a"
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, float) for x in v):
            return f"[{v[0]:.4g}, {v[1]:.4g}]" if np.all(np.isfinite(v)) else "n/a"
        return str(v)

    body = [[cell(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, (_, h) in enumerate(columns)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line([h for _, h in columns]), line(["-" * w for w in widths])] + [line(b) for b in body])


def figure(ncols: int, ax=None):
    """A row of `ncols` axes, (figure, axes), made by `workbench.figures.new_figure` (a pyplot
    figure where pyplot is in use, so `plt.show()` shows it; a bare Figure in the CLI); with `ax`,
    the caller's axes (one panel)."""
    fig, axes = new_figure((5.5 * ncols, 4.2), ncols=ncols, ax=ax)
    return fig, axes[0]


def colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def save_figure(fig, path=None, ax=None):
    """Lay out `fig` (unless it is the caller's, `ax`), write it as a PNG atomically when `path` is
    given, and return it."""
    return finish_figure(fig, path, own=ax is None)


def fill_band(ax, grid, draws, label: str) -> None:
    """The central 95 % of `draws` (one curve per row, over `grid`) as a shaded band."""
    ax.fill_between(grid, np.quantile(draws, 0.025, 0), np.quantile(draws, 0.975, 0), color="C3", alpha=0.2,
                    label=label)  # fmt: skip


def plot_ladder(steps: Sequence[dict], path=None, title: str = "Porian et al. reconciliation ladder", *, ax=None):
    """Exponent a with its 95 % CI per ladder step, against Kaplan's 0.88 / 0.73 and Hoffmann's 0.5.
    Returns the figure; writes it to `path` when given; draws into `ax` when given."""
    fig, (ax,) = figure(1, ax)
    x = np.arange(len(steps))
    a = np.array([s["a"] for s in steps])
    lo = np.array([s["a_ci"][0] for s in steps])
    hi = np.array([s["a_ci"][1] for s in steps])
    ax.errorbar(x, a, yerr=[a - lo, hi - a], fmt="o", capsize=4, color="k", label="this fit (95% CI)")
    pub = [s.get("published_a") for s in steps]
    if all(p is not None for p in pub):
        ax.scatter(x + 0.12, pub, marker="x", color="C3", label="published")
    for ref, label in ((0.88, "Kaplan fixed-batch 0.88"), (0.73, "Kaplan 0.73"), (0.5, "Hoffmann 0.5")):
        ax.axhline(ref, ls=":", color="0.5", lw=0.8)
        ax.text(-0.4, ref, label, fontsize=7, va="bottom", ha="left", color="0.4")
    ax.set_xticks(x, [s["step"] for s in steps], rotation=20, fontsize=8)
    ax.set(ylabel="a  (N* ∝ C^a)", title=title)
    ax.legend(fontsize=8)
    return save_figure(fig, path, ax)


def plot_mup_prediction(
    result: dict,
    path=None,
    floor: float | None = None,
    title: str = "muP width sweep: loss prediction from the smaller widths",
    *,
    ax=None,
):
    """Loss vs N for a `scaling.mup_predict.predict_sweep` result: the fitted widths, the fitted
    law extended to the held-out widths with its band, and their actual losses. Returns the
    figure; writes it to `path` when given; draws into `ax` when given."""
    fig, (ax,) = figure(1, ax)
    fitted, held = result["fitted"], result["predictions"]
    a, b, c = (result["fit"][k] for k in ("a", "b", "c"))
    n_fit = np.array([r["params"] for r in fitted], dtype=float)
    n_held = np.array([r["params"] for r in held], dtype=float)
    grid = np.geomspace(n_fit.min() / 1.3, n_held.max() * 1.3, 200)
    ax.plot(grid, a * grid**b + c, color="C0", lw=1.2, label=f"fit  {a:.3g}·N^{b:.3f} + {c:.3f}")
    ax.scatter(n_fit, [r["actual"] for r in fitted], color="C0", zorder=3, label="fitted widths")
    ax.errorbar(
        n_held,
        [r["predicted"] for r in held],
        yerr=[[r["predicted"] - r["low"] for r in held], [r["high"] - r["predicted"] for r in held]],
        fmt="s",
        mfc="none",
        color="C0",
        capsize=4,
        label=f"predicted ({100 * result['level']:.0f}% band)",
    )
    ax.scatter(
        n_held, [r["actual"] for r in held], marker="*", s=90, color="C3", zorder=4, label="actual (trained afterwards)"
    )
    for r in (*fitted, *held):
        ax.annotate(
            f"w{r['width']}",
            (r["params"], r["actual"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color="0.35",
        )
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor, ls=":", color="0.5", lw=0.8)
        ax.text(grid[0], floor, "source entropy rate", fontsize=7, va="bottom", color="0.4")
    ax.set_xscale("log")
    ax.set(
        xlabel=f"N ({result.get('count', 'params')})", ylabel=f"{result.get('loss', 'loss')} (nats/token)", title=title
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path, ax)


def plot_lr_transfer(sweeps: dict, path=None):
    """Held-out loss vs learning rate, one curve per width, one panel per parametrisation
    (the muTransfer figure); each sweep has `val_loss` over (width, lr, seed). Returns the figure."""
    fig, axes = figure(len(sweeps))
    for ax, (name, ds) in zip(axes, sweeps.items()):
        mean = ds["val_loss"].mean("seed")
        widths = [int(w) for w in ds["width"].values]
        colours = [f"C{i}" for i in range(len(widths))]
        for w, colour in zip(widths, colours):
            ax.plot(ds["lr"].values, mean.sel(width=w).values, "o-", ms=3, color=colour, label=f"width {w}")
        ax.set_xscale("log", base=2)
        finite = mean.values[np.isfinite(mean.values)]
        if finite.size:
            ax.set_ylim(finite.min() - 0.05, min(finite.max(), np.percentile(finite, 75) * 1.3) + 0.05)
        ax.set(xlabel="learning rate", ylabel="held-out loss", title=f"{name}: loss vs learning rate")
        ax.legend(fontsize=7)
    return save_figure(fig, path)
