"""The beam search after issue 11 part 2's first round (commit 7c8ea54), kept as the second baseline
``bench_decode.py --baseline appended`` times the current one against, on the same users in the same process.

A frozen copy: ``decode_step`` with the appended self-attention cache (each step's K/V copied into a per-user
buffer, one SDPA call per layer with a mask that keeps each beam's prefix), the search loop that drove it and
``recommend``'s concurrent single-threaded chunks; the cross-attention K/V as they were (``decode_baseline.cross_kv``).
Only the model's weights and building blocks (embedding, norms, projections, ``attend``, the output layer) come from
``diger_lib``; those compute the same bits as at that commit.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
from torch import Tensor

from diger_lib.decoding import BeamOutput, SIDTrie, length_chunks
from diger_lib.recommender import CrossKV, GenRecModel, attend
from diger_lib.runtime import eval_mode, torch_threads

from decode_baseline import beam_loop, cross_kv


class AppendedKV(NamedTuple):
    kv: list[Tensor]  # per decoder layer [B, capacity, 2, H, d_kv]; rows [0, used) hold K (0) and V (1)
    used: int
    rows: Tensor  # [B, nb, t] long: the row of each current hypothesis's step-s prefix

    def select(self, parent: Tensor) -> "AppendedKV":
        return self._replace(rows=self.rows.gather(1, parent[..., None].expand(-1, -1, self.rows.shape[2])))


def decode_step(model: GenRecModel, tokens: Tensor, cross: CrossKV, cache: AppendedKV | None, capacity: int,
                token_table: Tensor | None = None) -> tuple[Tensor, AppendedKV]:
    B, N = cross.keys[0].shape[0], tokens.shape[0]
    nb, t = N // B, 0 if cache is None else cache.rows.shape[2]
    x = model._embed(tokens, token_table, None)  # [N, d]
    used = 0 if cache is None else cache.used
    rows = torch.arange(used, used + nb, device=x.device).expand(B, nb)[..., None]
    rows = rows if cache is None else torch.cat([cache.rows, rows], 2)  # [B, nb, t+1]
    kv = [] if cache is None else cache.kv
    H, dk, S = model.cfg.n_heads, model.cfg.d_kv, used + nb
    bias = model.dec_bias(t + 1, t + 1)[0, :, t].to(x.dtype)  # [H, t+1]
    mask = torch.full((B, H, nb, S), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).scatter_(
        3, rows[:, None].expand(B, H, nb, t + 1), bias[None, :, None].expand(B, H, nb, t + 1))
    for i, blk in enumerate(model.dec_blocks):
        a = blk.self_attn
        qkv = a.qkv(blk.self_norm(x)).view(B, nb, 3, H, dk)
        if i == len(kv):
            kv.append(qkv.new_empty(B, max(capacity, S), 2, H, dk))
        elif kv[i].shape[1] < S:
            kv[i] = torch.cat([kv[i][:, :used], qkv.new_empty(B, max(S, 2 * used) - used, 2, H, dk)], 1)
        kv[i][:, used:S] = qkv[:, :, 1:]
        k, v = kv[i][:, :S].unbind(2)  # [B, S, H, dk] each
        o = attend(qkv[:, :, 0].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, 0.0, model.kernel)
        x = x + a.o(o.transpose(1, 2).reshape(N, H * dk))
        c = blk.cross_attn
        q = c.q(blk.cross_norm(x)).view(B, nb, c.h, c.dk).transpose(1, 2)  # [B, H, nb, dk]
        o = attend(q, cross.keys[i], cross.values[i], cross.mask, 0.0, model.kernel)
        x = x + c.o(o.transpose(1, 2).reshape(N, c.h * c.dk))
        x = blk.feed_forward(x)
    return model.output(model.dec_norm(x)), AppendedKV(kv, S, rows)


def constrained_beam_search(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *,
                            beam_size: int = 20, topk: int = 10) -> BeamOutput:
    with eval_mode(model):
        with torch.inference_mode():
            enc = model.encode(input_ids, attention_mask)
            cross = cross_kv(model, enc, attention_mask)
            rows = 1 + (trie.vocab.n_tokens - 1) * beam_size
            step = lambda tokens, cache: decode_step(model, tokens, cross, cache, rows)  # noqa: E731
            return beam_loop(step, trie, input_ids.shape[0], input_ids.device, beam_size, topk)


def recommend(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *, beam_size: int,
              topk: int, batch_size: int = 64, workers: int = 0) -> Tensor:
    """``diger_lib.decoding.recommend`` as it was: longest histories first, chunks of ``batch_size`` users, on CPU
    ``workers`` chunks at once (0 = torch's thread count), each on one thread."""
    U, dev = input_ids.shape[0], input_ids.device
    chunks, end = length_chunks(attention_mask, batch_size)  # the library's chunking, unchanged since
    workers = 1 if dev.type != "cpu" else min(workers or torch.get_num_threads(), len(chunks)) or 1

    def search(idx: Tensor) -> Tensor:
        width = max(int(end[idx].max()), 1)
        return constrained_beam_search(model, input_ids[idx, :width], attention_mask[idx, :width], trie,
                                       beam_size=beam_size, topk=topk).items

    out = torch.full((U, topk), -1, dtype=torch.long, device=dev)
    with eval_mode(model), contextlib.ExitStack() as stack:
        results = map(search, chunks)
        if workers > 1:
            stack.enter_context(torch_threads(1))
            results = stack.enter_context(ThreadPoolExecutor(workers)).map(search, chunks)
        for idx, items in zip(chunks, results):
            out[idx] = items
    return out
