"""Evaluation metrics: ranking quality, code usage and semantic-ID dynamics.

- ``ranking_metrics``: Recall@k and NDCG@k under leave-one-out with a single held-out item per user
  (section 5 "Evaluation": ranked against the full item set).
- ``most_popular_topk`` / ``markov1_topk``: a popularity floor and a first-order transition floor (not in the paper).
- ``code_usage`` / ``collision_rate``: codebook utilisation per level; the effective number of codes
  Eff(q) = exp(H(q)) of appendix A (Theorem A.3: Eff(q) <= K, equality iff q is uniform) and the share of
  items whose full semantic ID collides with another item's.
- ``sid_drift`` / ``agreement``: SID dynamics of section 8 (Figure 6): incremental drift (vs. the previous
  epoch), cumulative drift (vs. the initial IDs) and train-inference agreement (sampled vs. argmax IDs).

Every function accepts numpy arrays or torch tensors (any device) and returns numpy values / floats.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Sequence

import numpy as np

try:  # torch is a dependency of the package, but the metrics themselves are pure numpy
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _int_array(x: Any, name: str, ndim: int) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(arr.shape)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _code_table(x: Any, name: str) -> np.ndarray:
    arr = _int_array(x, name, 2)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(arr.shape)})")
    return arr


# ----------------------------------------------------------------------------------------------
# Ranking
# ----------------------------------------------------------------------------------------------
def ranking_metrics(topk_items: Any, targets: Any, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """Recall@k and NDCG@k averaged over users, one relevant item per user.

    ``topk_items`` [U, k_max] holds each user's ranked recommendations (best first; padding such as -1
    is allowed and never matches), ``targets`` [U] the held-out item. With a single relevant item,
    Recall@k = 1[rank < k] and NDCG@k = 1 / log2(rank + 2) for the 0-based rank (IDCG = 1).
    Returns {"R@5": .., "R@10": .., "N@5": .., "N@10": ..} for ``ks=(5, 10)``.
    """
    top = _int_array(topk_items, "topk_items", 2)
    tgt = _int_array(targets, "targets", 1)
    if top.shape[0] != tgt.shape[0]:
        raise ValueError(f"topk_items has {top.shape[0]} users but targets has {tgt.shape[0]}")
    if top.shape[0] == 0:
        raise ValueError("ranking_metrics needs at least one user, got 0")
    ks = tuple(int(k) for k in ks)
    for k in ks:
        if not 1 <= k <= top.shape[1]:
            raise ValueError(f"k={k} must be in [1, {top.shape[1]}] (topk_items has {top.shape[1]} columns)")

    hits = top == tgt[:, None]  # [U, k_max]
    found = hits.any(axis=1)
    rank = np.where(found, hits.argmax(axis=1), top.shape[1])  # first hit; k_max = "not retrieved"
    gain = 1.0 / np.log2(rank + 2.0)

    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = float((rank < k).mean())
    for k in ks:
        out[f"N@{k}"] = float(np.where(rank < k, gain, 0.0).mean())
    return out


def most_popular_topk(train_sequences: Iterable[Iterable[int]], n_items: int, k: int) -> np.ndarray:
    """The ``k`` items with the most training interactions, ties broken by the lower item id.

    ``train_sequences`` is an iterable of per-user item-id sequences (pass ``dict.values()``, not a
    dict: iterating a dict yields its keys). Returns int64 [k].
    """
    if isinstance(train_sequences, Mapping):
        raise TypeError("most_popular_topk got a mapping; pass its .values() (the item sequences)")
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must be in [1, n_items={n_items}]")
    chunks = [np.asarray(list(seq), dtype=np.int64).reshape(-1) for seq in train_sequences]
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        bad = ids[(ids < 0) | (ids >= n_items)][0]
        raise ValueError(f"item id {bad} outside [0, n_items={n_items})")
    counts = np.bincount(ids, minlength=n_items)
    # stable sort on -count keeps ascending id order among equal counts
    return np.argsort(-counts, kind="stable")[:k].astype(np.int64)


def markov1_topk(train_sequences: Iterable[Iterable[int]], last_items: Any, n_items: int, k: int) -> np.ndarray:
    """A first-order Markov floor: for each user, the items that followed their last item ``last_items`` [U] in the
    training sequences, most often first (ties: more popular, then lower id), then the most popular of the rest.

    Only consecutive pairs inside each training sequence count (a user's validation and test items never do), the
    same data ``most_popular_topk`` counts. Returns int64 [U, k]; items of the history are not removed (as in every
    row here).
    """
    if isinstance(train_sequences, Mapping):
        raise TypeError("markov1_topk got a mapping; pass its .values() (the item sequences)")
    seqs = [np.asarray(list(seq), dtype=np.int64).reshape(-1) for seq in train_sequences]
    last = _int_array(last_items, "last_items", 1)
    pop_order = most_popular_topk(seqs, n_items, n_items)  # every item by popularity; checks the ids are in range
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must be in [1, n_items={n_items}]")
    if last.size and (last.min() < 0 or last.max() >= n_items):
        raise ValueError(f"last item {last[(last < 0) | (last >= n_items)][0]} outside [0, n_items={n_items})")
    popularity_rank = np.empty(n_items, dtype=np.int64)
    popularity_rank[pop_order] = np.arange(n_items)
    src = np.concatenate([s[:-1] for s in seqs] + [np.zeros(0, np.int64)])
    dst = np.concatenate([s[1:] for s in seqs] + [np.zeros(0, np.int64)])
    pairs, counts = np.unique(src * n_items + dst, return_counts=True)
    a, b = pairs // n_items, pairs % n_items
    # every source's successors, best first: by count (descending), then popularity rank, i.e. (more popular, lower id)
    order = np.lexsort((popularity_rank[b], -counts, a))
    a, b = a[order], b[order]
    starts = np.searchsorted(a, np.arange(n_items + 1))
    out = np.empty((len(last), k), dtype=np.int64)
    cache: dict[int, np.ndarray] = {}
    for u, item in enumerate(last.tolist()):
        row = cache.get(item)
        if row is None:
            succ = b[starts[item]:starts[item + 1]][:k]
            fill = pop_order[:k + len(succ)]
            row = np.concatenate([succ, fill[~np.isin(fill, succ)]])[:k]
            cache[item] = row
        out[u] = row
    return out


def last_items(history: Any, length: Any) -> np.ndarray:
    """Each user's most recent item of a right-padded history [U, L] with ``length`` [U] items."""
    h, n = _int_array(history, "history", 2), _int_array(length, "length", 1)
    if h.shape[0] != n.shape[0]:
        raise ValueError(f"history has {h.shape[0]} users but length has {n.shape[0]}")
    if n.size and (n.min() < 1 or n.max() > h.shape[1]):
        raise ValueError(f"length must be in [1, {h.shape[1]}] (every user needs a history)")
    return h[np.arange(len(n)), n - 1]


# ----------------------------------------------------------------------------------------------
# Codebook usage
# ----------------------------------------------------------------------------------------------
class CodeUsage(NamedTuple):
    counts: np.ndarray  # [m, K] items assigned to each code, per level
    coverage: np.ndarray  # [m] fraction of the K codes used at least once
    entropy: np.ndarray  # [m] H(q) in nats of the usage distribution q = counts / N
    effective: np.ndarray  # [m] Eff(q) = exp(H(q)), appendix A; in [1, K]


def code_usage(codes: Any, K: int) -> CodeUsage:
    """Per-level usage of a codebook of size ``K`` by the semantic IDs ``codes`` [N, m]."""
    c = _code_table(codes, "codes")
    if K < 1:
        raise ValueError(f"K={K} must be >= 1")
    if c.min() < 0 or c.max() >= K:
        bad = c[(c < 0) | (c >= K)][0]
        raise ValueError(f"code {bad} outside [0, K={K})")
    n, m = c.shape
    offsets = np.arange(m, dtype=np.int64) * K  # level j owns bins [j*K, (j+1)*K)
    counts = np.bincount((c + offsets).ravel(), minlength=m * K).reshape(m, K)
    q = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(q > 0, q * np.log(q), 0.0)  # 0 log 0 = 0
    entropy = -plogp.sum(axis=1)  # H(q) = -sum_i q_i log q_i (appendix A)
    return CodeUsage(
        counts=counts,
        coverage=(counts > 0).mean(axis=1),
        entropy=entropy,
        effective=np.exp(entropy),  # Eff(q) = exp(H(q))
    )


def collision_rate(codes: Any) -> float:
    """1 - (#distinct full IDs) / (#items): share of items that would need a conflict code."""
    c = _code_table(codes, "codes")
    n_unique = np.unique(c, axis=0).shape[0]
    return 1.0 - n_unique / c.shape[0]


# ----------------------------------------------------------------------------------------------
# Semantic-ID dynamics (section 8, Figure 6)
# ----------------------------------------------------------------------------------------------
def _paired(a: Any, b: Any, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _code_table(a, name_a), _code_table(b, name_b)
    if x.shape != y.shape:
        raise ValueError(f"{name_a} {tuple(x.shape)} and {name_b} {tuple(y.shape)} must have the same shape")
    return x, y


def sid_drift(prev: Any, cur: Any) -> float:
    """Fraction of items whose full semantic ID differs between ``prev`` and ``cur`` [N, m].

    Incremental drift: ``prev`` = previous epoch's IDs; cumulative drift: ``prev`` = initial IDs.
    """
    x, y = _paired(prev, cur, "prev", "cur")
    return float((x != y).any(axis=1).mean())


def agreement(sampled: Any, det: Any) -> float:
    """Fraction of items whose whole training-time (sampled) ID equals the argmax (inference) ID."""
    x, y = _paired(sampled, det, "sampled", "det")
    return float((x == y).all(axis=1).mean())


def sid_drift_per_level(prev: Any, cur: Any) -> list[float]:
    """Per level j, the fraction of items whose level-j code differs between ``prev`` and ``cur`` [N, m]."""
    x, y = _paired(prev, cur, "prev", "cur")
    return [float(v) for v in (x != y).mean(axis=0)]


# ----------------------------------------------------------------------------------------------
# Per-user ranks and the paired bootstrap (issue "DIGER that reproduces its paper")
# ----------------------------------------------------------------------------------------------
def target_ranks(topk_items: Any, targets: Any) -> np.ndarray:
    """0-based rank of each user's target in its top-k list, -1 when it is not there. [U] int."""
    top = _int_array(topk_items, "topk_items", 2)
    tgt = _int_array(targets, "targets", 1)
    if top.shape[0] != tgt.shape[0]:
        raise ValueError(f"topk_items has {top.shape[0]} users but targets has {tgt.shape[0]}")
    hits = top == tgt[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int64)


def per_user_metric(ranks: Any, metric: str) -> np.ndarray:
    """Per-user Recall@k ("R@k") or NDCG@k ("N@k") from target ranks (-1 = not retrieved)."""
    r = np.asarray(ranks, dtype=np.int64)
    if len(metric) < 3 or metric[:2] not in ("R@", "N@") or not metric[2:].isdigit():
        raise ValueError(f"metric={metric!r} must look like 'R@10' or 'N@10'")
    k = int(metric[2:])
    hit = (r >= 0) & (r < k)
    if metric[0] == "R":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)


class HitOverlap(NamedTuple):
    """Which test users two runs hit at k (shares of all users), and A's hit rate on the users B hits and on the rest."""
    a: float
    b: float
    both: float
    union: float
    a_on_b_hits: float  # A's Recall@k among the users B hits (nan if B hits nobody)
    a_on_b_misses: float  # ... among the users B misses


def hit_overlap(ranks_a: Any, ranks_b: Any, k: int = 10) -> HitOverlap:
    """How two runs' hits at k overlap over the same test users (e.g. a recommender against the Markov-1 floor: does
    it get right the users a transition count gets right?). Ranks as ``target_ranks`` gives them (-1 = missed)."""
    ra, rb = np.asarray(ranks_a, dtype=np.int64), np.asarray(ranks_b, dtype=np.int64)
    if ra.shape != rb.shape or ra.ndim != 1:
        raise ValueError(f"ranks of shapes {ra.shape} and {rb.shape}: the runs must rank the same test users")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    ha, hb = (ra >= 0) & (ra < k), (rb >= 0) & (rb < k)
    on = float(ha[hb].mean()) if hb.any() else math.nan
    off = float(ha[~hb].mean()) if (~hb).any() else math.nan
    return HitOverlap(float(ha.mean()), float(hb.mean()), float((ha & hb).mean()), float((ha | hb).mean()), on, off)


def paired_bootstrap(ranks_a: Any, ranks_b: Any, metric: str = "N@10", n_boot: int = 10000,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of metric(a) - metric(b) over the same users and its bootstrap interval: users are resampled
    with replacement ``n_boot`` times (paired: both runs keep the same user). ``p_le_0`` is the share of
    resamples whose difference is <= 0 (a one-sided bootstrap p-value for "a is better than b")."""
    a, b = per_user_metric(ranks_a, metric), per_user_metric(ranks_b, metric)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs the same non-empty user set, got {a.shape} and {b.shape}")
    return {**_bootstrap_mean(a - b, n_boot, seed, level), "a": float(a.mean()), "b": float(b.mean())}


def paired_bootstrap_seeds(ranks_a: Sequence[Any], ranks_b: Sequence[Any], metric: str = "N@10", n_boot: int = 10000,
                           seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Method A (several seeds) against method B (several seeds) on the same test users: each user's metric is first
    averaged over the seeds of each method, then users are resampled as in ``paired_bootstrap``. The interval covers
    the test-user sampling; the seeds' spread is reported beside it (``a_seeds``, ``b_seeds``: each seed's mean), since
    with 3 seeds per side it is a second, unresampled source of error."""
    if not len(ranks_a) or not len(ranks_b):
        raise ValueError("paired_bootstrap_seeds needs at least one run per side")
    per_a = [per_user_metric(r, metric) for r in ranks_a]
    per_b = [per_user_metric(r, metric) for r in ranks_b]
    shapes = sorted({p.shape for p in per_a + per_b})
    if len(shapes) != 1 or per_a[0].size == 0:
        raise ValueError(f"paired bootstrap needs the same non-empty user set in every run, got shapes {shapes}")
    a, b = np.mean(per_a, axis=0), np.mean(per_b, axis=0)
    return {**_bootstrap_mean(a - b, n_boot, seed, level), "a": float(a.mean()), "b": float(b.mean()),
            "a_seeds": [float(p.mean()) for p in per_a], "b_seeds": [float(p.mean()) for p in per_b]}


def _bootstrap_mean(d: np.ndarray, n_boot: int, seed: int, level: float) -> dict[str, float]:
    """Mean of the per-user differences ``d`` and its percentile interval over user resamples."""
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, 500):  # chunks keep memory at 500 x U
        idx = rng.integers(0, d.size, size=(min(500, n_boot - s), d.size))
        means[s:s + len(idx)] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "p_le_0": float((means <= 0).mean())}
