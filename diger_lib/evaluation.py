"""Validation and test: trie-constrained beam search over valid IDs and Recall/NDCG@5/10 (section 5).

Shared by the training loop (``training.py``) and the notebooks' single-user views (``pipeline.recommend_for``).
"""
from __future__ import annotations

import numpy as np
import torch

from . import metrics as M
from .config import TrainConfig
from .data import Samples, make_batch
from .decoding import SIDTrie, recommend
from .recommender import GenRecModel
from .runtime import autocast_dtype
from .vocab import SIDVocab


@torch.no_grad()
def evaluate(model: GenRecModel, samples: Samples, item_ids: torch.Tensor, vocab: SIDVocab, cfg: TrainConfig, *,
             token_table: torch.Tensor | None = None, max_users: int = 0, progress: bool = True,
             ranks: list | None = None) -> dict[str, float]:
    """Recall/NDCG@5/10 over the full catalogue: trie-constrained beam search over valid IDs (section 5).
    ``ranks``, if given, receives each evaluated user's 0-based target rank (-1 = not in the top k)."""
    idx = eval_users(len(samples), max_users)
    top = top_items(model, samples, idx, item_ids, vocab, cfg, token_table=token_table, progress=progress)
    if ranks is not None:
        ranks.extend(M.target_ranks(top.numpy(), samples.target[idx]).tolist())
    return M.ranking_metrics(top.numpy(), samples.target[idx], ks=(5, 10))


def eval_users(n: int, max_users: int = 0) -> np.ndarray:
    """The users a validation pass ranks: all ``n``, or a fixed subsample of ``max_users`` (same users every epoch)."""
    idx = np.arange(n)
    if max_users and max_users < n:
        idx = np.sort(np.random.default_rng(0).choice(idx, size=max_users, replace=False))
    return idx


def top_items(model: GenRecModel, samples: Samples, idx: np.ndarray, item_ids: torch.Tensor, vocab: SIDVocab,
              cfg: TrainConfig, *, token_table: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """The top-``cfg.topk`` items [len(idx), topk] for samples ``idx`` (-1 = fewer valid items than topk)."""
    item_tokens = vocab.codes_to_tokens(item_ids)
    batch = make_batch(samples, idx, item_tokens.cpu())
    dev = next(model.parameters()).device
    uniq, inverse = torch.unique(item_ids, dim=0, return_inverse=True)
    shared = len(uniq) < len(item_ids)
    trie = SIDTrie((uniq if shared else item_ids).to(dev), vocab)
    top = recommend(model, batch.input_ids.to(dev), batch.attention_mask.to(dev), trie, beam_size=cfg.beam_size,
                    topk=cfg.topk, batch_size=cfg.eval_batch_size, progress=progress, token_table=token_table,
                    amp_dtype=autocast_dtype(cfg.amp, dev)).cpu()
    return expand_shared_ids(top, inverse.cpu(), cfg.topk) if shared else top


def expand_shared_ids(top: torch.Tensor, inverse: torch.Tensor, topk: int) -> torch.Tensor:
    """Map ranked unique IDs [U, k] back to items when several items share an ID (section 3: a retrieval
    step over items sharing the same SID): each ID contributes all its items, lowest item id first."""
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=int(inverse.max()) + 1)
    starts = torch.cumsum(counts, 0) - counts
    members = [order[starts[q]:starts[q] + counts[q]].tolist() for q in range(len(counts))]
    out = torch.full((len(top), topk), -1, dtype=torch.long)
    for u, row in enumerate(top.tolist()):
        items = [i for q in row if q >= 0 for i in members[q]][:topk]
        out[u, :len(items)] = torch.tensor(items, dtype=torch.long)
    return out
