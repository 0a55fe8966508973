"""The beam search as it was before issue 11 part 2 (commit 3e5d763), kept as the baseline ``bench_decode.py``
times the current one against, on the same users in the same process.

A frozen copy: ``decode_step`` with the parent-pointer cache (per-step score matrices of each user's beams,
gathered at the ancestors) and the search loop that drove it. Only the model's weights and building blocks
(embedding, norms, projections, ``attend``, the output layer) come from ``diger_lib``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from diger_lib.decoding import NEG_INF, BeamOutput, SIDTrie, length_chunks
from diger_lib.recommender import CrossKV, GenRecModel, attend, padding_mask
from diger_lib.runtime import eval_mode
from diger_lib.vocab import PAD


class PointerKV(NamedTuple):
    keys: list[list[Tensor]]  # [layer][step s] -> [B, H, nb_s, d_kv]
    values: list[list[Tensor]]
    ancestors: list[Tensor]  # [step s] -> [B, nb] index into step s's nb_s hypotheses of the same user

    @property
    def length(self) -> int:
        return len(self.ancestors)

    def select(self, parent: Tensor) -> "PointerKV":
        return PointerKV(self.keys, self.values, [a.gather(1, parent) for a in self.ancestors])


def cross_kv(model: GenRecModel, enc: Tensor, attention_mask: Tensor) -> CrossKV:
    """``GenRecModel.cross_kv`` as it was: K/V as strided views of the fused projection (the library now stores them
    head-major, keys transposed, which would change the arithmetic of the frozen searches' SDPA calls)."""
    ks, vs = zip(*(blk.cross_attn.cross_kv(enc) for blk in model.dec_blocks))
    return CrossKV(list(ks), list(vs), padding_mask(attention_mask, enc.dtype))


def decode_step(model: GenRecModel, tokens: Tensor, cross: CrossKV, cache: PointerKV | None,
                token_table: Tensor | None = None) -> tuple[Tensor, PointerKV]:
    B, N = cross.keys[0].shape[0], tokens.shape[0]
    nb, t = N // B, 0 if cache is None else cache.length
    x = model._embed(tokens, token_table, None)  # [N, d]
    bias = model.dec_bias(t + 1, t + 1)[0, :, t].to(x.dtype)[None, :, None, :]  # [1, H, 1, t+1], query at t
    here = torch.arange(nb, device=tokens.device).expand(B, nb)
    ancestors = ([] if cache is None else cache.ancestors) + [here]
    keys, values = [], []
    for i, blk in enumerate(model.dec_blocks):
        a = blk.self_attn
        q, k, v = a.qkv(blk.self_norm(x)).view(B, nb, 3, a.h, a.dk).permute(2, 0, 3, 1, 4).contiguous()
        ks = ([] if cache is None else cache.keys[i]) + [k]  # each [B, H, nb_s, dk]
        vs = ([] if cache is None else cache.values[i]) + [v]
        keys.append(ks)
        values.append(vs)
        pick = [anc[:, None, :, None].expand(B, a.h, nb, 1) for anc in ancestors]
        scores = torch.cat([torch.matmul(q, k_s.transpose(-1, -2)).gather(-1, p) for k_s, p in zip(ks, pick)], -1)
        w = torch.softmax((scores + bias).float(), dim=-1).to(x.dtype)  # [B, H, nb, t+1]
        o = sum(torch.matmul(torch.zeros(B, a.h, nb, v_s.shape[2], dtype=w.dtype, device=w.device)
                             .scatter_(-1, p, w[..., s:s + 1]), v_s) for s, (v_s, p) in enumerate(zip(vs, pick)))
        x = x + a.o(o.transpose(1, 2).reshape(N, a.h * a.dk))
        c = blk.cross_attn
        q = c.q(blk.cross_norm(x)).view(B, nb, c.h, c.dk).transpose(1, 2)  # [B, H, nb, dk]
        o = attend(q, cross.keys[i], cross.values[i], cross.mask, 0.0, model.kernel)
        x = x + c.o(o.transpose(1, 2).reshape(N, c.h * c.dk))
        x = blk.feed_forward(x)
    return model.output(model.dec_norm(x)), PointerKV(keys, values, ancestors)


def beam_loop(step, trie: SIDTrie, B: int, dev: torch.device, beam_size: int, topk: int) -> BeamOutput:
    """The search loop of both frozen searches (this one and ``decode_appended``'s), as it was: ``step(tokens, cache)``
    returns the next-token logits and the new cache; every level keeps the best ``beam_size`` trie-valid prefixes."""
    vocab, K = trie.vocab, trie.vocab.codebook_size
    tokens = torch.full((B,), PAD, dtype=torch.long, device=dev)
    node = torch.zeros(B, dtype=torch.long, device=dev)
    score = torch.zeros(B, device=dev)
    cache, nb = None, 1
    for j in range(vocab.n_tokens):
        logits, new_cache = step(tokens, cache)
        off = vocab.level_offset(j)
        logp = torch.log_softmax(logits.float(), dim=-1)[:, off:off + K]  # [B*nb, K]
        child = trie.next[j][node.clamp(min=0)].long()  # [B*nb, K]; -1 = not in the trie
        cand = (score[:, None] + logp).masked_fill_(child < 0, NEG_INF).view(B, nb * K)
        child = child.view(B, nb * K)
        if nb * K < beam_size:
            cand = F.pad(cand, (0, beam_size - nb * K), value=NEG_INF)
            child = F.pad(child, (0, beam_size - nb * K), value=-1)
        score, pick = cand.topk(beam_size, dim=1)
        node = child.gather(1, pick)
        parent = (pick // K).clamp_(max=nb - 1)
        tokens = (pick % K + off).flatten()
        node = node.masked_fill_(score == NEG_INF, -1).flatten()
        score = score.flatten()
        if j + 1 < vocab.n_tokens:
            cache = new_cache.select(parent)
        nb = beam_size
    score, node = score.view(B, beam_size)[:, :topk], node.view(B, beam_size)[:, :topk]
    return BeamOutput(node.clone(), score.clone())


def constrained_beam_search(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *,
                            beam_size: int = 20, topk: int = 10, input_extra: Tensor | None = None,
                            token_table: Tensor | None = None) -> BeamOutput:
    with eval_mode(model):
        with torch.inference_mode():
            enc = model.encode(input_ids, attention_mask, input_extra=input_extra, token_table=token_table)
            cross = cross_kv(model, enc, attention_mask)
            step = lambda tokens, cache: decode_step(model, tokens, cross, cache, token_table)  # noqa: E731
            return beam_loop(step, trie, input_ids.shape[0], input_ids.device, beam_size, topk)


def recommend(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *, beam_size: int,
              topk: int, batch_size: int = 64) -> Tensor:
    """``diger_lib.decoding.recommend`` as it was: longest histories first, chunks of ``batch_size`` users."""
    chunks, end = length_chunks(attention_mask, batch_size)  # the library's chunking, unchanged since
    out = torch.full((input_ids.shape[0], topk), -1, dtype=torch.long, device=input_ids.device)
    for idx in chunks:
        width = max(int(end[idx].max()), 1)
        out[idx] = constrained_beam_search(model, input_ids[idx, :width], attention_mask[idx, :width], trie,
                                           beam_size=beam_size, topk=topk).items
    return out
