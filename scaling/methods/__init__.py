"""The scaling methods of `workbench scaling fit`, by name.

A method is one module with a NAME, a one-line HELP and the functions `scaling.methods.base.Method`
names: its flags, the fit from the run table and the parsed arguments, and the text, `--json`
payload, `--out` Dataset and (optionally) `--plot` figure of a fit. `scaling.cli` builds
`workbench scaling fit` from this table alone; a new law is a new module and one entry below.
"""

from __future__ import annotations

from scaling.methods import envelope, isoflop, kaplan, parametric
from scaling.methods.base import Method

__all__ = ["METHODS", "Method"]

# In the order `--method` lists them; the first to declare a shared flag (--seed) places it in --help.
METHODS: dict[str, Method] = {
    module.NAME: Method.from_module(module) for module in (parametric, isoflop, envelope, kaplan)
}
