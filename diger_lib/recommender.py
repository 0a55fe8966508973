"""The generative recommender: a T5 (v1.0) encoder-decoder over semantic-ID tokens (section 3, Eq. 2-4).

The encoder reads the history items' IDs concatenated (Eq. 2); the decoder predicts the next item's ID one
token at a time (Eq. 3) and training minimises its negative log-likelihood (Eq. 4). The layers follow
Hugging Face ``T5ForConditionalGeneration`` exactly (RMS layer norm, relative position bias computed in the
first layer of each stack and shared, no 1/sqrt(d) attention scaling, pre-norm residual blocks, ReLU
feed-forward, dropout where T5 puts it) with an untied, unscaled ``lm_head`` (``tie_word_embeddings=False``),
so HF weights copied in by :meth:`GenRecModel.load_hf_t5_` give HF's logits; ``tests/test_recommender.py``
checks that and is the readable reference for this file. (transformers 5 ties ``lm_head`` to the input
embedding whatever ``tie_word_embeddings`` says and only drops the rescaling; such a model loads fine, its
two tables are simply equal.)

Speed on 2 CPU cores (benchmarks/README.md): Q/K/V are one fused projection; the attention mask (position
bias + padding) is built once per stack, and the padding part only when something is padded (length-
bucketed batches have none); dropout draws two masks per 32-bit random number (``F.dropout`` costs ~5x a
matmul pass on CPU); attention uses SDPA when no dropout is active and two matmuls otherwise (SDPA's CPU
dropout is slow). The incremental decoder lets the beams of a user query that user's cross-attention K/V
as one block (shared, not copied per beam); its self-attention cache never reorders K/V: each step appends
its rows, and one masked attention call per layer reads every beam's own prefix among them. Both caches are
head-major with keys stored transposed, so on CPU these attentions are plain unstrided batched matmuls.
Residual adds and ReLU write into the fresh sublayer outputs, and without a graph RMS norm works in place
too (same bits, fewer passes over memory).
torch.compile was tried and was slower (and compiled for 80 s), so it is not offered.

On CUDA (not run here: this machine has no GPU) attention always uses SDPA, whose fused memory-efficient kernel
takes T5's additive float mask and the attention dropout. Under bf16 autocast (``TrainConfig.amp``) ``attend`` casts
the masks, built in fp32, to the queries' dtype as that kernel requires (fp32's most negative value becomes -inf,
harmless: no query has every key masked). The flash kernel takes no arbitrary mask, so T5's position bias rules it out.
"""
from __future__ import annotations

import enum
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RecommenderConfig
from .hf_t5 import config_from_hf, hf_t5_config, load_hf_t5  # noqa: F401 (hf_t5_config: re-exported)
from .vocab import PAD, SIDVocab


class RecOutput(NamedTuple):
    logits: Tensor  # [B, T, V]
    loss: Tensor  # mean cross-entropy over label positions (Eq. 4 up to normalisation); -100 labels ignored


class RecStates(NamedTuple):
    """``forward`` with the hidden states UniGRec's distillation reads (UniGRec section 3.4)."""

    logits: Tensor  # [B, T, V]
    loss: Tensor  # as RecOutput.loss
    enc: Tensor  # [B, L, d] encoder output H^Enc (what the decoder attends to)
    dec: Tensor  # [B, T, d] final decoder states H^Dec before the output dropout and layer


class AttentionKernel(str, enum.Enum):
    AUTO = "auto"  # CPU: MATMUL while attention dropout is active (training) and in decode_step, SDPA otherwise
    #                (measured fastest); CUDA: SDPA (fused kernels, dropout included)
    SDPA = "sdpa"  # torch.nn.functional.scaled_dot_product_attention, additive float mask
    MATMUL = "matmul"  # two batched matmuls + softmax + the cheap dropout below (SDPA's CPU dropout is slow)


class CrossKV(NamedTuple):
    """Cross-attention keys/values of one batch of users, computed once per beam search.

    Both are stored head-major and contiguous per (user, head), the keys transposed (``keys[i]`` is a [B, H, L, d_kv]
    view of a [B, H, d_kv, L] tensor): the 20 beams' queries of a user then meet them in plain, unstrided batched
    matmuls, which on CPU run 2-3x faster than on the projection's interleaved rows (benchmarks/README.md).
    """

    keys: list[Tensor]  # per decoder layer [B, H, L, d_kv] (transposed view of contiguous K^T)
    values: list[Tensor]  # per decoder layer [B, H, L, d_kv], contiguous
    mask: Tensor | None  # [B, 1, 1, L] additive padding mask, None if nothing is padded


class SelfKV(NamedTuple):
    """Decoder self-attention cache for beam search: K/V stay where they were written, prefixes are row lists.

    Each step appends the K/V of its nb hypotheses to its users' blocks; ``rows[b, r]`` lists, step by step, the
    rows of hypothesis r's prefix. Selecting beams only gathers ``rows`` (nothing is copied or reordered), and
    attention reads a user's whole block with every row outside the prefix masked out. The buffers are written
    in place: continue from the cache a step returned (or its ``select``), never from an older one. Like
    :class:`CrossKV` they are head-major, keys transposed, so attention runs on unstrided (user, head) blocks.
    """

    keys: list[Tensor]  # per decoder layer K^T [B, H, d_kv, capacity]; columns [0, used) are written
    values: list[Tensor]  # per decoder layer [B, H, capacity, d_kv]; rows [0, used) are written
    used: int
    rows: Tensor  # [B, nb, t] long: the row of each current hypothesis's step-s prefix, s = 0 .. t-1

    @property
    def length(self) -> int:
        return self.rows.shape[2]

    def select(self, parent: Tensor) -> "SelfKV":
        """Continue from hypotheses ``parent`` [B, nb'] (indices into each user's current nb hypotheses)."""
        return self._replace(rows=self.rows.gather(1, parent[..., None].expand(-1, -1, self.length)))


class StepOutput(NamedTuple):
    logits: Tensor  # [N, V]
    cache: SelfKV


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------
def relative_position_bucket(relative_position: Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Tensor:
    """T5's bucketing of ``memory_position - query_position`` (Mesh TensorFlow / HF, bit for bit)."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, relative_position, large)


class RelativeBias(nn.Module):
    """Learned scalar bias per (head, bucket), added to the attention logits of every layer of a stack."""

    def __init__(self, cfg: RecommenderConfig, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets, self.max_distance = cfg.rel_buckets, cfg.rel_max_distance
        self.weight = nn.Parameter(torch.empty(cfg.rel_buckets, cfg.n_heads))

    def forward(self, q_len: int, k_len: int) -> Tensor:
        dev = self.weight.device
        rel = torch.arange(k_len, device=dev)[None, :] - torch.arange(q_len, device=dev)[:, None]
        b = relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)
        return F.embedding(b, self.weight).permute(2, 0, 1).unsqueeze(0)  # [1, H, q, k]


def padding_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor | None:
    """[B, L] (1 = token) -> additive [B, 1, 1, L] (HF uses finfo.min, not -inf), or None if nothing is padded."""
    keep = attention_mask.bool()
    if bool(keep.all()):
        return None
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(
        ~keep, torch.finfo(dtype).min)[:, None, None, :]


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with a cheaper mask than ``F.dropout`` (which costs ~5x a matmul pass on CPU).

    Each 32-bit draw of the generator yields two 15-bit uniforms (low and high half, top bit cleared), so
    an element is dropped with probability round(p * 2^15) / 2^15 (0.100006 for p = 0.1) and the survivors
    are scaled by the exact inverse keep rate. Uses the global torch generator, so ``torch.manual_seed``
    makes it reproducible.
    """
    if not training or p == 0.0:
        return x
    n = x.numel()
    cut = round(p * 32768)
    r = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device).random_().view(torch.int16)[:n]
    keep = torch.bitwise_and(r, 0x7FFF) >= cut
    mask = keep.view(torch.uint8).to(x.dtype).mul_(32768 / (32768 - cut))
    return x * mask.view(x.shape)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p_drop: float, kernel: AttentionKernel) -> Tensor:
    """softmax(q k^T + mask) v with T5's unscaled logits; dropout ``p_drop`` on the attention weights."""
    if mask is not None and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)
    if kernel is AttentionKernel.SDPA or (kernel is AttentionKernel.AUTO and (p_drop == 0.0 or q.is_cuda)):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop, scale=1.0)
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores + mask
    w = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(dropout(w, p_drop, p_drop > 0), v)


def residual(x: Tensor, y: Tensor) -> Tensor:
    """x + y, written into y when the dtypes agree: y is a fresh sublayer output that no backward reads, and the
    add in place saves a pass over memory. (Under autocast y may be bf16 while the stream x stays fp32.)"""
    return y.add_(x) if y.dtype == x.dtype else x + y


class RMSNorm(nn.Module):
    """T5LayerNorm: x / rms(x) * weight, no mean subtraction, no bias, eps 1e-6."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.dtype != self.weight.dtype:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # no graph to record: F.rms_norm's arithmetic (bit for bit, tested) with two temporaries fewer, ~30% faster
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps))).mul_(self.weight)


class Attention(nn.Module):
    """Multi-head attention with fused projections: ``qkv`` for self-attention, ``q`` + ``kv`` for cross."""

    def __init__(self, cfg: RecommenderConfig, cross: bool):
        super().__init__()
        self.h, self.dk, self.cross = cfg.n_heads, cfg.d_kv, cross
        inner = cfg.n_heads * cfg.d_kv
        if cross:
            self.q = nn.Linear(cfg.d_model, inner, bias=False)
            self.kv = nn.Linear(cfg.d_model, 2 * inner, bias=False)
        else:
            self.qkv = nn.Linear(cfg.d_model, 3 * inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)

    def heads(self, x: Tensor) -> Tensor:  # [B, L, H*dk] -> [B, H, L, dk] (a view)
        return x.unflatten(-1, (self.h, self.dk)).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:  # [B, H, L, dk] -> [B, L, H*dk]
        return x.transpose(1, 2).flatten(2)

    def cross_kv(self, enc: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(enc).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)


class Block(nn.Module):
    """One pre-norm T5 block: self-attention, (cross-attention), ReLU feed-forward, each with residual."""

    def __init__(self, cfg: RecommenderConfig, decoder: bool):
        super().__init__()
        self.self_norm, self.self_attn = RMSNorm(cfg.d_model), Attention(cfg, cross=False)
        if decoder:
            self.cross_norm, self.cross_attn = RMSNorm(cfg.d_model), Attention(cfg, cross=True)
        self.ff_norm = RMSNorm(cfg.d_model)
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.p = cfg.dropout

    def drop(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def feed_forward(self, x: Tensor) -> Tensor:
        # relu writes into the fresh wi output (its backward reads only its own result): one pass less
        return residual(x, self.drop(self.wo(self.drop(self.wi(self.ff_norm(x)).relu_()))))

    def forward(self, x: Tensor, mask: Tensor | None, kernel: AttentionKernel,
                enc: Tensor | None = None, enc_mask: Tensor | None = None) -> Tensor:
        a = self.self_attn
        p_attn = self.p if self.training else 0.0
        q, k, v = (a.heads(t) for t in a.qkv(self.self_norm(x)).chunk(3, dim=-1))
        x = residual(x, self.drop(a.o(a.merge(attend(q, k, v, mask, p_attn, kernel)))))
        if enc is not None:
            c = self.cross_attn
            q = c.heads(c.q(self.cross_norm(x)))
            k, v = c.cross_kv(enc)
            x = residual(x, self.drop(c.o(c.merge(attend(q, k, v, enc_mask, p_attn, kernel)))))
        return self.feed_forward(x)


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------
class GenRecModel(nn.Module):
    """T5 encoder-decoder predicting the next item's semantic ID (Eq. 3), trained with Eq. 4."""

    def __init__(self, cfg: RecommenderConfig, vocab: SIDVocab, *, kernel: AttentionKernel | str = "auto"):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.kernel = AttentionKernel(kernel)
        V, d = vocab.size, cfg.d_model
        self.embed = nn.Embedding(V, d)  # shared by encoder and decoder inputs
        self.enc_bias = RelativeBias(cfg, bidirectional=True)
        self.enc_blocks = nn.ModuleList(Block(cfg, decoder=False) for _ in range(cfg.n_encoder_layers))
        self.enc_norm = RMSNorm(d)
        self.dec_bias = RelativeBias(cfg, bidirectional=False)
        self.dec_blocks = nn.ModuleList(Block(cfg, decoder=True) for _ in range(cfg.n_decoder_layers))
        self.dec_norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, V, bias=False)
        if cfg.tie_embeddings:  # T5 default: the output layer is the input table, outputs rescaled by d**-0.5
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """HF T5's initialisation (initializer_factor 1.0)."""
        d, dk, h, dff = self.cfg.d_model, self.cfg.d_kv, self.cfg.n_heads, self.cfg.d_ff
        nn.init.normal_(self.embed.weight, std=1.0)
        if not self.cfg.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=1.0)
        for bias in (self.enc_bias, self.dec_bias):
            nn.init.normal_(bias.weight, std=d ** -0.5)
        for m in self.modules():
            if isinstance(m, RMSNorm):
                m.weight.fill_(1.0)
            elif isinstance(m, Attention):
                if m.cross:
                    nn.init.normal_(m.q.weight, std=(d * dk) ** -0.5)
                    nn.init.normal_(m.kv.weight, std=d ** -0.5)
                else:
                    nn.init.normal_(m.qkv.weight, std=d ** -0.5)
                    nn.init.normal_(m.qkv.weight[: h * dk], std=(d * dk) ** -0.5)
                nn.init.normal_(m.o.weight, std=(h * dk) ** -0.5)
            elif isinstance(m, Block):
                nn.init.normal_(m.wi.weight, std=d ** -0.5)
                nn.init.normal_(m.wo.weight, std=dff ** -0.5)

    def embed_weight(self) -> Tensor:
        """The input token table [V, d] (what ``token_table`` replaces)."""
        return self.embed.weight

    def _drop(self, x: Tensor) -> Tensor:
        return dropout(x, self.cfg.dropout, self.training)

    def _embed(self, ids: Tensor, token_table: Tensor | None, extra: Tensor | None) -> Tensor:
        x = F.embedding(ids, self.embed.weight if token_table is None else token_table)
        return x if extra is None else x + extra

    # -- encoder ---------------------------------------------------------------------------------------
    def encode(self, input_ids: Tensor, attention_mask: Tensor, *, input_extra: Tensor | None = None,
               token_table: Tensor | None = None) -> Tensor:
        """History tokens (Eq. 2) [B, L] -> encoder states [B, L, d]."""
        x = self._drop(self._embed(input_ids, token_table, input_extra))
        L = input_ids.shape[1]
        pad = padding_mask(attention_mask, x.dtype)
        mask = self.enc_bias(L, L)  # [1, H, L, L], shared by every layer
        if pad is not None:
            mask = mask + pad
        for blk in self.enc_blocks:
            x = blk(x, mask, self.kernel)
        return self._drop(self.enc_norm(x))

    # -- teacher-forced decoder -------------------------------------------------------------------------
    def decoder_bias(self, T: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Relative bias of decoder self-attention with the causal mask folded in: [1, H, T, T]."""
        bias = self.dec_bias(T, T).to(dtype)
        future = torch.ones(T, T, dtype=torch.bool, device=bias.device).triu_(1)
        return bias.masked_fill(future, torch.finfo(dtype).min)

    def decode(self, decoder_input_ids: Tensor, enc: Tensor, attention_mask: Tensor, *,
               decoder_input_extra: Tensor | None = None, token_table: Tensor | None = None) -> Tensor:
        """Teacher-forced decoder on already shifted inputs [B, T] -> logits [B, T, V]."""
        return self.output(self._drop(self.decode_hidden(decoder_input_ids, enc, attention_mask,
                                                         decoder_input_extra=decoder_input_extra,
                                                         token_table=token_table)))

    def decode_hidden(self, decoder_input_ids: Tensor, enc: Tensor, attention_mask: Tensor, *,
                      decoder_input_extra: Tensor | None = None, token_table: Tensor | None = None) -> Tensor:
        """The decoder's final (normed) states [B, T, d], before the output dropout and layer."""
        x = self._drop(self._embed(decoder_input_ids, token_table, decoder_input_extra))
        mask = self.decoder_bias(decoder_input_ids.shape[1], x.dtype)
        enc_mask = padding_mask(attention_mask, x.dtype)
        for blk in self.dec_blocks:
            x = blk(x, mask, self.kernel, enc, enc_mask)
        return self.dec_norm(x)

    def output(self, h: Tensor) -> Tensor:
        """Final decoder states -> vocabulary logits (T5 rescales by d**-0.5 when the table is tied)."""
        return self.lm_head(h * self.cfg.d_model ** -0.5 if self.cfg.tie_embeddings else h)

    @staticmethod
    def shift_right(labels: Tensor) -> Tensor:
        """T5 decoder inputs: PAD (decoder start) then labels[:-1]; ignored labels (-100) become PAD."""
        out = labels.new_full(labels.shape, PAD)
        out[:, 1:] = labels[:, :-1]
        return out.masked_fill_(out == -100, PAD)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, *,
                input_extra: Tensor | None = None, decoder_extra: Tensor | None = None,
                token_table: Tensor | None = None) -> RecOutput:
        """Logits of every label position and the mean cross-entropy (Eq. 4).

        ``decoder_extra`` [B, T, d] is aligned with ``labels`` (entry t belongs to label token t) and is
        shifted right with them: it is added where token t is fed back as decoder input (position t + 1),
        so it can only influence the predictions after token t. The decoder start position gets nothing.
        """
        s = self.forward_states(input_ids, attention_mask, labels, input_extra=input_extra,
                                decoder_extra=decoder_extra, token_table=token_table)
        return RecOutput(s.logits, s.loss)

    def forward_states(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, *,
                       input_extra: Tensor | None = None, decoder_extra: Tensor | None = None,
                       token_table: Tensor | None = None) -> RecStates:
        """``forward`` that also returns the encoder output and the final decoder states."""
        enc = self.encode(input_ids, attention_mask, input_extra=input_extra, token_table=token_table)
        dec_extra = None
        if decoder_extra is not None:
            dec_extra = torch.cat([decoder_extra.new_zeros(decoder_extra[:, :1].shape), decoder_extra[:, :-1]], 1)
        dec = self.decode_hidden(self.shift_right(labels), enc, attention_mask, decoder_input_extra=dec_extra,
                                 token_table=token_table)
        logits = self.output(self._drop(dec))
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return RecStates(logits, loss, enc, dec)

    # -- incremental decoder (beam search) ----------------------------------------------------------------
    def cross_kv(self, enc: Tensor, attention_mask: Tensor) -> CrossKV:
        """Per decoder layer cross-attention K/V of ``enc`` [B, L, d], computed once per batch of users."""
        ks, vs = zip(*(blk.cross_attn.cross_kv(enc) for blk in self.dec_blocks))
        return CrossKV([k.transpose(-1, -2).contiguous().transpose(-1, -2) for k in ks], [v.contiguous() for v in vs],
                       padding_mask(attention_mask, enc.dtype))

    def decode_step(self, tokens: Tensor, cross: CrossKV, cache: SelfKV | None, *, capacity: int = 0,
                    token_table: Tensor | None = None, extra: Tensor | None = None) -> StepOutput:
        """Feed one token per hypothesis ``tokens`` [N] at position t = ``cache.length``; -> logits [N, V].

        Rows are user-major: with B users in ``cross`` each user owns nb = N/B consecutive rows (its beams),
        and ``cache.select`` must have mapped the cache onto exactly these rows. The nb beams of a user form
        one query block against that user's keys: cross K/V are shared (not copied per beam), and self-attention
        is one call over the user's cached rows with a mask that keeps each beam's own prefix (plus the position
        bias there). ``capacity``: rows per user to reserve when the cache starts (the whole search's
        hypotheses, e.g. 1 + 3 * 20); the buffers grow if a step needs more.
        """
        B, N = cross.keys[0].shape[0], tokens.shape[0]
        if N % B:
            raise ValueError(f"{N} hypotheses cannot be split evenly over {B} users")
        nb, t = N // B, 0 if cache is None else cache.length
        if cache is not None and cache.rows.shape[:2] != (B, nb):
            raise ValueError(f"cache tracks {tuple(cache.rows.shape[:2])} hypotheses, tokens give {(B, nb)}")
        x = self._embed(tokens, token_table, extra)  # [N, d]
        used = 0 if cache is None else cache.used
        rows = torch.arange(used, used + nb, device=x.device).expand(B, nb)[..., None]  # this step's own rows
        rows = rows if cache is None else torch.cat([cache.rows, rows], 2)  # [B, nb, t+1]
        ks, vs = ([], []) if cache is None else (cache.keys, cache.values)
        H, dk, S = self.cfg.n_heads, self.cfg.d_kv, used + nb
        # T5's position bias of query t at each prefix row, minus "infinity" on every other row of the user
        bias = self.dec_bias(t + 1, t + 1)[0, :, t].to(x.dtype)  # [H, t+1]
        mask = torch.full((B, H, nb, S), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).scatter_(
            3, rows[:, None].expand(B, H, nb, t + 1), bias[None, :, None].expand(B, H, nb, t + 1))
        kernel = self.kernel
        if kernel is AttentionKernel.AUTO and x.device.type == "cpu":  # SDPA's CPU kernel is slower on these
            kernel = AttentionKernel.MATMUL  # blocks of a user's 20 queries than two matmuls (benchmarks/README.md)
        for i, blk in enumerate(self.dec_blocks):
            a = blk.self_attn
            qkv = a.qkv(blk.self_norm(x)).view(B, nb, 3, H, dk)
            if i == len(ks):  # first step: start this layer's buffers
                ks.append(qkv.new_empty(B, H, dk, max(capacity, S)))
                vs.append(qkv.new_empty(B, H, max(capacity, S), dk))
            elif ks[i].shape[3] < S:  # more hypotheses than reserved: grow
                grow = max(S, 2 * used) - used
                ks[i] = torch.cat([ks[i][..., :used], qkv.new_empty(B, H, dk, grow)], 3)
                vs[i] = torch.cat([vs[i][:, :, :used], qkv.new_empty(B, H, grow, dk)], 2)
            ks[i][..., used:S] = qkv[:, :, 1].permute(0, 2, 3, 1)
            vs[i][:, :, used:S] = qkv[:, :, 2].transpose(1, 2)
            o = attend(qkv[:, :, 0].transpose(1, 2), ks[i][..., :S].transpose(-1, -2), vs[i][:, :, :S], mask, 0.0,
                       kernel)
            x = residual(x, a.o(o.transpose(1, 2).reshape(N, H * dk)))
            c = blk.cross_attn
            q = c.q(blk.cross_norm(x)).view(B, nb, c.h, c.dk).transpose(1, 2)  # [B, H, nb, dk]
            o = attend(q, cross.keys[i], cross.values[i], cross.mask, 0.0, kernel)
            x = blk.feed_forward(residual(x, c.o(o.transpose(1, 2).reshape(N, c.h * c.dk))))
        return StepOutput(self.output(self.dec_norm(x)), SelfKV(ks, vs, S, rows))

    # -- Hugging Face interop (diger_lib.hf_t5) ----------------------------------------------------------------
    def load_hf_t5_(self, hf) -> "GenRecModel":
        """Copy the weights of a ``transformers.T5ForConditionalGeneration`` built with ``hf_t5_config``."""
        return load_hf_t5(self, hf)

    @classmethod
    def from_hf_t5(cls, hf, vocab: SIDVocab, **kwargs) -> "GenRecModel":
        model = cls(config_from_hf(hf.config), vocab, **kwargs).to(hf.shared.weight.device)
        return model.load_hf_t5_(hf)
