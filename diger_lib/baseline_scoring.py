"""Full-catalogue ranking of cornac models with our metric code (the baselines' side of every row's protocol).

Every item is scored for every evaluated user, the top k taken with ties to the lower item id, then
``metrics.ranking_metrics`` and ``metrics.target_ranks``; items already in the history are not removed. The batched
scorers equal cornac's one-user ``score`` (``reference_scorer``; tests check each model).
"""
from __future__ import annotations

import inspect
import io
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from . import metrics as M
from .atomic import atomic_open
from .data import Samples


ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (users, history [B, L], length) -> [B, n_items]


class Evaluation(NamedTuple):
    metrics: dict[str, float]  # R@5, R@10, N@5, N@10
    ranks: np.ndarray  # [U] 0-based rank of the target in the top k, -1 = not there (test_ranks.txt.gz)
    top: np.ndarray  # [U, topk] recommended items, best first


def topk_items(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best items per row, ties to the lower item id: the order of a stable sort on the negated scores, without
    sorting the catalogue (a partition finds each row's k-th score; only the items at or above it are sorted)."""
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    out = np.empty((len(scores), k), dtype=np.int64)
    for r, row in enumerate(scores):
        cand = np.flatnonzero(row >= kth[r])
        out[r] = cand[np.lexsort((cand, -row[cand]))[:k]]  # by score, descending, then by item id
    return out


def evaluate(score_fn: ScoreFn, samples: Samples, topk: int = 10, batch_size: int = 512,
             max_users: int = 0) -> Evaluation:
    """Score the full catalogue for each user of ``samples`` (or its first ``max_users``), rank, and measure."""
    n = len(samples) if not max_users else min(max_users, len(samples))
    tops = []
    for s in range(0, n, batch_size):
        idx = np.arange(s, min(s + batch_size, n))
        scores = np.asarray(score_fn(samples.user[idx], samples.history[idx], samples.length[idx]))
        tops.append(topk_items(scores, topk))
    top, target = np.concatenate(tops), samples.target[:n]
    return Evaluation(M.ranking_metrics(top, target), M.target_ranks(top, target), top)


def evaluate_resumable(score_fn: ScoreFn, samples: Samples, topk: int, partial: Path | str, tag: str,
                       chunk: int = 1024, max_users: int = 0, batch_size: int = 512) -> tuple[Evaluation, float]:
    """``evaluate`` in chunks of ``chunk`` users, each chunk's top k written to ``partial`` (atomically) as it lands,
    so a run stopped while decoding (cornac's one-user beam search: ~25 min for Beauty's test users) resumes at its
    last chunk. ``tag`` names what is scored (the model's digest): a partial file with another tag, user count or k is
    ignored and overwritten. Returns the evaluation (equal to ``evaluate``'s) and the decoding seconds, summed over
    the interrupted calls (a chunk cut short is not counted)."""
    partial = Path(partial)
    n = len(samples) if not max_users else min(max_users, len(samples))
    tops, seconds = np.zeros((0, topk), dtype=np.int64), 0.0
    if partial.is_file():
        with np.load(partial, allow_pickle=False) as z:
            if str(z["tag"]) == tag and int(z["n"]) == n and int(z["topk"]) == topk:
                tops, seconds = z["top"], float(z["seconds"])
    while len(tops) < n:
        t, s = time.perf_counter(), len(tops)
        part = Samples(*[a[s:min(s + chunk, n)] for a in samples])
        ev = evaluate(score_fn, part, topk, batch_size)
        tops = ev.top if s == 0 else np.concatenate([tops, ev.top])
        seconds += time.perf_counter() - t
        buf = io.BytesIO()
        np.savez(buf, tag=np.array(tag), n=n, topk=topk, top=tops, seconds=seconds)
        with atomic_open(partial, "wb") as fh:
            fh.write(buf.getvalue())
    target = samples.target[:n]
    return Evaluation(M.ranking_metrics(tops, target), M.target_ranks(tops, target), tops), seconds


def left_padded(history: np.ndarray, length: np.ndarray, width: int, pad: int) -> np.ndarray:
    """Our right-padded histories (-1) -> cornac's left-padded rows of ``width`` ids (``pad`` in the gaps)."""
    out = np.full((len(length), width), pad, dtype=np.int64)
    for r, (h, n) in enumerate(zip(history, length)):
        items = h[:n][-width:]
        out[r, width - len(items):] = items
    return out


def _user_index(model: Any, users: np.ndarray) -> np.ndarray:
    return np.array([model.uid_map[int(u)] for u in users], dtype=np.int64)


def reference_scorer(model: Any) -> ScoreFn:
    """cornac's own per-user ``score`` (the slow reference the fast paths are tested against)."""
    sequential = "history_items" in inspect.signature(model.score).parameters

    def score(users, history, length):
        idx = _user_index(model, users)
        if sequential:
            return np.stack([model.score(int(u), [int(i) for i in h[:n]]) for u, h, n in zip(idx, history, length)])
        return np.stack([model.score(int(u)) for u in idx])
    return score


def scorer(model: Any) -> ScoreFn:
    """A batched scorer equal to cornac's ``score`` (tests check it against ``reference_scorer``)."""
    import torch
    from cornac.models import BPR, LightGCN, SASRec, TransformerRec

    if isinstance(model, BPR):
        return lambda users, history, length: (model.u_factors[_user_index(model, users)] @ model.i_factors.T
                                               + model.i_biases[None, :])
    if isinstance(model, LightGCN):  # U and V as numpy arrays (cornac's score: V . U[u])
        return lambda users, history, length: model.U[_user_index(model, users)] @ model.V.T
    if isinstance(model, SASRec):
        net = model.model

        @torch.no_grad()
        def score(users, history, length):
            net.eval()
            seqs = torch.from_numpy(left_padded(history, length, model.max_len, model.pad_idx))
            scores = net._encode(seqs) @ net.item_emb.weight[:model.total_items].T
            if hasattr(net, "item_biases"):
                scores = scores + net.item_biases.weight[:model.total_items].T
            return scores.numpy()
        return score
    if isinstance(model, TransformerRec):
        return _transformer_scorer(model)
    return reference_scorer(model)


def _transformer_scorer(model: Any) -> ScoreFn:
    """TransformerRec (BERT4Rec): its objective builds each user's input (history + mask token, left-padded) and the
    model's ``predict`` scores a batch of them at once (cornac's ``score`` calls it one user at a time)."""
    import torch

    def score(users, history, length):
        inputs = [model.objective_.prepare_score_input([int(i) for i in h[:n]], model.max_len, model.pad_idx)
                  for h, n in zip(history, length)]
        positions = {pos for _, pos in inputs}
        if len(positions) != 1:  # an objective that reads different positions: one user at a time
            return reference_scorer(model)(users, history, length)
        model.model.eval()
        seqs = torch.tensor([seq for seq, _ in inputs], dtype=torch.long)
        return np.atleast_2d(model.model.predict(None, seqs, positions.pop()))
    return score
