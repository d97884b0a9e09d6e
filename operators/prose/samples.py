"""PROSE training samples in memory, and the batches the model trains on.

One training sample (Liu, Zhang & Schaeffer 2023; as built by `symbolicregression/trainer.py`
`enc_dec_step` of the official code, github.com/felix-lyx/prose, folder `prose_ode/`):

- data input: the first ``input_len`` = 64 of the 192 noisy points, (t, u) per token;
- symbol input: the target's skeleton (every constant -> ``<PLACEHOLDER>``), corrupted per sample
  and per step (one term added with p = 0.15, one deleted with p = 0.15);
- targets: the noisy trajectory at the other 128 times and the target tokens with their true
  coefficients.

The samples come either from `operators.odes.generate`, in process, cached per process, or from a
`workbench prose make-data` directory. Sympy runs once per sample, at load: the corruption of
every step works on precomputed term lists (operators.prose.skeleton).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators.odes import FAMILIES, generate
from operators.prose.config import ProseTrainableConfig
from operators.prose.dataset import load_dataset
from operators.prose.skeleton import SkeletonCorruptor
from operators.prose.tokens import Vocabulary, tokenize
from workbench.errors import InputError

__all__ = ["ProseData", "corrupted_inputs", "load_data", "make_batch", "pad_ids", "prepare_data", "run_model"]


@dataclass
class ProseData:
    """Trajectories padded to d_max and, per sample, target ids and skeleton terms.

    ``terms[i]`` are the per-component ``(sign, skeleton ids)`` terms of sample i
    (operators.prose.skeleton), ``target_ids[i]`` the target's ids with true coefficients.
    """

    t: np.ndarray  # (T,)
    noisy: np.ndarray  # (n, T, d_max) float32
    clean: np.ndarray  # (n, T, d_max) float32
    dim: np.ndarray  # (n,)
    family: np.ndarray  # (n,) index into families
    families: tuple[str, ...]
    tokens: list[list[str]]
    target_ids: list[list[int]] = field(default_factory=list)
    terms: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dim)

    def subset(self, rows) -> ProseData:
        rows = np.asarray(rows, dtype=np.int64)
        return ProseData(
            self.t,
            self.noisy[rows],
            self.clean[rows],
            self.dim[rows],
            self.family[rows],
            self.families,
            [self.tokens[i] for i in rows],
            [self.target_ids[i] for i in rows] if self.target_ids else [],
            [self.terms[i] for i in rows] if self.terms else [],
        )


def _family_tokens(raw: dict) -> list[list[str]]:
    """Target tokens of generate()'s output, one sympy -> tokens conversion per sample."""
    out = []
    for index, params in zip(raw["family"], raw["params"]):
        family = FAMILIES[raw["families"][int(index)]]
        out.append(tokenize(family.expressions(params[: len(family.params)])))
    return out


def prepare_data(raw: dict, d_max: int, *, source: str = "data") -> ProseData:
    """generate()/load_dataset() output -> ProseData (tokens made from params when absent)."""
    noisy, clean = np.asarray(raw["noisy"]), np.asarray(raw.get("clean", raw["noisy"]))
    if noisy.ndim != 3:
        raise InputError(f"{source}: trajectories must have shape (n, T, d), got {noisy.shape}")
    if noisy.shape[2] > d_max:
        raise InputError(
            f"{source} has {noisy.shape[2]}-dimensional states but d_max = {d_max}; set d_max: {noisy.shape[2]}"
        )
    pad = ((0, 0), (0, 0), (0, d_max - noisy.shape[2]))
    tokens = raw.get("tokens")
    if tokens is None:
        tokens = _family_tokens(raw)
    tokens = [t.split() if isinstance(t, str) else list(t) for t in tokens]
    if len(tokens) != noisy.shape[0]:
        raise InputError(f"{source}: {len(tokens)} token lists for {noisy.shape[0]} trajectories")
    data = ProseData(
        np.asarray(raw["t"], dtype=np.float64),
        np.pad(noisy, pad).astype(np.float32),
        np.pad(clean, pad).astype(np.float32),
        np.asarray(raw["dim"], dtype=np.int64),
        np.asarray(raw["family"], dtype=np.int64),
        tuple(raw["families"]),
        tokens,
    )
    vocabulary = Vocabulary(max_dim=d_max)
    corruptor = SkeletonCorruptor(vocabulary)
    data.target_ids = [vocabulary.encode(t) for t in tokens]
    data.terms = [corruptor.prepare(t) for t in tokens]
    return data


_PREPARED: dict = {}  # in-process data sets, generated and prepared once per process


@functools.lru_cache(maxsize=4)
def _loaded(path: str, split: str, d_max: int) -> ProseData:
    return prepare_data(load_dataset(path, split), d_max, source=f"{path} ({split} split)")


def _has_split(path: str, split: str) -> bool:
    """Whether a make-data directory's manifest lists shards of `split` (False if unreadable)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
        return any(record["split"] == split for record in manifest["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _hold_out(data: ProseData, n_val: int) -> tuple[ProseData, ProseData]:
    """Split round-robin data: the last n_val samples of every family are validation."""
    val_rows = []
    for index in range(len(data.families)):
        rows = np.flatnonzero(data.family == index)
        val_rows += list(rows[-n_val:]) if len(rows) > n_val else []
    is_val = np.zeros(len(data), dtype=bool)
    is_val[val_rows] = True
    if is_val.all() or not is_val.any():
        raise InputError(
            f"cannot hold out n_val = {n_val} samples per family from {len(data)} samples; lower n_val or give val_data"
        )
    return data.subset(np.flatnonzero(~is_val)), data.subset(np.flatnonzero(is_val))


def load_data(config: ProseTrainableConfig) -> tuple[ProseData, ProseData]:
    """(train, validation) data of `config`; in-process sets are generated once per process."""
    if not config.data:
        key = (config.families, config.n_train + config.n_val, config.data_seed, config.data_workers, config.engine)
        if (key, config.d_max) not in _PREPARED:
            raw = generate(config.families, key[1], config.data_seed, workers=config.data_workers, engine=config.engine)
            _PREPARED[(key, config.d_max)] = _hold_out(
                prepare_data(raw, config.d_max, source="generated data"), config.n_val
            )
        train, val = _PREPARED[(key, config.d_max)]
    elif config.val_data or _has_split(config.data, "val"):
        train, val = (
            _loaded(config.data, "train", config.d_max),
            _loaded(config.val_data or config.data, "val", config.d_max),
        )
    else:
        train, val = _hold_out(_loaded(config.data, "train", config.d_max), config.n_val)
    for name, part in (("data", train), ("validation data", val)):
        if config.input_len >= len(part.t):
            raise InputError(
                f"{name} has {len(part.t)} time points; input_len = {config.input_len} must leave query times"
            )
    return train, val


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def pad_ids(sequences, pad_id: int, *, bos_id: int | None = None, eos_id: int | None = None):
    """Right-padded (ids, mask) numpy arrays; optional <BOS> ... <EOS> wrapping (decoder targets)."""
    head = [bos_id] if bos_id is not None else []
    tail = [eos_id] if eos_id is not None else []
    length = max(len(s) for s in sequences) + len(head) + len(tail)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        ids[row, : len(s) + len(head) + len(tail)] = head + list(s) + tail
    return ids, ids != pad_id


def make_batch(
    data: ProseData, rows, symbol_inputs, *, input_len: int, d_max: int, vocabulary, with_symbols: bool
) -> dict:
    """Tensors of one batch. `symbol_inputs` are the (corrupted) skeleton ids of `rows`."""
    rows = np.asarray(rows, dtype=np.int64)
    t = data.t.astype(np.float32)
    batch = {
        "data_times": torch.from_numpy(np.broadcast_to(t[:input_len], (len(rows), input_len)).copy()),
        "data_values": torch.from_numpy(data.noisy[rows, :input_len]),
        "query_times": torch.from_numpy(t[input_len:].copy()),
        "target": torch.from_numpy(data.noisy[rows, input_len:]),  # noisy, as the reference's
        "dim_mask": torch.from_numpy(np.arange(d_max)[None, :] < data.dim[rows][:, None]),
    }
    if with_symbols:
        ids, mask = pad_ids(symbol_inputs, vocabulary.pad_id)
        target, _ = pad_ids(
            [data.target_ids[i] for i in rows], vocabulary.pad_id, bos_id=vocabulary.bos_id, eos_id=vocabulary.eos_id
        )
        batch.update(
            symbol_ids=torch.from_numpy(ids), symbol_mask=torch.from_numpy(mask), target_ids=torch.from_numpy(target)
        )
    return batch


def run_model(model, batch: dict, *, teacher_forcing: bool = False):
    """The model's output on a `make_batch` batch; with `teacher_forcing`, the symbol decoder reads
    the target tokens (training and validation losses), else only the trajectory is predicted."""
    return model(batch["data_times"], batch["data_values"], batch.get("symbol_ids"), batch.get("symbol_mask"),
                 query_times=batch["query_times"],
                 target_ids=batch.get("target_ids") if teacher_forcing else None)  # fmt: skip


def corrupted_inputs(data: ProseData, rows, corruptor, rng: np.random.Generator) -> list[list[int]]:
    """One skeleton-corruption draw (add/delete a term) per row, in row order, from `rng`."""
    return [corruptor.corrupt(data.terms[i], rng, int(data.dim[i]))[0] for i in rows]
