"""Scaling laws from measurements: conventions for N and FLOPs, run tables, fits (Approaches 1-3,
Kaplan, data-constrained), reconciliation, simulation and reports; `methods/` holds the estimators
behind `workbench scaling fit`, and `medida/` the model-error discovery of a KS model."""
