"""Differential equations and operator learning: PROSE's ODE families and their batched solver, the
Kuramoto–Sivashinsky solvers, and `prose/` (the PROSE transformer)."""
