"""PROSE: multimodal operator + symbolic-expression learning for ODE systems
(Liu, Zhang & Schaeffer 2023; official code github.com/felix-lyx/prose, folder `prose_ode/`).

`tokens` holds the symbolic encoding of the official code's `symbolicregression/envs/encoders.py`:
sympy <-> prefix tokens, 3-token floats, the vocabulary, skeletons, term corruption and
never-raising decoding of model output.
"""
