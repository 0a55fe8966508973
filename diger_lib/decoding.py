"""Trie-constrained beam search over valid semantic IDs (section 3: the generated SID maps back to an item).

Generation follows Eq. 3 token by token; the trie of the catalogue's IDs lets only prefixes of real items
survive, so every returned ID is an item. Two implementations with the same semantics:

* :func:`constrained_beam_search`: batched over users and beams, one encoder pass, KV-cached decoder, trie
  as per-level transition tables applied with tensor ops (no Python per beam). :func:`recommend` runs it
  over chunks of users, on CPU several chunks at once (one thread each).
* :func:`reference_beam_search`: per user, a Python dict trie and the full decoder recomputed each step.
  Tests check the fast one against it, and against exhaustive scoring (:func:`score_all_items`).

Beam search: step 0 keeps the ``beam_size`` best first tokens; each later step keeps the ``beam_size`` best
(beam, child) pairs by summed log-prob (log_softmax over the full vocabulary, then the trie mask); the
``topk`` best finished beams are the recommendation.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .progress import progress_bar
from .recommender import GenRecModel
from .runtime import autocast, eval_mode, torch_threads
from .vocab import PAD, SIDVocab

NEG_INF = float("-inf")


class BeamOutput(NamedTuple):
    items: Tensor  # [B, topk] item ids, best first; -1 where fewer than topk valid items
    scores: Tensor  # [B, topk] summed log-probs (Eq. 3 in log space); -inf where items is -1


class SIDTrie:
    """Prefix tree of the catalogue's semantic IDs, stored as one transition table per level.

    ``next[j]`` is an int32 tensor [n_nodes_j, K]: the child node reached from a level-j node by code c, or -1
    if no item continues that way; at the last level the entry is the item id. Level 0 has one node (root).
    ``penalty[j]`` is the same table as a float mask, 0 where a child exists and -inf where not: the search adds
    it to the scores (one pass) and looks children up only for the beams it keeps.
    """

    def __init__(self, codes: Tensor, vocab: SIDVocab):
        if codes.dim() != 2 or codes.shape[1] != vocab.n_tokens:
            raise ValueError(f"codes must be [N, {vocab.n_tokens}], got {tuple(codes.shape)}")
        codes = codes.long()
        K = vocab.codebook_size
        if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= K):
            raise ValueError(f"codes must lie in [0, {K}), got range [{int(codes.min())}, {int(codes.max())}]")
        uniq, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
        if len(uniq) < len(codes):
            dup_groups = (counts > 1).nonzero().flatten()
            examples = [torch.nonzero(inverse == g).flatten().tolist() for g in dup_groups[:5].tolist()]
            raise ValueError(f"semantic IDs are not unique: {len(codes) - len(uniq)} items share an ID with another "
                             f"item, e.g. item ids {examples}; a trie cannot tell them apart (append a conflict code)")
        self.vocab, self.codes = vocab, codes
        self.next: list[Tensor] = []
        node = torch.zeros(len(codes), dtype=torch.long, device=codes.device)  # every item starts at the root
        n_nodes = 1
        for j in range(vocab.n_tokens):
            if j + 1 < vocab.n_tokens:
                _, child = torch.unique(codes[:, : j + 1], dim=0, return_inverse=True)
                n_child = int(child.max()) + 1 if len(codes) else 0
            else:
                child, n_child = torch.arange(len(codes), device=codes.device), len(codes)
            table = torch.full((n_nodes, K), -1, dtype=torch.int32, device=codes.device)
            table[node, codes[:, j]] = child.to(torch.int32)
            self.next.append(table)
            node, n_nodes = child, n_child
        self.penalty = [torch.zeros(t.shape, device=codes.device).masked_fill_(t < 0, NEG_INF) for t in self.next]

    @property
    def n_items(self) -> int:
        return len(self.codes)

    def to(self, device: torch.device | str) -> "SIDTrie":
        return SIDTrie(self.codes.to(device), self.vocab)

    def as_dict(self) -> dict:
        """Nested dict {code: {code: ... {code: item id}}} (the readable form, for the reference search)."""
        root: dict = {}
        for item, row in enumerate(self.codes.tolist()):
            d = root
            for c in row[:-1]:
                d = d.setdefault(c, {})
            d[row[-1]] = item
        return root


def constrained_beam_search(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *,
                            beam_size: int = 20, topk: int = 10, input_extra: Tensor | None = None,
                            token_table: Tensor | None = None) -> BeamOutput:
    """Top-``topk`` items per user by beam search restricted to the trie (fast path, batched, KV cache)."""
    if topk > beam_size:
        raise ValueError(f"topk={topk} must be <= beam_size={beam_size}")
    if trie.next[0].device != input_ids.device:
        raise ValueError(f"trie lives on {trie.next[0].device}, inputs on {input_ids.device}; use trie.to(device)")
    vocab, K = trie.vocab, trie.vocab.codebook_size
    with eval_mode(model):
        with torch.inference_mode():
            enc = model.encode(input_ids, attention_mask, input_extra=input_extra, token_table=token_table)
            cross = model.cross_kv(enc, attention_mask)
            B, dev = input_ids.shape[0], input_ids.device
            tokens = torch.full((B,), PAD, dtype=torch.long, device=dev)
            node = torch.zeros(B, dtype=torch.long, device=dev)
            score = torch.zeros(B, device=dev)
            cache, nb = None, 1
            rows = 1 + (vocab.n_tokens - 1) * beam_size  # cached hypotheses per user over the whole search
            for j in range(vocab.n_tokens):
                out = model.decode_step(tokens, cross, cache, capacity=rows, token_table=token_table)
                off = vocab.level_offset(j)  # level j owns tokens [off, off + K)
                logp = torch.log_softmax(out.logits.float(), dim=-1)[:, off:off + K]  # [B*nb, K]
                node = node.clamp(min=0)  # dead beams (-1) score -inf whatever node they read
                cand = (logp + score[:, None]).add_(trie.penalty[j][node]).view(B, nb * K)  # -inf: not in the trie
                if nb * K < beam_size:  # tiny catalogues: keep beam_size slots, the extra ones invalid
                    cand = F.pad(cand, (0, beam_size - nb * K), value=NEG_INF)
                score, pick = cand.topk(beam_size, dim=1)  # [B, beam] best first
                parent = (pick // K).clamp_(max=nb - 1)  # [B, beam] index among the user's nb hypotheses
                code = pick % K
                node = trie.next[j][node.view(B, nb).gather(1, parent), code].long()
                tokens = (code + off).flatten()
                node = node.masked_fill_(score == NEG_INF, -1).flatten()
                score = score.flatten()
                if j + 1 < vocab.n_tokens:
                    cache = out.cache.select(parent)
                nb = beam_size
            score, node = score.view(B, beam_size)[:, :topk], node.view(B, beam_size)[:, :topk]
        # cloned outside inference mode: callers get ordinary tensors they may modify in place
        return BeamOutput(node.clone(), score.clone())


def reference_beam_search(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *,
                          beam_size: int = 20, topk: int = 10, input_extra: Tensor | None = None,
                          token_table: Tensor | None = None) -> BeamOutput:
    """The readable version: per user, Python dict trie, decoder recomputed from scratch every step."""
    vocab, K = trie.vocab, trie.vocab.codebook_size
    tree = trie.as_dict()
    items, scores = [], []
    with eval_mode(model):
        with torch.no_grad():
            for b in range(input_ids.shape[0]):
                extra = None if input_extra is None else input_extra[b:b + 1]
                enc = model.encode(input_ids[b:b + 1], attention_mask[b:b + 1], input_extra=extra,
                                   token_table=token_table)
                beams: list[tuple[tuple[int, ...], float, dict | int]] = [((), 0.0, tree)]
                for j in range(vocab.n_tokens):
                    dec_in = torch.tensor([[PAD] + [vocab.token(i, c) for i, c in enumerate(p)] for p, _, _ in beams],
                                          device=input_ids.device)
                    n = len(beams)
                    logits = model.decode(dec_in, enc.expand(n, -1, -1), attention_mask[b:b + 1].expand(n, -1),
                                          token_table=token_table)[:, -1]
                    logp = torch.log_softmax(logits.float(), dim=-1).tolist()
                    cand = [(p + (c,), s + logp[i][vocab.token(j, c)], sub[c])
                            for i, (p, s, sub) in enumerate(beams) for c in sub]
                    cand.sort(key=lambda x: -x[1])
                    beams = cand[:beam_size]
                top = beams[:topk]
                items.append([it for _, _, it in top] + [-1] * (topk - len(top)))
                scores.append([s for _, s, _ in top] + [NEG_INF] * (topk - len(top)))
    dev = input_ids.device
    return BeamOutput(torch.tensor(items, dtype=torch.long, device=dev).view(-1, topk),
                      torch.tensor(scores, device=dev).view(-1, topk))


def score_all_items(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, codes: Tensor, *,
                    input_extra: Tensor | None = None, token_table: Tensor | None = None) -> Tensor:
    """log p(z_v | x_u) of every item's full ID (Eq. 3, teacher forcing): [B, N]. Exhaustive; for tests."""
    vocab = model.vocab
    labels = vocab.codes_to_tokens(codes.long())  # [N, n_tokens]
    with eval_mode(model):
        with torch.no_grad():
            enc = model.encode(input_ids, attention_mask, input_extra=input_extra, token_table=token_table)
            dec_in = model.shift_right(labels)
            out = []
            for b in range(input_ids.shape[0]):
                N = len(labels)
                logits = model.decode(dec_in, enc[b:b + 1].expand(N, -1, -1), attention_mask[b:b + 1].expand(N, -1),
                                      token_table=token_table)
                logp = torch.log_softmax(logits.float(), dim=-1).gather(2, labels[..., None])[..., 0]
                out.append(logp.sum(1))
    return torch.stack(out)


def length_chunks(attention_mask: Tensor, batch_size: int) -> tuple[list[Tensor], Tensor]:
    """Users in chunks of ``batch_size``, longest history first, and each user's history end (last token + 1).

    Chunks of similar length carry little padding, and the slowest come first so a progress bar's ETA is an
    upper bound. A chunk's inputs can be trimmed to its longest end.
    """
    U, L = attention_mask.shape
    pos = torch.arange(1, L + 1, device=attention_mask.device)
    end = (attention_mask.bool() * pos).amax(1) if L else torch.zeros(U, dtype=torch.long, device=pos.device)
    return list(torch.split(torch.argsort(end, descending=True, stable=True), batch_size)), end


def recommend(model: GenRecModel, input_ids: Tensor, attention_mask: Tensor, trie: SIDTrie, *, beam_size: int,
              topk: int, batch_size: int = 512, progress: bool = True, input_extra: Tensor | None = None,
              token_table: Tensor | None = None, workers: int = 0, amp_dtype: torch.dtype | None = None) -> Tensor:
    """Top-``topk`` item ids [U, topk] for every user, in chunks of ``batch_size`` users.

    Users are processed longest history first (:func:`length_chunks`); results come back in input order.
    On CPU, ``workers`` chunks (0 = torch's thread count) run at once, each on one thread: a 64-user chunk's
    small matmuls and element-wise ops gain little from being split over the cores, independent chunks keep
    every core busy. Each chunk is searched the same way whatever ``workers`` is. ``amp_dtype``
    (``runtime.autocast_dtype``): the model calls run under that autocast; beam scores are summed in fp32.
    """
    U, dev = input_ids.shape[0], input_ids.device
    chunks, end = length_chunks(attention_mask, batch_size)
    if dev.type != "cpu":
        workers = 1
    workers = min(workers or torch.get_num_threads(), len(chunks)) or 1

    def search(idx: Tensor) -> Tensor:
        width = max(int(end[idx].max()), 1)
        extra = None if input_extra is None else input_extra[idx, :width]
        return constrained_beam_search(model, input_ids[idx, :width], attention_mask[idx, :width], trie,
                                       beam_size=beam_size, topk=topk, input_extra=extra, token_table=token_table).items

    out = torch.full((U, topk), -1, dtype=torch.long, device=dev)
    bar = progress_bar(total=U, desc="recommend", unit="user", disable=not progress)
    # eval mode is set here once: chunks searched concurrently must not switch it back under each other. Autocast is
    # per thread, so it is entered here only because it never applies on CPU, the one device with worker threads
    with eval_mode(model), autocast(amp_dtype, dev), bar, contextlib.ExitStack() as stack:
        results = map(search, chunks)
        if workers > 1:
            stack.enter_context(torch_threads(1))
            results = stack.enter_context(ThreadPoolExecutor(workers)).map(search, chunks)
        for idx, items in zip(chunks, results):
            out[idx] = items
            bar.update(len(idx))
    return out
