"""Offline byte corpora: the synthetic source's exact entropy rate, stdlib split, user files."""

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.lm.corpora import MarkovSource, file_corpus, markov_corpus, stdlib_corpus


def test_entropy_rate_matches_sample_log_likelihood_and_plug_in_estimate():
    source = MarkovSource(alphabet=16, order=2, concentration=0.3, seed=3)
    exact = source.entropy_rate()
    assert 0.5 < exact < np.log(16)
    tokens = source.sample(1 << 18, seed=1, chains=1)  # one stream: no joins between chains
    # Shannon-McMillan-Breiman: -mean log p -> H. Per-token std of -log p is ~1 nat, so the
    # standard error at 2^18 tokens is ~0.002; 0.01 is ~5 SE.
    assert -source.log_likelihood(tokens).mean() == pytest.approx(exact, abs=0.01)
    # Independent of the stored probabilities: plug-in H(X_t | X_t-2, X_t-1) from trigram counts.
    # Its downward bias is ~(16^3 - 16^2) / (2 n) = 0.007 nats; tolerance 0.02.
    s = tokens.astype(np.int64) - ord("a")
    tri = np.bincount((s[:-2] * 16 + s[1:-1]) * 16 + s[2:], minlength=16**3).reshape(256, 16).astype(float)
    ctx = tri.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(tri > 0, tri * np.log(ctx / tri), 0.0)
    assert terms.sum() / tri.sum() == pytest.approx(exact, abs=0.02)


def test_flat_rows_give_log_alphabet_and_stationary_is_a_distribution():
    source = MarkovSource(alphabet=8, order=1, concentration=1e4, seed=0)
    assert source.entropy_rate() == pytest.approx(np.log(8), abs=1e-3)
    pi = source.stationary()
    assert pi.sum() == pytest.approx(1.0) and (pi > 0).all()


def test_markov_corpus_is_seeded_and_batches_are_reproducible_shifted_windows():
    a, b = markov_corpus(1 << 12, 256, seed=0), markov_corpus(1 << 12, 256, seed=0)
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, markov_corpus(1 << 12, 256, seed=1).train)
    assert not np.array_equal(a.train[:256], a.val)  # held-out text is a fresh sample
    assert a.entropy_rate == pytest.approx(MarkovSource(seed=0).entropy_rate())
    x1, y1 = a.sample_batch("train", 4, 32, 7)
    x2, y2 = b.sample_batch("train", 4, 32, 7)
    assert x1.shape == (4, 32) and x1.dtype.is_floating_point is False
    assert (x1 == x2).all() and (y1 == y2).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()
    with pytest.raises(InputError, match="split"):
        a.sample_batch("test", 4, 32, 0)


def test_stdlib_corpus_is_deterministic_capped_and_split_by_file():
    a, b = stdlib_corpus(max_bytes=1 << 18), stdlib_corpus(max_bytes=1 << 18)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    assert len(a.train) + len(a.val) == 1 << 18
    assert len(a.val) > 0 and a.train.dtype == np.uint8


def test_stdlib_split_holds_out_every_kth_file(tmp_path):
    for i in range(10):
        (tmp_path / f"m{i}.py").write_bytes(f"x = {i}\n".encode())
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.py").write_bytes(b"JUNK")
    corpus = stdlib_corpus(val_every=5, root=tmp_path)
    assert bytes(corpus.val) == b"x = 4\nx = 9\n"
    assert b"JUNK" not in bytes(corpus.train) and b"x = 4" not in bytes(corpus.train)


def test_text_file_is_bytes_with_a_tail_split(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(bytes(range(200)) * 5)
    corpus = file_corpus(path, val_fraction=0.2, seq_len=8)
    assert len(corpus.train) == 800 and len(corpus.val) == 200
    assert corpus.vocab_size == 256 and corpus.train[199] == 199


def test_nanogpt_bin_files_are_uint16_memmaps(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16) * 50
    tokens.tofile(tmp_path / "train.bin")
    tokens[:100].tofile(tmp_path / "val.bin")
    corpus = file_corpus(tmp_path, seq_len=16)
    np.testing.assert_array_equal(corpus.train, tokens)
    assert corpus.vocab_size == 50304
    single = file_corpus(tmp_path / "train.bin", seq_len=16)
    assert len(single.train) == 900
    x, y = single.sample_batch("train", 2, 16, 0)
    assert int(x.max()) < 50304


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty.txt is empty"),
        ("short.txt", b"hello world", "fewer than seq_len"),
        ("odd.bin", b"\x01\x02\x03", "not a whole number of uint16"),
        ("empty.bin", b"", "empty"),
    ],
)
def test_bad_corpus_files_are_input_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message):
        file_corpus(tmp_path / name, seq_len=64)


def test_missing_corpus_paths_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        file_corpus(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="lacks val.bin"):
        np.zeros(10, dtype=np.uint16).tofile(tmp_path / "train.bin")
        file_corpus(tmp_path)
    (tmp_path / "v.bin").write_bytes(np.full(200, 60000, dtype=np.uint16).tobytes())
    with pytest.raises(InputError, match="outside vocab_size = 50000"):
        file_corpus(tmp_path / "v.bin", vocab_size=50000, seq_len=8)


def test_spectral_source_has_its_exact_entropy_rate_and_power_law_spectrum():
    from workbench.lm.corpora import SpectralMarkovSource, spectral_corpus

    source = SpectralMarkovSource(alphabet=64, decay=0.5, scale=3.0, zipf=1.0, seed=1)
    tokens = source.sample(1 << 18, seed=5, chains=256)
    assert tokens.min() >= 64 and tokens.max() < 64 + 64
    # the mean negative log-likelihood of a long sample is the entropy rate (ergodic theorem);
    # per-token std is about 1.5 nats, so 2^18 tokens give a standard error near 0.003
    nll = -source.log_likelihood(tokens).mean()
    assert nll == pytest.approx(source.entropy_rate(), abs=0.02)
    # log P centred over rows (softmax's per-row constant) and columns (the Zipf term) keeps the
    # singular values scale·√A·k^-decay, up to the small mixing of the centring
    logits = np.log(source.probs)
    logits -= logits.mean(axis=1, keepdims=True)
    logits -= logits.mean(axis=0, keepdims=True)
    s = np.linalg.svd(logits, compute_uv=False)[:32]
    k = np.arange(1, 33)
    assert np.polyfit(np.log(k), np.log(s), 1)[0] == pytest.approx(-0.5, abs=0.03)
    np.testing.assert_allclose(s[:8], 3.0 * 8 * k[:8] ** -0.5, rtol=0.03)
    corpus = spectral_corpus(4096, 512, alphabet=64, seed=1, decay=0.5)
    assert corpus.entropy_rate == pytest.approx(source.entropy_rate())
    with pytest.raises(InputError, match="decay"):
        SpectralMarkovSource(decay=float("nan"))
