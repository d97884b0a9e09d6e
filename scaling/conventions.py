"""Parameter and FLOP conventions: what "N" means is an explicit, required choice.

The same runs give compute-optimal exponents that differ by ~0.13 depending on whether the output
head and the attention FLOPs are counted (Porian et al. 2024, Fig. 1 (a) -> (b): 0.835 -> 0.706 on
RefinedWeb). So every function here takes the convention by name and none has a default.

| convention   | N                                          | FLOPs per token |
|--------------|--------------------------------------------|-----------------|
| `kaplan`     | (4w + k·d_ff)·w·L (no embedding, no head)   | 6·N             |
| `standard`   | kaplan + V·w (output head; Porian default)  | 6·N             |
| `attention`  | N_eff = standard + S·w·L                    | 6·N_eff         |
| `chinchilla` | N_eff = Hoffmann App. F FLOPs per token / 6 | 6·N_eff         |

w = width (d_model), L = depth, V = vocab, S = seq_len, k = number of d_model x d_ff matrices in
the feed-forward block (3 for SwiGLU, 2 for a plain GELU MLP). For the attention and chinchilla
conventions N is an *effective* parameter count, defined so that C = 6·N·D still holds.

All functions accept scalars or numpy arrays (broadcast together) and return float64.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import InputError

CONVENTIONS = ("kaplan", "standard", "attention", "chinchilla")
FFN_KINDS = ("swiglu", "mlp")

# Number of d_model x d_ff weight matrices per feed-forward block.
_FFN_MATRICES = {"swiglu": 3, "mlp": 2}

# Arguments each convention needs beyond width and depth.
_REQUIRED = {
    "kaplan": (),
    "standard": ("vocab",),
    "attention": ("vocab", "seq_len"),
    "chinchilla": ("vocab", "seq_len"),
}

# Default head size for the chinchilla softmax term when n_heads is not given. The term is
# 3·h·S² against 4·S²·d for the two attention matmuls, so this choice moves N_eff by < 0.1 %.
_DEFAULT_HEAD_SIZE = 64


def check_convention(name: str) -> str:
    """Return `name` if it is a known convention, else raise InputError listing the valid ones."""
    if name not in CONVENTIONS:
        raise InputError(f"unknown parameter/FLOP convention {name!r}; valid: {', '.join(CONVENTIONS)}")
    return name


def required_arguments(convention: str) -> tuple[str, ...]:
    """Size arguments `convention` needs besides width and depth (e.g. ("vocab", "seq_len"))."""
    return _REQUIRED[check_convention(convention)]


def porian_budgets() -> np.ndarray:
    """Porian et al.'s compute grid C = 1e17·2^k FLOPs, k = -3..8: 12 budgets, 1.25e16 .. 2.56e19."""
    return 1e17 * 2.0 ** np.arange(-3, 9)


def swiglu_ffn(width):
    """SwiGLU hidden size 256·ceil(8w/3/256) (OpenLM, as used by Porian et al.)."""
    width = _positive("width", width)
    return (256.0 * np.ceil(8.0 * width / 3.0 / 256.0))[()]


def param_count(
    convention: str, *, width, depth, vocab=None, seq_len=None, d_ff=None, ffn: str = "swiglu", n_heads=None
):
    """Parameter count N of a decoder-only transformer under `convention`.

    d_ff defaults to `swiglu_ffn(width)` for ffn="swiglu" and to 4·width for ffn="mlp" (Kaplan
    §2.1). `n_heads` is used only by the chinchilla convention (softmax FLOPs); it defaults to
    width/64. Missing arguments the convention needs raise InputError naming them.
    """
    check_convention(convention)
    given = {"vocab": vocab, "seq_len": seq_len}
    missing = [arg for arg in _REQUIRED[convention] if given[arg] is None]
    if missing:
        raise InputError(
            f"convention {convention!r} needs {', '.join(missing)} "
            f"(required: width, depth, {', '.join(_REQUIRED[convention])})"
        )
    if ffn not in FFN_KINDS:
        raise InputError(f"unknown ffn {ffn!r}; valid: {', '.join(FFN_KINDS)}")

    w = _positive("width", width)
    layers = _positive("depth", depth)
    if d_ff is None:
        d_ff = swiglu_ffn(w) if ffn == "swiglu" else 4.0 * w
    d_ff = _positive("d_ff", d_ff)
    k = _FFN_MATRICES[ffn]

    # Kaplan Eq. 2.1 generalised to k feed-forward matrices: 4w² attention (Q, K, V, output)
    # plus k·w·d_ff feed-forward weights per layer; embeddings and head excluded.
    n_kaplan = (4.0 * w + k * d_ff) * w * layers
    if convention == "kaplan":
        return n_kaplan[()]  # [()] turns a 0-d array back into a numpy scalar

    v = _positive("vocab", vocab)
    # Porian `data.py`: the output head V·w is counted, the input embedding is not (a lookup).
    n_standard = n_kaplan + v * w
    if convention == "standard":
        return n_standard[()]

    s = _positive("seq_len", seq_len)
    if convention == "attention":
        # Porian: FLOPs/token = 6·N + 6·S·w·L (no causal-mask halving), so N_eff = N + S·w·L.
        return (n_standard + s * w * layers)[()]

    heads = w / _DEFAULT_HEAD_SIZE if n_heads is None else _positive("n_heads", n_heads)
    return (_chinchilla_flops_per_token(w, layers, v, s, d_ff, k, heads) / 6.0)[()]


def flops_per_token(
    convention: str, *, width, depth, vocab=None, seq_len=None, d_ff=None, ffn: str = "swiglu", n_heads=None
):
    """Training FLOPs per token: 6·N (kaplan, standard) or 6·N_eff (attention, chinchilla)."""
    n = param_count(
        convention, width=width, depth=depth, vocab=vocab, seq_len=seq_len, d_ff=d_ff, ffn=ffn, n_heads=n_heads
    )
    return 6.0 * n


def _chinchilla_flops_per_token(d, layers, vocab, seq_len, d_ff, ffn_matrices, heads):
    """Hoffmann et al. 2022, Appendix F: forward FLOPs of one sequence, x3 for training, / S.

    The paper writes key_size·num_heads; we take key_size·num_heads = d_model.
    """
    s = seq_len
    embeddings = 2 * s * vocab * d  # one-hot embedding counted as a matmul
    qkv = 2 * 3 * s * d * d
    attention_logits = 2 * s * s * d
    softmax = 3 * heads * s * s
    attention_reduction = 2 * s * s * d
    attention_output = 2 * s * d * d
    attention = qkv + attention_logits + softmax + attention_reduction + attention_output
    # App. F writes 2·S·(d·d_ff + d_ff·d) for a two-matrix MLP; SwiGLU has three matrices.
    dense = 2 * s * ffn_matrices * d * d_ff
    final_logits = 2 * s * d * vocab
    forward = embeddings + layers * (attention + dense) + final_logits
    # "We assume the backward pass has twice the FLOPs of the forward pass."
    return 3.0 * forward / s


def _positive(name: str, value) -> np.ndarray:
    """`value` as float64; InputError naming `name` if any entry is non-finite or <= 0."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if bad.size:
        # The number as written (-0.0), not a numpy repr; for an array, which entry.
        where = "" if array.ndim == 0 else f" (entry {bad[0] + 1} of {array.size})"
        raise InputError(f"{name} must be finite and > 0, got {float(array.ravel()[bad[0]])!r}{where}")
    return array
