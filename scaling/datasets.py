"""Public scaling-law datasets bundled with the package, addressable by name.

`load_dataset(name)` returns a DataFrame with canonical float columns `N`, `D`, `C` (FLOPs) and
`loss` where the dataset is a table of runs, plus the source's other columns. Each bundled folder
under `scaling/data/` has a SOURCE.md (provenance) and a LICENSE.

The Epoch AI digitisation of Hoffmann et al. (2022) Fig. 4 has no licence, so it is not bundled:
`load_epoch_chinchilla()` reads it from a data folder outside the package when one is present
(see `shared_data_dir`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from workbench.errors import InputError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    licence: str
    file: str  # relative to scaling/data/


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "porian-rw",
            "Porian et al. 2024 IsoFLOP points on RefinedWeb: loss at exactly C per "
            "(experiment, C, N); N under each row's flop_count convention, D = C/(6N)",
            "MIT",
            "porian2024/isoflop_points.csv",
        ),
        DatasetInfo(
            "porian-owt2",
            "Porian et al. 2024 IsoFLOP points on OpenWebText2 (same columns as porian-rw)",
            "MIT",
            "porian2024/isoflop_points.csv",
        ),
        DatasetInfo(
            "porian-optimal",
            "Porian et al. 2024 per-budget bootstrap-median optima N_star, D_star, loss_star "
            "and log_N_star_std (regression weights), both datasets",
            "MIT",
            "porian2024/optimal_points.csv",
        ),
        DatasetInfo(
            "porian-published",
            "Porian et al. 2024 published exponents a, b with 95% CIs and N* at 5.88e23",
            "MIT",
            "porian2024/published_fits.csv",
        ),
        DatasetInfo(
            "porian-architectures",
            "Porian et al. 2024 16 model shapes with N and FLOPs/token under 3 conventions",
            "MIT",
            "porian2024/architectures.csv",
        ),
        DatasetInfo(
            "gadre",
            "Gadre et al. 2024 over-training testbed: 104 final-loss runs, N 10.6M-6.9B, "
            "D/(20N) 0.25-32, 8 evaluation losses (N includes embeddings)",
            "MIT",
            "gadre2024/gadre2024_overtraining_losses.csv",
        ),
        DatasetInfo(
            "muennighoff",
            "Muennighoff et al. 2023 data-constrained runs: N, D, unique tokens U, epochs, final C4 validation loss",
            "Apache-2.0",
            "muennighoff2023/final_val_losses.csv",
        ),
    )
}

GADRE_LOSS_COLUMNS = (
    "loss_openlm_val",
    "loss_c4_val",
    "loss_paloma_c4_en",
    "loss_paloma_dolma100_code",
    "loss_paloma_falcon_refinedweb",
    "loss_paloma_ptb",
    "loss_paloma_redpajama",
    "loss_de_en",
)

_PORIAN_DATASET_LABEL = {"porian-rw": "RefinedWeb", "porian-owt2": "OpenWebText2"}

EPOCH_FILE = "epoch-chinchilla-svg/svg_extracted_data.csv"


def load_dataset(name: str, *, loss_column: str | None = None) -> pd.DataFrame:
    """Load bundled dataset `name` (see `DATASETS`).

    `loss_column` picks which of Gadre et al.'s 8 evaluation losses becomes `loss` (default
    `loss_c4_val`); it is only valid for `gadre`.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if loss_column is not None and name != "gadre":
        raise InputError(f"loss_column applies only to dataset 'gadre', not {name!r}")
    table = _read_bundled(DATASETS[name].file)

    if name in _PORIAN_DATASET_LABEL:
        rows = table[table["dataset"] == _PORIAN_DATASET_LABEL[name]]
        return _as_float(rows.reset_index(drop=True), ("C", "N", "D", "loss"))
    if name == "porian-optimal":
        return _as_float(table, ("C",))
    if name == "gadre":
        return _gadre(table, loss_column or "loss_c4_val")
    if name == "muennighoff":
        return _muennighoff(table)
    return table  # published fits and architectures: as stored


def _gadre(table: pd.DataFrame, loss_column: str) -> pd.DataFrame:
    if loss_column not in GADRE_LOSS_COLUMNS:
        raise InputError(f"unknown gadre loss_column {loss_column!r}; valid: {', '.join(GADRE_LOSS_COLUMNS)}")
    runs = table.rename(columns={"name": "run", "params": "N", "tokens": "D"})
    runs = _as_float(runs, ("N", "D"))
    runs["loss"] = runs[loss_column].astype(float)
    # Each run trains on exactly D tokens with total parameters N, so C = 6ND (Kaplan §2.1).
    runs["C"] = 6.0 * runs["N"] * runs["D"]
    return _canonical_first(runs)


def _muennighoff(table: pd.DataFrame) -> pd.DataFrame:
    runs = table.rename(
        columns={"run_name": "run", "params": "N", "tokens": "D", "unique_tokens": "U", "val_loss": "loss"}
    )
    runs = _as_float(runs, ("N", "D", "U", "loss"))
    runs["C"] = 6.0 * runs["N"] * runs["D"]
    return _canonical_first(runs)


def shared_data_dir() -> Path | None:
    """The data folder kept outside the package (unlicensed test data), or None if there is none.

    `$WORKBENCH_SHARED_DATA` wins when set. Otherwise look for a folder `shared` holding `data`
    in the repository root (the folder holding the `scaling` package) or in any folder above it,
    which also finds one beside the checkout.
    """
    override = os.environ.get("WORKBENCH_SHARED_DATA")
    if override:
        path = Path(override).expanduser()
        return path if path.is_dir() else None
    repo_root = Path(__file__).resolve().parent.parent
    for folder in (repo_root, *repo_root.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def load_epoch_chinchilla(drop_highest: int = 5) -> pd.DataFrame:
    """Epoch AI's digitisation of Hoffmann et al. (2022) Fig. 4 (Besiroglu et al. 2024).

    N = `Model Size`, C = `Training FLOP`, D = C/(6N) (Epoch's convention), `loss`. The
    `drop_highest` highest-loss rows are removed: Epoch's main fit drops 5 (245 -> 240 rows),
    all tiny-token runs at C ~ 1e19 whose colour-bar readings sit at the top of the scale.
    Raises FileNotFoundError when the shared data folder is absent (the file has no licence,
    so it is never bundled).
    """
    if int(drop_highest) != drop_highest or drop_highest < 0:
        raise InputError(f"drop_highest must be a non-negative integer, got {drop_highest!r}")
    folder = shared_data_dir()
    if folder is None:
        raise FileNotFoundError(
            "Epoch Chinchilla data are not bundled (no licence); no shared data folder found "
            "(set WORKBENCH_SHARED_DATA to the folder holding " + EPOCH_FILE + ")"
        )
    path = folder / EPOCH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Epoch Chinchilla data not found: {path}")
    table = pd.read_csv(path).rename(columns={"Model Size": "N", "Training FLOP": "C"})
    table = _as_float(table, ("N", "C", "loss"))
    table["D"] = table["C"] / (6.0 * table["N"])
    highest = table["loss"].nlargest(int(drop_highest)).index
    table = table.drop(index=highest).reset_index(drop=True)
    return _canonical_first(table)


def _read_bundled(file: str) -> pd.DataFrame:
    with resources.as_file(resources.files("scaling").joinpath("data", file)) as path:
        return pd.read_csv(path)


def _as_float(table: pd.DataFrame, columns) -> pd.DataFrame:
    table = table.copy()
    for column in columns:
        table[column] = table[column].astype(float)
    return table


def _canonical_first(table: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in ("N", "D", "C", "loss") if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]
