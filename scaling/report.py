"""Fitted laws as text tables, xarray Datasets (netCDF) and figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # the fits pull in torch/scipy; a text table should not
    import xarray as xr

    from scaling.fit import ParametricFit
    from scaling.isoflop import EnvelopeFit, IsoflopFit


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Plain aligned text table; `columns` are (key, header) pairs, floats shown with 4 significant digits."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, float) for x in v):
            return f"[{v[0]:.4g}, {v[1]:.4g}]"
        return str(v)

    body = [[cell(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, (_, h) in enumerate(columns)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line([h for _, h in columns]), line(["-" * w for w in widths])] + [line(b) for b in body])


def parametric_dataset(fit: ParametricFit, attrs: dict) -> xr.Dataset:
    """Fitted constants as scalars; bootstrap draws (if any) along dimension `draw`."""
    import xarray as xr

    s = fit.law.as_dict()
    data = {k: ((), float(v)) for k, v in s.items()}
    data["objective"] = ((), fit.objective)
    if fit.bootstrap is not None:
        for k, v in fit.bootstrap_table().items():
            data[f"{k}_draws"] = (("draw",), v)
    return xr.Dataset(data, attrs={**attrs, "n_points": fit.n_points, "n_starts": fit.n_starts,
                                   "n_at_optimum": fit.n_at_optimum, "converged": int(fit.converged),
                                   "tie": int(fit.tie)})


def isoflop_dataset(fit: IsoflopFit, attrs: dict) -> xr.Dataset:
    """Per-budget optima along dimension `C` (status says why a budget was refused), exponents as scalars."""
    import xarray as xr

    C = np.array([o.C for o in fit.budgets])
    per_budget = {
        "N_star": [o.N_star for o in fit.budgets], "D_star": [o.D_star for o in fit.budgets],
        "loss_star": [o.loss_star for o in fit.budgets], "log_N_star_std": [o.log_N_std for o in fit.budgets],
        "log_D_star_std": [o.log_D_std for o in fit.budgets], "n_sizes": [o.n_sizes for o in fit.budgets],
        "status": [o.status for o in fit.budgets],
    }
    data = {k: (("C",), np.asarray(v)) for k, v in per_budget.items()}
    N_star, N_ci = fit.N_star_at()
    data |= {"a": ((), fit.a), "b": ((), fit.b), "a_ci": (("bound",), fit.a_ci), "b_ci": (("bound",), fit.b_ci),
             "N_coef": ((), fit.N_law.coef), "D_coef": ((), fit.D_law.coef), "r2": ((), fit.N_law.r2),
             "N_star_at_5.88e23": ((), N_star), "a_draws": (("draw",), fit.a_draws),
             "b_draws": (("draw",), fit.b_draws)}
    return xr.Dataset(data, coords={"C": C, "bound": ["lo", "hi"]},
                      attrs={**attrs, "method": fit.method, "noise": fit.noise, "weighted": int(fit.weighted)})


def envelope_dataset(fit: EnvelopeFit, attrs: dict) -> xr.Dataset:
    import xarray as xr

    pts = fit.points
    return xr.Dataset({"N": (("C",), pts["N"].to_numpy()), "D": (("C",), pts["D"].to_numpy()),
                       "loss": (("C",), pts["loss"].to_numpy()), "a": ((), fit.a), "b": ((), fit.b),
                       "N_coef": ((), fit.N_law.coef), "r2": ((), fit.N_law.r2)},
                      coords={"C": pts["C"].to_numpy()}, attrs=attrs)


def _figure(ncols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)
    return fig, axes[0]


def _save(fig, path) -> None:
    import io

    import matplotlib.pyplot as plt

    from workbench.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_isoflop(fit: IsoflopFit, path, title: str = "") -> None:
    """Left: IsoFLOP curves with their minima. Right: N*(C) with the fitted frontier and its 95 % band."""
    fig, (left, right) = _figure(2)
    cmap = __import__("matplotlib").colormaps["viridis"]
    Cs = np.array([o.C for o in fit.budgets])
    shade = (np.log(Cs) - np.log(Cs.min())) / max(np.ptp(np.log(Cs)), 1e-12)
    for o, c in zip(fit.budgets, shade):
        color = cmap(c)
        left.scatter(o.sizes, o.losses, s=12, color=color, alpha=0.8 if o.ok else 0.3)
        if o.curve_N.size:
            left.plot(o.curve_N, o.curve_loss, color=color, lw=1)
        if o.ok:
            left.scatter([o.N_star], [o.loss_star], marker="*", s=90, color=color, edgecolor="k", zorder=3)
    left.set(xscale="log", xlabel="parameters N", ylabel="loss", title=title or "IsoFLOP curves")
    used = fit.used
    C = np.array([o.C for o in used])
    right.errorbar(C, [o.N_star for o in used], yerr=None, fmt="o", color="k", label="N* per budget")
    grid = np.geomspace(C.min() / 2, C.max() * 2, 100)
    right.plot(grid, fit.N_law(grid), color="C3", label=f"N* ∝ C^{fit.a:.3f}")
    if fit.a_draws.size:
        band = fit.coef_draws[:, None] * grid[None, :] ** fit.a_draws[:, None]
        right.fill_between(grid, np.quantile(band, 0.025, 0), np.quantile(band, 0.975, 0), color="C3", alpha=0.2,
                           label=f"95% CI a ∈ [{fit.a_ci[0]:.3f}, {fit.a_ci[1]:.3f}]")
    right.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N*", title="compute-optimal size")
    right.legend(fontsize=8)
    _save(fig, path)


def plot_parametric(fit: ParametricFit, N, D, loss, path, title: str = "") -> None:
    """Left: runs vs N coloured by compute, with the fitted law along IsoFLOP slices. Right: N*(C)."""
    fig, (left, right) = _figure(2)
    N, D, loss = (np.asarray(v, float) for v in (N, D, loss))
    C = 6 * N * D
    sc = left.scatter(N, loss, c=np.log10(C), s=10, cmap="viridis")
    fig.colorbar(sc, ax=left, label="log10 C")
    for c in np.geomspace(C.min(), C.max(), 6):  # the fitted law along IsoFLOP slices, same colours
        n = np.geomspace(N.min(), N.max(), 100)
        left.plot(n, fit.law.loss(n, c / (6 * n)), color=sc.cmap(sc.norm(np.log10(c))), lw=1)
    left.set(xscale="log", xlabel="parameters N", ylabel="loss", title=title or "L(N, D) fit",
             ylim=(loss.min() * 0.95, np.quantile(loss, 0.98) * 1.05))
    grid = np.geomspace(C.min(), 1e25, 100)
    Nopt, _ = fit.law.optimal_allocation(grid)
    right.plot(grid, Nopt, color="C3", label=f"N* ∝ C^{fit.law.a:.3f}")
    if fit.bootstrap is not None:
        E, A, B, al, be = fit.bootstrap.T
        G = (al * A / (be * B)) ** (1 / (al + be))
        band = G[:, None] * (grid[None, :] / 6) ** (be / (al + be))[:, None]
        right.fill_between(grid, np.quantile(band, 0.025, 0), np.quantile(band, 0.975, 0), color="C3", alpha=0.2,
                           label="95% bootstrap band")
    right.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N*", title="compute-optimal size")
    right.legend(fontsize=8)
    _save(fig, path)


def plot_ladder(steps: Sequence[dict], path, title: str = "Porian et al. reconciliation ladder") -> None:
    """Exponent a with its 95 % CI per ladder step, against Kaplan's 0.88 / 0.73 and Hoffmann's 0.5."""
    fig, (ax,) = _figure(1)
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
    _save(fig, path)


def plot_mup_prediction(result: dict, path, floor: float | None = None,
                        title: str = "muP width sweep: loss prediction from the smaller widths") -> None:
    """Loss vs N for a `scaling.mup_predict.predict_sweep` result: the fitted widths, the fitted
    law extended to the held-out widths with its band, and their actual losses."""
    fig, (ax,) = _figure(1)
    fitted, held = result["fitted"], result["predictions"]
    a, b, c = (result["fit"][k] for k in ("a", "b", "c"))
    n_fit = np.array([r["params"] for r in fitted], dtype=float)
    n_held = np.array([r["params"] for r in held], dtype=float)
    grid = np.geomspace(n_fit.min() / 1.3, n_held.max() * 1.3, 200)
    ax.plot(grid, a * grid ** b + c, color="C0", lw=1.2, label=f"fit  {a:.3g}·N^{b:.3f} + {c:.3f}")
    ax.scatter(n_fit, [r["actual"] for r in fitted], color="C0", zorder=3, label="fitted widths")
    ax.errorbar(n_held, [r["predicted"] for r in held],
                yerr=[[r["predicted"] - r["low"] for r in held], [r["high"] - r["predicted"] for r in held]],
                fmt="s", mfc="none", color="C0", capsize=4, label=f"predicted ({100 * result['level']:.0f}% band)")
    ax.scatter(n_held, [r["actual"] for r in held], marker="*", s=90, color="C3", zorder=4,
               label="actual (trained afterwards)")
    for r in (*fitted, *held):
        ax.annotate(f"w{r['width']}", (r["params"], r["actual"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color="0.35")
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor, ls=":", color="0.5", lw=0.8)
        ax.text(grid[0], floor, "source entropy rate", fontsize=7, va="bottom", color="0.4")
    ax.set_xscale("log")
    ax.set(xlabel=f"N ({result.get('count', 'params')})", ylabel=f"{result.get('loss', 'loss')} (nats/token)",
           title=title)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_lr_transfer(sweeps: dict, path) -> None:
    """Held-out loss vs learning rate, one curve per width, one panel per parametrisation
    (the muTransfer figure); each sweep has `val_loss` over (width, lr, seed)."""
    fig, axes = _figure(len(sweeps))
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
    _save(fig, path)
