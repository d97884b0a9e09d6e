"""Offline byte-level corpora for the LM sweeps, with seeded batch sampling.

Four sources, all of which exist on every machine or come from a user path:

1. `markov_corpus`: a seeded order-k Markov source over a small alphabet whose entropy rate (the
   irreducible loss, in nats per token) is computed exactly: H = Σ_s π(s) H(P(·|s)), with π the
   stationary distribution of the chain on contexts s (Cover & Thomas, Thm 4.2.4).
2. `spectral_corpus`: an order-1 chain whose transition logits have a power-law spectrum
   (`SpectralMarkovSource`), on which both model size and tokens limit the loss at CPU scale.
3. `stdlib_corpus`: the bytes of the installed Python standard library's `.py` files in sorted
   path order, split by file (every k-th file held out, so no file straddles the split).
4. `file_corpus`: a user text file (bytes), a nanoGPT-layout uint16 token file (`*.bin`), or a
   nanoGPT data directory holding `train.bin` and `val.bin`.

Every corpus is a `TokenCorpus`; `sample_batch` draws (x, y) windows reproducibly from a seed.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.errors import InputError

__all__ = [
    "MarkovSource",
    "SpectralMarkovSource",
    "TokenCorpus",
    "file_corpus",
    "load_corpus",
    "markov_corpus",
    "spectral_corpus",
    "stdlib_corpus",
]


@dataclass(frozen=True)
class TokenCorpus:
    """Train and held-out token arrays (any integer dtype) plus what is known about them."""

    name: str
    train: np.ndarray
    val: np.ndarray
    vocab_size: int = 256
    entropy_rate: float | None = None  # nats/token when the source is known exactly

    def check_length(self, seq_len: int) -> None:
        for split in ("train", "val"):
            n = len(getattr(self, split))
            if n < seq_len + 1:
                raise InputError(
                    f"corpus {self.name}: the {split} split has {n} tokens, fewer than "
                    f"seq_len + 1 = {seq_len + 1}; use a longer corpus or a shorter seq_len"
                )

    def sample_batch(
        self, split: str, batch_size: int, seq_len: int, generator: np.random.Generator | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` random windows: inputs x and next-token targets y, both (B, T) int64."""
        if split not in ("train", "val"):
            raise InputError(f"split = {split!r} is not valid; choose one of: 'train', 'val'")
        self.check_length(seq_len)
        data = getattr(self, split)
        rng = np.random.default_rng(generator) if isinstance(generator, int) else generator
        starts = rng.integers(0, len(data) - seq_len, size=batch_size)
        window = np.stack([np.asarray(data[s : s + seq_len + 1], dtype=np.int64) for s in starts])
        window = torch.from_numpy(window)
        return window[:, :-1], window[:, 1:]


# ------------------------------------------------------------------------------ synthetic source


class MarkovSource:
    """An order-`order` Markov chain over `alphabet` symbols with Dirichlet(`concentration`) rows.

    Small concentration → peaked rows → low entropy; all transition probabilities are positive,
    so the chain on contexts is ergodic and the stationary distribution is unique.
    Symbols are bytes `first_byte .. first_byte + alphabet - 1` ('a', 'b', ... by default).
    """

    def __init__(
        self, alphabet: int = 16, order: int = 2, concentration: float = 0.3, seed: int = 0, first_byte: int = ord("a")
    ):
        if not 2 <= alphabet <= 256 - first_byte:
            raise InputError(f"alphabet = {alphabet} must be in [2, {256 - first_byte}]")
        if order < 1 or alphabet**order > 1 << 16:
            raise InputError(f"order = {order} must be >= 1 with alphabet**order <= 65536")
        self.alphabet, self.order, self.first_byte = alphabet, order, first_byte
        rng = np.random.default_rng(seed)
        self._set_table(rng.dirichlet(np.full(alphabet, concentration), size=alphabet**order))

    def _set_table(self, probs: np.ndarray) -> None:
        """The transition table P(next | context), floored so that the chain stays ergodic."""
        self.probs = np.maximum(probs, 1e-12)
        self.probs /= self.probs.sum(axis=1, keepdims=True)

    @property
    def n_contexts(self) -> int:
        return self.alphabet**self.order

    def next_context(self, context: np.ndarray, symbol: np.ndarray) -> np.ndarray:
        # Context = the last `order` symbols as a base-`alphabet` number, most recent last.
        return (context * self.alphabet + symbol) % self.n_contexts

    def stationary(self) -> np.ndarray:
        """Stationary distribution over contexts (power iteration; the chain is ergodic)."""
        n, a = self.n_contexts, self.alphabet
        pi = np.full(n, 1.0 / n)
        successors = (np.arange(n)[:, None] * a + np.arange(a)[None, :]) % n
        for _ in range(10_000):
            new = np.bincount(successors.ravel(), weights=(pi[:, None] * self.probs).ravel(), minlength=n)
            if np.abs(new - pi).sum() < 1e-14:
                return new
            pi = new
        return pi

    def entropy_rate(self) -> float:
        """H = Σ_s π(s) H(P(·|s)) in nats per symbol."""
        row_entropy = -(self.probs * np.log(self.probs)).sum(axis=1)
        return float(self.stationary() @ row_entropy)

    def sample(self, n_tokens: int, seed: int = 0, chains: int = 64) -> np.ndarray:
        """`n_tokens` bytes: `chains` independent stationary chains, run in parallel, concatenated."""
        rng = np.random.default_rng(seed)
        length = -(-n_tokens // chains)
        context = rng.choice(self.n_contexts, size=chains, p=self.stationary())
        cdf = np.cumsum(self.probs, axis=1)
        cdf[:, -1] = 1.0
        out = np.empty((chains, length), dtype=np.uint8)
        uniforms = rng.random((length, chains))
        for t in range(length):
            rows = cdf[context]
            symbol = (uniforms[t][:, None] > rows).sum(axis=1)
            out[:, t] = symbol
            context = self.next_context(context, symbol)
        return (out.ravel()[:n_tokens] + self.first_byte).astype(np.uint8)

    def log_likelihood(self, tokens: np.ndarray) -> np.ndarray:
        """log P(x_t | previous `order` symbols) for t >= order (one stream; join effects ignored)."""
        symbols = np.asarray(tokens, dtype=np.int64) - self.first_byte
        context = np.zeros(len(symbols) - self.order, dtype=np.int64)
        for j in range(self.order):
            context = context * self.alphabet + symbols[j : len(symbols) - self.order + j]
        return np.log(self.probs[context, symbols[self.order :]])


class SpectralMarkovSource(MarkovSource):
    """An order-1 chain whose transition logits have a power-law singular spectrum: a source on
    which both the model size N and the tokens D limit the loss at CPU scale.

    logits[i, j] = Σ_k s_k U[i, k] V[j, k] − zipf · log(j + 1),   s_k = scale · √A · k^(−decay),

    with U, V random orthogonal A × A matrices (A = `alphabet`), then P = softmax over j. A model
    of width w reads the current token through a w-dimensional embedding, so it can represent
    about the first w terms of the sum; what it leaves out shrinks as a power of w (the model-
    size limit), while each further term is a weaker signal that takes more tokens to estimate
    (the data limit); cf. the spectral power-law models of Maloney, Roberts & Sully (2022). The
    Zipf term makes next-token frequencies, and so the tokens' own frequencies, heavy-tailed.
    The entropy rate (the loss floor) is exact, as for every MarkovSource.
    """

    def __init__(
        self,
        alphabet: int = 128,
        decay: float = 0.3,
        scale: float = 3.0,
        zipf: float = 1.0,
        seed: int = 0,
        first_byte: int = 64,
    ):
        if not 2 <= alphabet <= 256 - first_byte:
            raise InputError(f"alphabet = {alphabet} must be in [2, {256 - first_byte}]")
        for name, value in (("decay", decay), ("scale", scale), ("zipf", zipf)):
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"spectral source: {name} = {value} must be a finite number >= 0")
        self.alphabet, self.order, self.first_byte = alphabet, 1, first_byte
        rng = np.random.default_rng(seed)
        U, _ = np.linalg.qr(rng.standard_normal((alphabet, alphabet)))
        V, _ = np.linalg.qr(rng.standard_normal((alphabet, alphabet)))
        s = scale * np.sqrt(alphabet) * np.arange(1, alphabet + 1, dtype=float) ** -decay
        logits = (U * s) @ V.T - zipf * np.log(np.arange(1, alphabet + 1, dtype=float))[None, :]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        self._set_table(probs / probs.sum(axis=1, keepdims=True))


def markov_corpus(
    n_tokens: int = 1 << 20,
    val_tokens: int = 1 << 16,
    *,
    alphabet: int = 16,
    order: int = 2,
    concentration: float = 0.3,
    seed: int = 0,
) -> TokenCorpus:
    """A synthetic byte corpus with an exactly known entropy rate (the loss floor c)."""
    _check_sizes(n_tokens, val_tokens)
    source = MarkovSource(alphabet, order, concentration, seed)
    name = f"markov(alphabet={alphabet}, order={order}, concentration={concentration}, seed={seed})"
    return _source_corpus(source, name, n_tokens, val_tokens, seed)


def _check_sizes(n_tokens: int, val_tokens: int) -> None:
    if n_tokens < 1 or val_tokens < 1:
        raise InputError(f"n_tokens = {n_tokens} and val_tokens = {val_tokens} must both be >= 1")


def _source_corpus(
    source: MarkovSource, name: str, n_tokens: int, val_tokens: int, seed: int, chains: int = 64
) -> TokenCorpus:
    """Train and held-out text of `source`, with its exact entropy rate. The source (transition
    table) and the samples are seeded separately: the val split is fresh text from the same
    source, not a slice of the training stream."""
    return TokenCorpus(
        name=name,
        train=source.sample(n_tokens, seed=2 * seed + 1, chains=chains),
        val=source.sample(val_tokens, seed=2 * seed + 2, chains=chains),
        vocab_size=256,
        entropy_rate=source.entropy_rate(),
    )


def spectral_corpus(
    n_tokens: int = 1 << 22,
    val_tokens: int = 1 << 16,
    *,
    alphabet: int = 128,
    decay: float = 0.3,
    scale: float = 3.0,
    zipf: float = 1.0,
    seed: int = 0,
) -> TokenCorpus:
    """Text of a SpectralMarkovSource, with its exact entropy rate; samples seeded as markov_corpus."""
    _check_sizes(n_tokens, val_tokens)
    source = SpectralMarkovSource(alphabet, decay, scale, zipf, seed)
    name = f"spectral(alphabet={alphabet}, decay={decay}, scale={scale}, zipf={zipf}, seed={seed})"
    return _source_corpus(source, name, n_tokens, val_tokens, seed, chains=1024)


# ------------------------------------------------------------------------------------ real text


def stdlib_files(root: str | os.PathLike | None = None):
    """The standard library's `.py` files, depth-first with entries in sorted name order.

    A generator, so a small `max_bytes` reads only the first few directories; site-packages and
    caches are skipped.
    """
    skip = {"site-packages", "dist-packages", "__pycache__"}

    def walk(directory: Path):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in skip:
                    yield from walk(Path(entry.path))
            elif entry.name.endswith(".py") and entry.is_file():
                yield Path(entry.path)

    yield from walk(Path(root or sysconfig.get_paths()["stdlib"]))


def stdlib_corpus(max_bytes: int = 4 << 20, val_every: int = 10, root: str | os.PathLike | None = None) -> TokenCorpus:
    """Bytes of the installed stdlib source, up to `max_bytes` in total.

    Every `val_every`-th file (in sorted order) goes to the held-out split; the rest to train.
    """
    if val_every < 2:
        raise InputError(f"val_every = {val_every} must be >= 2")
    train, val, total = [], [], 0
    for i, path in enumerate(stdlib_files(root)):
        if total >= max_bytes:
            break
        data = path.read_bytes()[: max_bytes - total]
        total += len(data)
        (val if i % val_every == val_every - 1 else train).append(data)
    corpus = TokenCorpus(
        name=f"python-stdlib({root or sysconfig.get_paths()['stdlib']})",
        train=np.frombuffer(b"".join(train), dtype=np.uint8),
        val=np.frombuffer(b"".join(val), dtype=np.uint8),
    )
    if not len(corpus.train) or not len(corpus.val):
        raise InputError(f"no standard library source found under {root or sysconfig.get_paths()['stdlib']}")
    return corpus


def _read_tokens(path: Path) -> tuple[np.ndarray, int]:
    """Tokens of one file and the vocabulary they imply: uint16 for `.bin`, bytes otherwise."""
    if not path.is_file():
        raise InputError(f"corpus file not found: {path}")
    if path.suffix == ".bin":
        size = path.stat().st_size
        if size % 2:
            raise InputError(f"corpus file {path} has {size} bytes, not a whole number of uint16 tokens")
        if size == 0:
            raise InputError(f"corpus file {path} is empty")
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
        return tokens, 50304  # nanoGPT's padded GPT-2 vocabulary; override with vocab_size
    tokens = np.fromfile(path, dtype=np.uint8)
    if tokens.size == 0:
        raise InputError(f"corpus file {path} is empty")
    return tokens, 256


def file_corpus(
    path: str | os.PathLike, *, val_fraction: float = 0.1, seq_len: int = 64, vocab_size: int | None = None
) -> TokenCorpus:
    """A user corpus: a text file (bytes), a uint16 `.bin` token file, or a nanoGPT data directory.

    A single file is split at the end: the last `val_fraction` of tokens is held out. Each split
    must hold at least `seq_len + 1` tokens.
    """
    path = Path(path)
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction = {val_fraction} must be in (0, 1)")
    if path.is_dir():
        missing = [name for name in ("train.bin", "val.bin") if not (path / name).is_file()]
        if missing:
            raise InputError(f"corpus directory {path} lacks {', '.join(missing)} (nanoGPT layout)")
        train, vocab = _read_tokens(path / "train.bin")
        val, _ = _read_tokens(path / "val.bin")
    else:
        tokens, vocab = _read_tokens(path)
        cut = int(round(len(tokens) * (1 - val_fraction)))
        train, val = tokens[:cut], tokens[cut:]
    vocab = vocab_size or vocab
    corpus = TokenCorpus(name=str(path), train=train, val=val, vocab_size=vocab)
    corpus.check_length(seq_len)
    top = max(int(train.max()), int(val.max()))
    if top >= vocab:
        raise InputError(f"corpus {path} holds token id {top}, outside vocab_size = {vocab}")
    return corpus


def load_corpus(config) -> TokenCorpus:
    """The corpus a `gpt_lm` job config (workbench.lm.config.GPTLMConfig) names, long enough for
    its seq_len (InputError otherwise)."""
    if config.corpus == "markov":
        corpus = markov_corpus(
            config.corpus_tokens,
            max(config.corpus_tokens // 16, 4 * config.seq_len),
            alphabet=config.markov_alphabet,
            order=config.markov_order,
            seed=config.corpus_seed,
        )
    elif config.corpus == "spectral":
        corpus = spectral_corpus(
            config.corpus_tokens,
            max(config.corpus_tokens // 16, 4 * config.seq_len),
            alphabet=config.markov_alphabet,
            decay=config.spectral_decay,
            scale=config.spectral_scale,
            zipf=config.spectral_zipf,
            seed=config.corpus_seed,
        )
    elif config.corpus == "stdlib":
        corpus = stdlib_corpus(max_bytes=config.corpus_tokens)
    else:
        corpus = file_corpus(Path(config.corpus_path), seq_len=config.seq_len)
    corpus.check_length(config.seq_len)
    return corpus
