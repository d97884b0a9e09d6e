"""The PROSE multimodal transformer (Liu, Zhang & Schaeffer 2023), following the official
code (github.com/felix-lyx/prose, `prose_ode/parsers.py` and `symbolicregression/model/`).

One model, six blocks::

    [t, u_1..u_dmax] --data embedder (MLP)--> data encoder (LN, self-attn) --\
                                                                              +-> fusion (self-attn over
    skeleton tokens --embedding + sinusoid--> symbol encoder (self-attn) -----/    [data; symbol] + type emb)
                                                                                     |            |
                query times t -> Linear(1->d) -> LN -> data decoder (cross-attn     |            |
                                                     on fused DATA positions) <-----+            |
                     <BOS> y_1 .. -> symbol decoder (causal self-attn + cross-attn               |
                                                     on fused SYMBOL positions) <----------------+

Choices, all following the reference code unless stated:

- **Post-LN** everywhere (residual, then LayerNorm with eps 1e-12), GELU FFNs,
  ``nn.MultiheadAttention``. Post-LN trains fine at these depths with the reference's 20k-step
  warm-up; pre-LN is not offered, to keep one code path that matches the published counts.
- The data embedder sees the time as a feature; the data encoder and fusion have no positions.
  The data encoder starts with a LayerNorm of the embedder output and the data decoder with one of
  the query embedding Linear(1->d)(t) (both ``layer_norm_emb`` of the official
  `symbolicregression/model/transformer.py`: `DataTransformerModel.fwd`, `DataOperatorModel.fwd`).
  Symbol encoder and decoder add sinusoidal positions, then a LayerNorm (XLM style).
- "Split fused features": the data decoder attends only to the fused outputs at data positions,
  the symbol decoder only to those at symbol positions, so the modalities mix only in fusion.
- The data decoder has no self-attention among queries: each query time's output depends only on
  that time and the fused features, so any set of times can be queried (tested to 1e-6).
- The symbol decoder has its own token embedding (tied to its output projection, which keeps a
  bias) separate from the symbol encoder's, as the reference's parameter counts imply.
- Targets are right-padded, so the causal mask alone keeps ``<PAD>`` from reaching real tokens;
  no key-padding mask is used in decoder self-attention.
- ``data_only`` (ablation): the reference's ``--no_text`` (with ``--data_only``): no symbol
  encoder, no fusion and no symbol decoder are built (`symbolicregression/model/__init__.py`,
  `build_modules`), and the data decoder attends straight to the data encoder's output
  (`symbolicregression/trainer.py`, `enc_dec_step`); ``fusion_layers`` is then unused. At paper
  size that is 31.8 M parameters against the multimodal 104.3 M.

Symbol ids use :class:`operators.prose.tokens.Vocabulary`'s layout by default (``<BOS>`` 0,
``<EOS>`` 1, ``<PAD>`` 2). ``symbol_mask`` is True at real tokens and False at padding.

Losses (the official `symbolicregression/trainer.py`) are :func:`trajectory_loss`,
:func:`symbol_loss` and :func:`prose_loss` (6·data + 1·symbol). Decoding is :meth:`ProseModel.greedy_decode` and
:meth:`ProseModel.beam_search`; both return :class:`SymbolDecoding`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from operators.prose.config import ProseConfig
from workbench.errors import InputError

__all__ = [
    "Encoded",
    "ProseConfig",
    "ProseLosses",
    "ProseModel",
    "ProseOutput",
    "SymbolDecoding",
    "batch_token_ids",
    "count_parameters",
    "prose_loss",
    "symbol_loss",
    "trajectory_loss",
]

LN_EPS = 1e-12  # the reference's LayerNorm eps
DATA_LOSS_WEIGHT = 6.0  # the reference's --data_loss_weight
SYMBOL_LOSS_WEIGHT = 1.0
TRAJECTORY_EPS = 1e-5  # ||u||^2 + 1e-5, as the reference's data loss


# --- building blocks -----------------------------------------------------------------------------
def _layer_norm(hidden: int) -> nn.LayerNorm:
    return nn.LayerNorm(hidden, eps=LN_EPS)


class FeedForward(nn.Module):
    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.up = nn.Linear(cfg.hidden, cfg.ffn)
        self.down = nn.Linear(cfg.ffn, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


def _attention(cfg: ProseConfig) -> nn.MultiheadAttention:
    return nn.MultiheadAttention(cfg.hidden, cfg.heads, dropout=cfg.dropout, batch_first=True)


class EncoderLayer(nn.Module):
    """Post-LN self-attention layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.attention, self.norm_attention = _attention(cfg), _layer_norm(cfg.hidden)
        self.ffn, self.norm_ffn = FeedForward(cfg), _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm_attention(x + self.dropout(attended))
        return self.norm_ffn(x + self.ffn(x))


class CrossAttentionLayer(nn.Module):
    """Data-decoder layer: cross-attention only -> LN -> FFN -> LN; queries never meet."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.cross, self.norm_cross = _attention(cfg), _layer_norm(cfg.hidden)
        self.ffn, self.norm_ffn = FeedForward(cfg), _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        attended, _ = self.cross(queries, memory, memory, key_padding_mask=memory_padding, need_weights=False)
        queries = self.norm_cross(queries + self.dropout(attended))
        return self.norm_ffn(queries + self.ffn(queries))


class DecoderLayer(nn.Module):
    """Symbol-decoder layer: causal self-attn -> LN -> cross-attn -> LN -> FFN -> LN."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.self_attention, self.norm_self = _attention(cfg), _layer_norm(cfg.hidden)
        self.cross, self.norm_cross = _attention(cfg), _layer_norm(cfg.hidden)
        self.ffn, self.norm_ffn = FeedForward(cfg), _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, causal: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor | None
    ) -> torch.Tensor:
        attended, _ = self.self_attention(x, x, x, attn_mask=causal, need_weights=False)
        x = self.norm_self(x + self.dropout(attended))
        attended, _ = self.cross(x, memory, memory, key_padding_mask=memory_padding, need_weights=False)
        x = self.norm_cross(x + self.dropout(attended))
        return self.norm_ffn(x + self.ffn(x))


def sinusoidal_positions(length: int, hidden: int) -> torch.Tensor:
    """Vaswani et al. positions: sin on even, cos on odd features (the reference's XLM form)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, hidden, 2, dtype=torch.float32) / hidden)
    table = torch.zeros(length, hidden)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : hidden // 2]
    return table


class TokenEmbedding(nn.Module):
    """Token embedding (init std d^-1/2) + sinusoidal positions + LayerNorm."""

    def __init__(self, cfg: ProseConfig, max_len: int):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden)
        nn.init.normal_(self.tokens.weight, std=cfg.hidden**-0.5)
        self.register_buffer("positions", sinusoidal_positions(max_len, cfg.hidden), persistent=False)
        self.norm = _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.tokens(ids) + self.positions[: ids.shape[1]]))


class DataEmbedder(nn.Module):
    """Data embedder: Linear(1+d_max -> d) -> GELU -> Linear(d -> d) on [t, u_1..u_dmax (zero-padded)]."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1 + cfg.d_max, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden))

    def forward(self, times: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([times[..., None], values], dim=-1))


class DataEncoder(nn.Module):
    """Data encoder: LayerNorm of the embedded points (the reference's ``layer_norm_emb``), then
    self-attention layers; no positions (the time is an embedder feature)."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.norm = _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.data_encoder_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm(x))
        for layer in self.layers:
            x = layer(x)
        return x


class SymbolEncoder(nn.Module):
    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.embedding = TokenEmbedding(cfg, cfg.max_symbol_len + 2)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.symbol_encoder_layers))

    def forward(self, ids: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) * (~padding)[..., None]
        for layer in self.layers:
            x = layer(x, padding)
        return x


class Fusion(nn.Module):
    """Fusion: concat [data; symbol] + learned type embedding (2 types), LN, self-attention."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.types = nn.Embedding(2, cfg.hidden)
        self.norm = _layer_norm(cfg.hidden)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.fusion_layers))

    def forward(
        self, data: torch.Tensor, symbols: torch.Tensor | None, symbol_padding: torch.Tensor | None
    ) -> torch.Tensor:
        x = data + self.types.weight[0]
        padding = None
        if symbols is not None:
            x = torch.cat([x, symbols + self.types.weight[1]], dim=1)
            data_padding = torch.zeros(data.shape[:2], dtype=torch.bool, device=data.device)
            padding = torch.cat([data_padding, symbol_padding], dim=1)
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x, padding)
        return x


class DataDecoder(nn.Module):
    """Operator (data) decoder: query = LN(Linear(1 -> d)(t)); cross-attention layers; Linear(d -> d_max).

    The LayerNorm of the query embedding is the reference's ``layer_norm_emb`` (`DataOperatorModel.fwd`).
    """

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.query = nn.Linear(1, cfg.hidden)
        self.query_norm = _layer_norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(CrossAttentionLayer(cfg) for _ in range(cfg.data_decoder_layers))
        self.head = nn.Linear(cfg.hidden, cfg.d_max)

    def forward(self, query_times: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        queries = self.dropout(self.query_norm(self.query(query_times[..., None])))  # (Q, d) once, or (B, Q, d)
        if queries.dim() == 2:
            queries = queries.expand(memory.shape[0], *queries.shape)
        for layer in self.layers:
            queries = layer(queries, memory)
        return self.head(queries)


class SymbolDecoder(nn.Module):
    """Symbol decoder: embedding + sinusoid, causal decoder layers, output tied to the input embedding."""

    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.embedding = TokenEmbedding(cfg, cfg.max_symbol_len + 2)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.symbol_decoder_layers))
        self.output = nn.Linear(cfg.hidden, cfg.vocab_size)
        self.output.weight = self.embedding.tokens.weight  # tied (--share_inout_emb)

    def forward(self, ids: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor | None) -> torch.Tensor:
        length = ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).triu(1)
        x = self.embedding(ids)
        for layer in self.layers:
            x = layer(x, causal, memory, memory_padding)
        return self.output(x)


# --- the model -----------------------------------------------------------------------------------
def _reject_old_layout(module, state_dict, prefix, *_args) -> None:
    """Weights saved before the data-encoder and query LayerNorms (and, for data_only, before the
    fusion block was dropped) cannot be loaded; say so instead of listing missing keys."""
    old_encoder = any(k.startswith(f"{prefix}data_encoder.0.") for k in state_dict)
    old_fusion = module.fusion is None and any(k.startswith(f"{prefix}fusion.") for k in state_dict)
    if old_encoder or old_fusion:
        raise InputError(
            "these PROSE weights were saved by an earlier version of the model (before the LayerNorms "
            "of the data encoder's input and the data decoder's queries were added"
            + (", and with a fusion block, which the data_only model no longer has" if old_fusion else "")
            + "); they cannot be loaded into the current model: train the run again"
        )


@dataclass
class Encoded:
    """Fused features split by modality (the reference's split_fused_feature_data/text)."""

    data: torch.Tensor  # (B, T_in, d)
    symbols: torch.Tensor | None  # (B, S, d)
    symbol_padding: torch.Tensor | None  # (B, S), True at <PAD>


@dataclass
class ProseOutput:
    trajectory: torch.Tensor  # (B, Q, d_max)
    symbol_logits: torch.Tensor | None  # (B, L, V); position i predicts token i + 1


@dataclass
class SymbolDecoding:
    """Decoded token ids: ``tokens`` (B, K, L) without <BOS>, with <EOS> when generated, then <PAD>;
    ``lengths`` (B, K) counts tokens up to and including <EOS>; ``scores`` (B, K) summed log-probs,
    best first. Greedy decoding has K = 1."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor

    def sequences(self, eos_id: int) -> list[list[list[int]]]:
        """Python lists per batch and beam, <EOS> and padding removed (ready for Vocabulary.decode)."""
        out = []
        for tokens_b, lengths_b in zip(self.tokens.tolist(), self.lengths.tolist()):
            beams = []
            for tokens, length in zip(tokens_b, lengths_b):
                ids = tokens[:length]
                beams.append(ids[:-1] if ids and ids[-1] == eos_id else ids)
            out.append(beams)
        return out


class ProseModel(nn.Module):
    def __init__(self, cfg: ProseConfig):
        super().__init__()
        self.cfg = cfg
        self.data_embedder = DataEmbedder(cfg)
        self.data_encoder = DataEncoder(cfg)
        # data_only is the reference's --no_text: no symbol encoder, no fusion, no symbol decoder.
        self.symbol_encoder = None if cfg.data_only else SymbolEncoder(cfg)
        self.fusion = None if cfg.data_only else Fusion(cfg)
        self.data_decoder = DataDecoder(cfg)
        self.symbol_decoder = None if cfg.data_only else SymbolDecoder(cfg)
        self.register_load_state_dict_pre_hook(_reject_old_layout)

    # -- input checks (one clear InputError each) --
    def _check_inputs(self, data_times, data_values, symbol_ids, symbol_mask) -> int:
        cfg = self.cfg
        if data_values.dim() != 3 or data_values.shape[-1] != cfg.d_max:
            raise InputError(
                f"data_values must have shape (batch, times, d_max={cfg.d_max}), "
                f"got {tuple(data_values.shape)}; zero-pad states to d_max components"
            )
        batch, times = data_values.shape[:2]
        if data_times.shape != (batch, times):
            raise InputError(
                f"data_times must have shape (batch, times) = {(batch, times)} to match "
                f"data_values, got {tuple(data_times.shape)}"
            )
        if cfg.data_only:
            if symbol_ids is not None:
                raise InputError("this model is data_only: pass symbol_ids=None")
            return batch
        if symbol_ids is None:
            raise InputError("symbol_ids are required unless the config is data_only")
        if symbol_ids.dim() != 2 or symbol_ids.shape[0] != batch:
            raise InputError(
                f"symbol_ids must have shape (batch={batch}, length), got "
                f"{tuple(symbol_ids.shape)}: batch sizes must match data_values"
            )
        if symbol_ids.shape[1] > cfg.max_symbol_len + 2:
            raise InputError(
                f"symbol_ids have {symbol_ids.shape[1]} tokens; at most max_symbol_len + 2 = {cfg.max_symbol_len + 2}"
            )
        if symbol_mask is not None and symbol_mask.shape != symbol_ids.shape:
            raise InputError(
                f"symbol_mask must have symbol_ids' shape {tuple(symbol_ids.shape)}, got {tuple(symbol_mask.shape)}"
            )
        return batch

    def _check_query_times(self, query_times: torch.Tensor, batch: int) -> None:
        if query_times.numel() == 0:
            raise InputError("query_times is empty: pass at least one query time")
        if query_times.dim() == 2 and query_times.shape[0] != batch:
            raise InputError(
                f"query_times of shape (batch, Q) must have batch = {batch} to match "
                f"data_values, got {tuple(query_times.shape)}"
            )
        if query_times.dim() not in (1, 2):
            raise InputError(f"query_times must have shape (Q,) or (batch, Q), got {tuple(query_times.shape)}")

    # -- blocks --
    def encode(
        self,
        data_times: torch.Tensor,
        data_values: torch.Tensor,
        symbol_ids: torch.Tensor | None = None,
        symbol_mask: torch.Tensor | None = None,
    ) -> Encoded:
        """Embed, encode and (unless data_only) fuse both modalities; the features the decoders read,
        split by modality (data_only: the data encoder output)."""
        self._check_inputs(data_times, data_values, symbol_ids, symbol_mask)
        data = self.data_encoder(self.data_embedder(data_times, data_values))
        if self.fusion is None:  # data_only: the data decoder reads the data encoder's output
            return Encoded(data, None, None)
        padding = (symbol_ids == self.cfg.pad_id) if symbol_mask is None else ~symbol_mask.bool()
        symbols = self.symbol_encoder(symbol_ids, padding)
        fused = self.fusion(data, symbols, padding)
        times = data.shape[1]
        return Encoded(fused[:, :times], fused[:, times:], padding)

    def decode_trajectory(self, encoded: Encoded, query_times: torch.Tensor) -> torch.Tensor:
        """u(t) at any query times, (Q,) shared or (B, Q) per sample -> (B, Q, d_max)."""
        self._check_query_times(query_times, encoded.data.shape[0])
        return self.data_decoder(query_times.to(encoded.data.dtype), encoded.data)

    def decode_symbols(self, encoded: Encoded, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) for decoder inputs ``ids`` (starting with <BOS>)."""
        if self.symbol_decoder is None:
            raise InputError("this model is data_only: it has no symbol decoder")
        if ids.dim() != 2 or ids.shape[0] != encoded.symbols.shape[0]:
            raise InputError(
                f"target_ids must have shape (batch={encoded.symbols.shape[0]}, length), "
                f"got {tuple(ids.shape)}: batch sizes must match data_values"
            )
        if ids.shape[1] > self.cfg.max_symbol_len + 2:
            raise InputError(
                f"target_ids have {ids.shape[1]} tokens; at most max_symbol_len + 2 = {self.cfg.max_symbol_len + 2}"
            )
        return self.symbol_decoder(ids, encoded.symbols, encoded.symbol_padding)

    def forward(
        self,
        data_times: torch.Tensor,
        data_values: torch.Tensor,
        symbol_ids: torch.Tensor | None = None,
        symbol_mask: torch.Tensor | None = None,
        *,
        query_times: torch.Tensor,
        target_ids: torch.Tensor | None = None,
    ) -> ProseOutput:
        """Trajectory at ``query_times`` and (unless data_only) teacher-forced symbol logits.

        ``target_ids`` is the decoder input <BOS> + target + <EOS>, right-padded with <PAD>.
        """
        encoded = self.encode(data_times, data_values, symbol_ids, symbol_mask)
        trajectory = self.decode_trajectory(encoded, query_times)
        if target_ids is not None and self.cfg.data_only:
            raise InputError("this model is data_only: pass target_ids=None")
        logits = None if target_ids is None else self.decode_symbols(encoded, target_ids)
        return ProseOutput(trajectory, logits)

    # -- decoding --
    def _start(self, encoded: Encoded, copies: int) -> tuple[Encoded, torch.Tensor]:
        if self.symbol_decoder is None:
            raise InputError("this model is data_only: it has no symbol decoder to decode with")
        expanded = Encoded(
            encoded.data,
            encoded.symbols.repeat_interleave(copies, 0),
            encoded.symbol_padding.repeat_interleave(copies, 0),
        )
        start = torch.full(
            (encoded.symbols.shape[0] * copies, 1), self.cfg.bos_id, dtype=torch.long, device=encoded.symbols.device
        )
        return expanded, start

    def _next_log_probs(self, encoded: Encoded, ids: torch.Tensor) -> torch.Tensor:
        logits = self.symbol_decoder(ids, encoded.symbols, encoded.symbol_padding)[:, -1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        # <BOS> and <PAD> are never generated (scores stay the model's own log-probabilities).
        log_probs[:, [self.cfg.bos_id, self.cfg.pad_id]] = -math.inf
        return log_probs

    def _check_max_len(self, max_len: int | None) -> int:
        max_len = self.cfg.max_symbol_len if max_len is None else max_len
        if not 1 <= max_len <= self.cfg.max_symbol_len + 1:
            raise InputError(f"max_len = {max_len} must be in 1..{self.cfg.max_symbol_len + 1}")
        return max_len

    @torch.no_grad()
    def greedy_decode(
        self, data_times, data_values, symbol_ids=None, symbol_mask=None, *, max_len: int | None = None
    ) -> SymbolDecoding:
        """Argmax decoding, batched; stops a sequence at <EOS> and all at ``max_len`` tokens."""
        max_len = self._check_max_len(max_len)
        encoded, ids = self._start(self.encode(data_times, data_values, symbol_ids, symbol_mask), 1)
        batch = ids.shape[0]
        scores = torch.zeros(batch, device=ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=ids.device)
        for _ in range(max_len):
            log_probs = self._next_log_probs(encoded, ids)
            best, token = log_probs.max(dim=-1)
            token = torch.where(done, self.cfg.pad_id, token)
            scores = scores + torch.where(done, 0.0, best)
            ids = torch.cat([ids, token[:, None]], dim=1)
            done = done | (token == self.cfg.eos_id)
            if done.all():
                break
        tokens = ids[:, 1:]
        lengths = (tokens != self.cfg.pad_id).sum(dim=1)
        return SymbolDecoding(tokens[:, None], lengths[:, None], scores[:, None])

    @torch.no_grad()
    def beam_search(
        self, data_times, data_values, symbol_ids=None, symbol_mask=None, *, beam_size: int, max_len: int | None = None
    ) -> SymbolDecoding:
        """Beam search on summed log-probabilities, batched over batch x beam.

        A finished beam stays in the beam with its score frozen (it can only continue with <PAD>
        at log-prob 0), so the search stops once the K best hypotheses have all ended; beam 1 is
        exactly greedy decoding. Beams are returned best first (scores non-increasing).
        """
        if not isinstance(beam_size, int) or beam_size < 1:
            raise InputError(f"beam_size must be a positive integer, got {beam_size!r}")
        max_len = self._check_max_len(max_len)
        cfg, k = self.cfg, beam_size
        encoded, ids = self._start(self.encode(data_times, data_values, symbol_ids, symbol_mask), k)
        batch = ids.shape[0] // k
        # Only beam 0 is live at the start, so the first step does not pick k copies of one token.
        scores = torch.full((batch, k), -math.inf, device=ids.device)
        scores[:, 0] = 0.0
        done = torch.zeros(batch * k, dtype=torch.bool, device=ids.device)
        for _ in range(max_len):
            log_probs = self._next_log_probs(encoded, ids)  # (B*K, V)
            frozen = torch.full_like(log_probs[0], -math.inf)
            frozen[cfg.pad_id] = 0.0
            log_probs = torch.where(done[:, None], frozen, log_probs)
            vocab = log_probs.shape[-1]
            candidates = (scores.reshape(-1, 1) + log_probs).reshape(batch, k * vocab)
            scores, flat = candidates.topk(k, dim=1)  # sorted, best first
            parent = (flat // vocab + torch.arange(batch, device=ids.device)[:, None] * k).reshape(-1)
            token = (flat % vocab).reshape(-1)
            ids = torch.cat([ids[parent], token[:, None]], dim=1)
            done = done[parent] | (token == cfg.eos_id)
            if done.all():
                break
        tokens = ids[:, 1:].reshape(batch, k, -1)
        lengths = (tokens != cfg.pad_id).sum(dim=-1)
        return SymbolDecoding(tokens, lengths, scores)


# --- losses -------------------------------------------------------------------------------------
def trajectory_loss(
    predicted: torch.Tensor, target: torch.Tensor, dim_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L_data = mean_b ||û_b - u_b||² / (||u_b||² + 1e-5), norms over times and valid dims.

    ``dim_mask`` (B, d_max) is True for a family's real components (padded ones are excluded).
    """
    if predicted.shape != target.shape:
        raise InputError(
            f"predicted trajectory {tuple(predicted.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    mask = torch.ones_like(target) if dim_mask is None else dim_mask[:, None, :].to(target.dtype)
    error = ((predicted - target) ** 2 * mask).sum(dim=(1, 2))
    norm = (target**2 * mask).sum(dim=(1, 2))
    return (error / (norm + TRAJECTORY_EPS)).mean()


def symbol_loss(logits: torch.Tensor, ids: torch.Tensor, pad_id: int = 2) -> torch.Tensor:
    """Token cross-entropy, teacher-forced on <BOS> + target + <EOS>; <BOS> is never a target,
    <PAD> is ignored, the mean is over real target tokens."""
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
    return F.cross_entropy(predicted.float(), ids[:, 1:].reshape(-1), ignore_index=pad_id)


@dataclass
class ProseLosses:
    total: torch.Tensor
    trajectory: torch.Tensor
    symbol: torch.Tensor | None


def prose_loss(
    output: ProseOutput,
    target_trajectory: torch.Tensor,
    dim_mask: torch.Tensor | None,
    target_ids: torch.Tensor | None,
    pad_id: int = 2,
) -> ProseLosses:
    """L = 6.0 · L_data + 1.0 · L_sym (the reference's weights); L_data alone when there are no symbol logits."""
    data = trajectory_loss(output.trajectory, target_trajectory, dim_mask)
    if output.symbol_logits is None:
        return ProseLosses(DATA_LOSS_WEIGHT * data, data, None)
    sym = symbol_loss(output.symbol_logits, target_ids, pad_id)
    return ProseLosses(DATA_LOSS_WEIGHT * data + SYMBOL_LOSS_WEIGHT * sym, data, sym)


# --- helpers -------------------------------------------------------------------------------------
def batch_token_ids(
    sequences: Sequence[Sequence[int]], *, pad_id: int, bos_id: int | None = None, eos_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into (ids, mask) of shape (B, L); optionally wrap each in <BOS> ... <EOS>.

    Symbol-encoder inputs are bare skeletons (no BOS/EOS); decoder targets get both, as in the reference.
    """
    wrapped = [
        ([bos_id] if bos_id is not None else []) + list(s) + ([eos_id] if eos_id is not None else []) for s in sequences
    ]
    if not wrapped or min(len(s) for s in wrapped) == 0:
        raise InputError("batch_token_ids needs a non-empty list of non-empty sequences")
    length = max(len(s) for s in wrapped)
    ids = torch.full((len(wrapped), length), pad_id, dtype=torch.long)
    for row, s in enumerate(wrapped):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, s in enumerate(wrapped):
        mask[row, : len(s)] = True
    return ids, mask


BLOCKS = ("data_embedder", "data_encoder", "symbol_encoder", "fusion", "data_decoder", "symbol_decoder")


def count_parameters(model: ProseModel) -> dict[str, int]:
    """Parameters per block (`BLOCKS`) and in total (a tied weight is counted once, in its first block)."""
    seen: set[int] = set()
    counts: dict[str, int] = {}
    for block in BLOCKS:
        module = getattr(model, block)
        total = 0
        if module is not None:
            for parameter in module.parameters():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    total += parameter.numel()
        counts[block] = total
    counts["total"] = sum(counts[b] for b in BLOCKS)
    return counts
