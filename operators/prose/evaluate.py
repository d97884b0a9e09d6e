"""Evaluate a trained PROSE model: the metrics of the official PROSE `prose_ode/evaluate.py`
(github.com/felix-lyx/prose), per family and overall.

    ds = evaluate("runs/prose_tiny/<run id>")                 # the run's validation set
    ds = evaluate(run_dir, "data/prose_test", n=2000, out="eval/")   # + metrics.nc, trajectories.png
    workbench prose evaluate RUN [--data PATH] [--n N] [--out DIR] [--json]

Per sample (dimension ``sample``), then averaged per family (``family_name``) and overall:

1. **Data relative L²** (official metric 1): √(Σ(û−u)² / (Σu² + 1e-6)) over the query times and the
   family's real components, on the windows (2,6], (2,4] and (4,6], against the noisy targets
   (the official metric, with a ≈2 % floor from the 2 % data noise) and the clean ones.
2. The same for the **last-value baseline**: the last observed (noisy) state held constant.
3. **Valid** (official metric 2): the greedy output (the official code decodes greedily only)
   decodes to ``dim`` components and is finite at 50 points drawn from U[−5, 5]^d.
4. **Expression relative L²** (official metric 3): √(Σ‖f̂(x_k) − f(x_k)‖² / (Σ‖f(x_k)‖² + 1e-6)) at
   those points, for valid outputs only (NaN otherwise; read it with the valid fraction); f is
   the target expression.
5. **Re-solve** (official metric 4, `--text_ode_solve`): f̂ integrated with BDF (rtol 1e-4, atol
   1e-6) from the noisy u(0) over [0, 6] and scored with metric 1; a solve that fails, blows
   up (|u| > 1e6), or exceeds its wall-time or right-hand-side budget counts as a failure.

The symbol input is the target's skeleton with the term corruption of `operators.prose.tokens`
drawn once, in sample order, from seed 42 (the official `--test_env_seed 42`), so every run is
scored on the same inputs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
import xarray as xr
from matplotlib.mathtext import MathTextParser
from scipy.integrate import solve_ivp
from tqdm import tqdm

from operators.prose.config import ProseTrainableConfig
from operators.prose.dataset import load_dataset
from operators.prose.model import ProseModel
from operators.prose.samples import ProseData, corrupted_inputs, load_data, make_batch, prepare_data, run_model
from operators.prose.skeleton import SkeletonCorruptor
from operators.prose.tokens import Vocabulary, detokenize
from workbench.atomic import check_writable, check_writable_dir
from workbench.config import from_dict
from workbench.errors import InputError
from workbench.figures import finish_figure, new_figure
from workbench.store import atomic_write_netcdf

__all__ = ["WINDOWS", "evaluate", "format_summary", "load_run", "relative_l2", "summarize"]

WINDOWS = {"2-6": (2.0, 6.0), "2-4": (2.0, 4.0), "4-6": (4.0, 6.0)}  # (lo, hi], as the official per-window errors
TARGETS = ("noisy", "clean")
METRIC_EPS = 1e-6  # Σu² + 1e-6, as the official metric
N_POINTS, POINT_RANGE = 50, 5.0  # metrics 2/3: 50 points from U[-5, 5]^d
RESOLVE_RTOL, RESOLVE_ATOL = 1e-4, 1e-6  # metric 4, as the official re-solve
RESOLVE_BLOWUP = 1e6


def relative_l2(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Metric 1 per sample: sqrt(Σ(û-u)² / (Σu² + 1e-6)) over all but the first axis.

    ``mask`` (broadcastable to the arrays) selects the entries that count (real components).
    """
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    weight = np.ones_like(target) if mask is None else np.broadcast_to(mask, target.shape).astype(np.float64)
    axes = tuple(range(1, target.ndim))
    error = (((predicted - target) ** 2) * weight).sum(axis=axes)
    norm = ((target**2) * weight).sum(axis=axes)
    return np.sqrt(error / (norm + METRIC_EPS))


# --------------------------------------------------------------------------------------------
# Loading a run
# --------------------------------------------------------------------------------------------


def load_run(run_dir) -> tuple[Any, Any]:
    """(ProseModel in eval mode, ProseTrainableConfig) of a finished `prose` run directory.

    The directory needs config.json (a job's config, or the trainable's config alone) and the
    final weights model.pt; anything missing is one InputError naming it.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"run directory {path} does not exist")
    weights, config_path = path / "model.pt", path / "config.json"
    if not weights.is_file():
        raise InputError(f"{path} has no model.pt: it is not a finished prose run (train it to the end first)")
    if not config_path.is_file():
        raise InputError(f"{path} has no config.json, so the model's sizes are unknown")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {config_path}: {error}") from None
    if isinstance(raw, dict) and "kind" in raw:
        if raw["kind"] != "prose":
            raise InputError(f"{path} is a {raw['kind']!r} run, not a prose run")
        raw = raw.get("model") or {}
    config = from_dict(ProseTrainableConfig, raw, source=str(config_path))
    try:
        state = torch.load(weights, weights_only=True, map_location="cpu")
    except Exception as error:
        raise InputError(f"cannot read {weights}: {type(error).__name__}: {error}") from None
    state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    model = ProseModel(config.model_config())
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise InputError(f"{weights} does not match the model of {config_path}: {str(error).splitlines()[0]}") from None
    return model.eval(), config


def _as_data(data, config, split: str = "val"):
    if data is None or (isinstance(data, str) and not data):
        return load_data(config)[1]
    if isinstance(data, ProseData):
        return data
    if isinstance(data, dict):
        return prepare_data(data, config.d_max, source="data")
    return prepare_data(load_dataset(str(data), split), config.d_max, source=f"{data} ({split} split)")


# --------------------------------------------------------------------------------------------
# Symbolic metrics
# --------------------------------------------------------------------------------------------


def _numeric(exprs, dim: int):
    """sympy expressions in u_0..u_{dim-1} -> f(x) with x (dim, k) -> (dim, k)."""
    symbols = sympy.symbols([f"u_{i}" for i in range(dim)])
    functions = [sympy.lambdify(symbols, e, modules="numpy") for e in exprs]

    def f(x: np.ndarray) -> np.ndarray:
        shape = np.shape(x)[1:]
        return np.stack([np.broadcast_to(np.asarray(g(*x), dtype=np.float64), shape) for g in functions])

    return f


class _Budget(Exception):
    """Re-solve stopped: its wall-time or evaluation budget is spent."""


def resolve(f, y0: np.ndarray, t: np.ndarray, *, timeout_s: float = 10.0, max_evals: int = 200_000):
    """Integrate dy/dt = f(y) (metric 4: BDF, rtol 1e-4, atol 1e-6); None if it fails.

    A decoded system can be stiff or blow up; the wall-time and right-hand-side-call budgets
    keep one bad sample from hanging the whole evaluation.
    """
    deadline, calls = time.monotonic() + timeout_s, [0]

    def rhs(_t, y):
        calls[0] += 1
        if calls[0] > max_evals or time.monotonic() > deadline:
            raise _Budget
        return f(y.reshape(len(y), -1)).reshape(y.shape)

    def blowup(_t, y):
        return RESOLVE_BLOWUP - np.max(np.abs(y))

    blowup.terminal = True
    try:
        with np.errstate(all="ignore"):
            solution = solve_ivp(
                rhs, (t[0], t[-1]), y0, method="BDF", t_eval=t, rtol=RESOLVE_RTOL, atol=RESOLVE_ATOL, events=blowup
            )
    except (_Budget, ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    if solution.status != 0 or solution.y.shape != (len(y0), len(t)) or not np.all(np.isfinite(solution.y)):
        return None
    return solution.y.T


def _symbolic_metrics(
    decoded_tokens, target_tokens, dim: int, noisy_u0, t, rng, *, resolve_ode: bool, timeout_s: float
):
    """(valid, expression rel L², re-solved trajectory or None, decoded exprs or None) of one sample."""
    decoded = detokenize(decoded_tokens, dim=dim)
    truth = detokenize(target_tokens, dim=dim)
    if not truth.valid:
        raise InputError(f"a target does not decode ({truth.error}): {' '.join(target_tokens)}")
    points = rng.uniform(-POINT_RANGE, POINT_RANGE, size=(dim, N_POINTS))
    if not decoded.valid:
        return False, math.nan, None, None
    try:
        with np.errstate(all="ignore"):
            f_hat = _numeric(decoded.exprs, dim)
            predicted = f_hat(points)
    except Exception:
        return False, math.nan, None, decoded.exprs
    if not np.all(np.isfinite(predicted)):
        return False, math.nan, None, decoded.exprs
    with np.errstate(all="ignore"):
        true = _numeric(truth.exprs, dim)(points)
    error = float(np.sqrt(((predicted - true) ** 2).sum() / ((true**2).sum() + METRIC_EPS)))
    path = resolve(f_hat, noisy_u0, t, timeout_s=timeout_s) if resolve_ode else None
    return True, error, path, decoded.exprs


# --------------------------------------------------------------------------------------------
# evaluate()
# --------------------------------------------------------------------------------------------


def evaluate(
    run_dir_or_model,
    data=None,
    *,
    split: str = "val",
    config=None,
    n: int | None = None,
    batch_size: int = 64,
    seed: int = 42,
    resolve_ode: bool = True,
    resolve_timeout_s: float = 10.0,
    out=None,
    figure: bool = True,
    n_examples: int = 4,
    progress: bool = False,
):
    """The metrics of a PROSE model on `data` as an xarray Dataset (see the module docstring).

    `run_dir_or_model`: a finished run directory, or a ProseModel (then `config`, a
    ProseTrainableConfig, gives input_len and the corruption rates; default: its defaults at the
    model's d_max). `data`: None (the run's validation set), a make-data directory (its `split`,
    "val" or "train"), a generate()/load_dataset() dict, or ProseData. `n`: the first n samples. `seed`: the test
    corruption and metric-point seed (42, the official `--test_env_seed`). With `out`, writes
    ``out/metrics.nc`` (atomically) and, with `figure`, ``out/trajectories.png``; an `out` that
    cannot be written is an OutputError before the model is loaded.
    """
    if out is not None:  # checked first: decoding and re-solving can take an hour
        out = check_writable_dir(out, "evaluation output directory")
        check_writable(out / "metrics.nc", "evaluation metrics file")
        if figure:
            check_writable(out / "trajectories.png", "evaluation figure")
    if isinstance(run_dir_or_model, (str, Path)):
        model, run_config = load_run(run_dir_or_model)
        config = config or run_config
        if torch.cuda.is_available():  # greedy decoding of a paper-size model wants the GPU
            model = model.cuda()
    else:
        model = run_dir_or_model
        config = config or ProseTrainableConfig(d_max=model.cfg.d_max, data_only=model.cfg.data_only)
    if model.cfg.d_max != config.d_max:
        raise InputError(f"model d_max {model.cfg.d_max} and config d_max {config.d_max} differ")
    data = _as_data(data, config, split)
    if n is not None:
        if n < 1:
            raise InputError(f"n must be a positive number of samples, got {n}")
        data = data.subset(np.arange(min(n, len(data))))
    if len(data) == 0:
        raise InputError("no samples to evaluate")
    if config.input_len >= len(data.t):
        raise InputError(f"data has {len(data.t)} times; input_len {config.input_len} leaves no queries")
    symbols = not model.cfg.data_only
    vocabulary = Vocabulary(max_dim=config.d_max)
    corruptor = SkeletonCorruptor(vocabulary, config.add_term_prob, config.miss_term_prob)
    inputs = corrupted_inputs(data, range(len(data)), corruptor, np.random.default_rng(seed)) if symbols else None

    model.eval()
    device = next(model.parameters()).device
    count, input_len = len(data), config.input_len
    query_t = data.t[input_len:]
    predicted = np.zeros((count, len(query_t), config.d_max))
    decoded_ids: list[list[int]] = []
    rows_all = np.arange(count)
    bar = _progress(2 * count if symbols else count, "prose evaluate", progress)  # model, then metrics 2-4
    with torch.no_grad():
        for start in range(0, count, batch_size):
            rows = rows_all[start : start + batch_size]
            batch = make_batch(
                data,
                rows,
                [inputs[i] for i in rows] if symbols else None,
                input_len=input_len,
                d_max=config.d_max,
                vocabulary=vocabulary,
                with_symbols=symbols,
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            output = run_model(model, batch)
            predicted[rows] = output.trajectory.float().cpu().numpy()
            if symbols:
                greedy = model.greedy_decode(
                    batch["data_times"], batch["data_values"], batch["symbol_ids"], batch["symbol_mask"]
                )
                decoded_ids += [beams[0] for beams in greedy.sequences(vocabulary.eos_id)]
            bar.update(len(rows))

    # Metric 1 and the last-value baseline, per window and target (noisy / clean).
    mask = (np.arange(config.d_max)[None, :] < data.dim[:, None])[:, None, :]
    targets = {"noisy": data.noisy[:, input_len:], "clean": data.clean[:, input_len:]}
    baseline = np.broadcast_to(data.noisy[:, input_len - 1 : input_len], predicted.shape)
    shape = (count, len(TARGETS), len(WINDOWS))
    data_err, base_err = np.full(shape, np.nan), np.full(shape, np.nan)
    resolve_err = np.full(shape, np.nan)
    for w, (lo, hi) in enumerate(WINDOWS.values()):
        sel = (query_t > lo) & (query_t <= hi + 1e-9)
        for k, name in enumerate(TARGETS):
            data_err[:, k, w] = relative_l2(predicted[:, sel], targets[name][:, sel], mask)
            base_err[:, k, w] = relative_l2(baseline[:, sel], targets[name][:, sel], mask)

    # Metrics 2-4 (symbol models only).
    valid = np.zeros(count, dtype=bool)
    expr_err = np.full(count, np.nan)
    resolved = np.zeros(count, dtype=bool)
    decoded_text, decoded_exprs = [""] * count, [None] * count
    if symbols:
        for i in range(count):
            dim = int(data.dim[i])
            tokens = vocabulary.decode(decoded_ids[i])
            decoded_text[i] = " ".join(tokens)
            ok, err, path, exprs = _symbolic_metrics(
                tokens,
                data.tokens[i],
                dim,
                data.noisy[i, 0, :dim].astype(np.float64),
                data.t,
                np.random.default_rng([seed, 1, i]),
                resolve_ode=resolve_ode,
                timeout_s=resolve_timeout_s,
            )
            valid[i], expr_err[i], decoded_exprs[i] = ok, err, exprs
            bar.update(1)
            if path is not None:
                resolved[i] = True
                padded = np.zeros((len(data.t), config.d_max))
                padded[:, :dim] = path
                for w, (lo, hi) in enumerate(WINDOWS.values()):
                    sel = (query_t > lo) & (query_t <= hi + 1e-9)
                    for k, name in enumerate(TARGETS):
                        resolve_err[i, k, w] = relative_l2(
                            padded[None, input_len:][:, sel], targets[name][i : i + 1, sel], mask[i : i + 1]
                        )[0]

    bar.close()
    names = np.asarray(data.families, dtype=object)
    family = np.asarray([data.families[j] for j in data.family], dtype=object)
    ds = xr.Dataset(
        {
            "family": ("sample", family.astype(str)),
            "dim": ("sample", data.dim.astype(np.int64)),
            "data_rel_l2": (("sample", "target", "window"), data_err),
            "baseline_rel_l2": (("sample", "target", "window"), base_err),
        },
        coords={
            "sample": np.arange(count),
            "target": list(TARGETS),
            "window": list(WINDOWS),
            "family_name": names.astype(str),
        },
    )
    if symbols:
        ds["valid"] = ("sample", valid)
        ds["expr_rel_l2"] = ("sample", expr_err)
        ds["resolve_success"] = ("sample", resolved)
        ds["resolve_rel_l2"] = (("sample", "target", "window"), resolve_err)
        ds["decoded"] = ("sample", np.asarray(decoded_text, dtype=str))
        ds["symbol_input"] = ("sample", np.asarray([" ".join(vocabulary.decode(s)) for s in inputs], dtype=str))
    _summaries(ds, symbols, resolve_ode)
    ds.attrs.update(
        {
            "data_only": int(model.cfg.data_only),
            "corruption_seed": seed,
            "input_len": input_len,
            "n_samples": count,
            "resolve_ode": int(resolve_ode and symbols),
        }
    )
    _describe(ds)
    if out is not None:
        atomic_write_netcdf(ds, out / "metrics.nc")
        if figure:
            plot_examples(
                data, predicted, decoded_exprs, out / "trajectories.png", input_len=input_len, n_examples=n_examples
            )
    return ds


def _summaries(ds, symbols: bool, resolve_ode: bool) -> None:
    """Overall means (mean_*) and per-family means (family_*) of the per-sample metrics."""

    def per_family(values: xr.DataArray, reduce) -> xr.DataArray:
        parts = [reduce(values.where(ds["family"] == name, drop=True)) for name in ds["family_name"].values]
        return xr.concat(parts, dim="family_name").assign_coords(family_name=ds["family_name"].values)

    def mean(x):
        return x.mean("sample")

    def nanmean(x):  # over valid / successful samples only (NaN where there are none)
        return x.mean("sample", skipna=True)

    for name in ("data_rel_l2", "baseline_rel_l2"):
        ds[f"mean_{name}"] = mean(ds[name])
        ds[f"family_{name}"] = per_family(ds[name], mean)
    ds["family_count"] = per_family(xr.ones_like(ds["dim"]), lambda x: x.sum("sample")).astype(np.int64)
    if symbols:
        valid = ds["valid"].astype(float)
        ds["valid_fraction"] = valid.mean("sample")
        ds["family_valid_fraction"] = per_family(valid, mean)
        ds["mean_expr_rel_l2"] = nanmean(ds["expr_rel_l2"])
        ds["family_expr_rel_l2"] = per_family(ds["expr_rel_l2"], nanmean)
        if resolve_ode:
            ds["resolve_successes"] = ds["resolve_success"].sum("sample")
            ds["family_resolve_successes"] = per_family(ds["resolve_success"], lambda x: x.sum("sample")).astype(
                np.int64
            )
            ds["mean_resolve_rel_l2"] = nanmean(ds["resolve_rel_l2"])
            ds["family_resolve_rel_l2"] = per_family(ds["resolve_rel_l2"], nanmean)


def _describe(ds) -> None:
    notes = {
        "data_rel_l2": "metric 1: sqrt(sum (u_hat-u)^2 / (sum u^2 + 1e-6)) over the window's query times "
        "and real components; target noisy (official, ~2% floor) or clean",
        "baseline_rel_l2": "metric 1 of the last observed (noisy) state held constant",
        "valid": "metric 2: greedy output decodes to dim components, finite at 50 points of U[-5,5]^d",
        "expr_rel_l2": "metric 3: relative L2 of the vector field at the 50 points; NaN if invalid",
        "resolve_success": "metric 4: decoded ODE integrated (BDF, rtol 1e-4, atol 1e-6) over [0, 6]",
        "resolve_rel_l2": "metric 1 of the re-solved trajectory; NaN where the solve failed",
        "symbol_input": "the corrupted skeleton given to the model (drawn with the corruption seed)",
        "mean_expr_rel_l2": "mean over valid outputs only; read with valid_fraction",
    }
    for name, text in notes.items():
        if name in ds:
            ds[name].attrs["description"] = text


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="sample", disable=None if enabled else True, leave=False)


# --------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------


def _latex_lines(exprs) -> list[str]:
    """One mathtext line per component (plain text if mathtext cannot draw sympy's LaTeX)."""

    if exprs is None:
        return ["invalid output"]
    parser, lines = MathTextParser("agg"), []
    for i, expr in enumerate(exprs):
        rounded = expr.xreplace({x: sympy.Float(float(x), 3) for x in expr.atoms(sympy.Float)})
        text = f"$\\dot u_{{{i}}} = {sympy.latex(rounded)}$"
        try:
            if len(text) > 160:
                raise ValueError("too long for one line")
            parser.parse(text, dpi=72)
        except Exception:
            text = f"du_{i}/dt = {str(rounded)[:100]}"
        lines.append(text)
    return lines


def plot_examples(data, predicted, decoded_exprs, path=None, *, input_len: int, n_examples: int = 4):
    """Predicted vs true trajectories of the first sample of up to `n_examples` families. Returns
    the figure; writes it to `path` when given."""
    picks, seen = [], set()
    for i, f in enumerate(data.family):
        if int(f) not in seen:
            seen.add(int(f))
            picks.append(i)
    for i in range(len(data)):  # fill up with more samples when there are few families
        if len(picks) >= n_examples:
            break
        if i not in picks:
            picks.append(i)
    picks = picks[:n_examples]
    fig, axes = new_figure((9, 3.2 * len(picks)), nrows=len(picks))
    t, tq = data.t, data.t[input_len:]
    for ax, i in zip(axes[:, 0], picks):
        dim = int(data.dim[i])
        for c in range(dim):
            color = f"C{c}"
            ax.plot(t, data.clean[i, :, c], color=color, lw=1, label=f"$u_{c}$ true")
            ax.plot(t, data.noisy[i, :, c], ".", color=color, ms=2, alpha=0.4)
            ax.plot(tq, predicted[i, :, c], "--", color=color, lw=1.5, label=f"$u_{c}$ predicted")
        ax.axvline(t[input_len - 1], color="k", lw=0.5)
        ax.set_xlabel("t")
        lines = _latex_lines(decoded_exprs[i]) if decoded_exprs is not None else []
        title = data.families[int(data.family[i])] + (" (decoded:)" if lines else "")
        ax.set_title("\n".join([title, *lines]), fontsize=8, loc="left")
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    return finish_figure(fig, path, dpi=90)


def summarize(ds) -> dict[str, Any]:
    """Headline numbers of an evaluation Dataset as plain Python (for --json and reports)."""

    def window(da) -> dict[str, dict[str, float]]:
        return {
            str(t): {str(w): float(da.sel(target=t, window=w)) for w in ds["window"].values}
            for t in ds["target"].values
        }

    out: dict[str, Any] = {
        "n_samples": int(ds.attrs["n_samples"]),
        "data_only": bool(ds.attrs["data_only"]),
        "data_rel_l2": window(ds["mean_data_rel_l2"]),
        "baseline_rel_l2": window(ds["mean_baseline_rel_l2"]),
        "families": {},
    }
    if "valid_fraction" in ds:
        out["valid_fraction"] = float(ds["valid_fraction"])
        out["expr_rel_l2"] = float(ds["mean_expr_rel_l2"])
    if "resolve_successes" in ds:
        out["resolve_successes"] = int(ds["resolve_successes"])
        out["resolve_rel_l2"] = window(ds["mean_resolve_rel_l2"])
    for name in ds["family_name"].values:
        row = {
            "count": int(ds["family_count"].sel(family_name=name)),
            "data_rel_l2": float(ds["family_data_rel_l2"].sel(family_name=name, target="noisy", window="2-6")),
            "baseline_rel_l2": float(ds["family_baseline_rel_l2"].sel(family_name=name, target="noisy", window="2-6")),
        }
        if "family_valid_fraction" in ds:
            row["valid_fraction"] = float(ds["family_valid_fraction"].sel(family_name=name))
            row["expr_rel_l2"] = float(ds["family_expr_rel_l2"].sel(family_name=name))
        out["families"][str(name)] = row
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['n_samples']} samples"]
    for key in ("data_rel_l2", "baseline_rel_l2", "resolve_rel_l2"):
        if key in summary:
            for target, values in summary[key].items():
                cells = "  ".join(f"({w}] {100 * v:6.2f}%" for w, v in values.items())
                lines.append(f"{key:16s} {target:5s} {cells}")
    if "valid_fraction" in summary:
        lines.append(
            f"valid fraction {100 * summary['valid_fraction']:.1f}%   expression rel L2 "
            f"{100 * summary['expr_rel_l2']:.2f}% (valid outputs only)"
        )
    if "resolve_successes" in summary:
        lines.append(f"re-solved {summary['resolve_successes']} / {summary['n_samples']}")
    lines.append(f"{'family':18s} {'n':>5s} {'data (2,6]':>11s} {'baseline':>9s} {'valid':>7s} {'expr':>8s}")
    for name, row in summary["families"].items():
        extra = (
            f" {100 * row['valid_fraction']:6.1f}% {100 * row['expr_rel_l2']:7.2f}%" if "valid_fraction" in row else ""
        )
        lines.append(
            f"{name:18s} {row['count']:5d} {100 * row['data_rel_l2']:10.2f}% "
            f"{100 * row['baseline_rel_l2']:8.2f}%{extra}"
        )
    lines.append(f"written: {summary['out']}, {summary['figure']}")
    return "\n".join(lines)
