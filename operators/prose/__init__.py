"""PROSE: multimodal operator + symbolic-expression learning for ODE systems (reference note prose.md).

`tokens` holds the symbolic encoding (note §2.4-2.5): sympy <-> prefix tokens, 3-token floats,
the vocabulary, skeletons, term corruption and never-raising decoding of model output.
"""
