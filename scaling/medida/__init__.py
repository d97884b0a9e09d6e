"""MEDIDA: model-error discovery for an imperfect Kuramoto–Sivashinsky model from sparse, noisy
observations (Mojgani, Chattopadhyay & Hassanzadeh 2022, "Discovery of interpretable structural
model errors by combining Bayesian sparse regression and data assimilation: A chaotic
Kuramoto–Sivashinsky test case", Chaos 32, 061105; public code github.com/envfluids/MEDIDA).

Modules:

- `pipeline`: one run end to end (truth windows, noisy observations, EnKF analyses, the one-step
  or Richardson model-error target, sparse regression): `MedidaConfig`, `run`, `MedidaResult`;
- `cases`: the built-in imperfect models (KS1–12, KSpu3x, KSpu3x_Du3);
- `library`: the 24-term PDE-FIND library (spectral or FD derivatives), ARD/RVM and STLSQ;
- `enkf`: the stochastic EnKF analysis in its explicit, ensemble, state and spectral forms;
- `sweep`: cases × noise × ensemble × seeds as one job array, assembled into results.nc;
- `bench`: `workbench bench medida` (batched ETDRK4 and EnKF against NumPy references);
- `cli`: `workbench medida run|cases|sweep`.

The KS solvers are `operators.ks`. The main names are importable from here
(``from scaling.medida import MedidaConfig, run``); they are loaded on first use, so importing the
package (as `workbench --help` does for the CLI) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MedidaConfig", "LibraryConfig", "MedidaResult", "run", "equations", "true_error"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from scaling.medida import pipeline  # on first use, not at package import (see above)

        return getattr(pipeline, name)
    raise AttributeError(f"module 'scaling.medida' has no attribute {name!r}")
