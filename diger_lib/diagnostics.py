"""Per-epoch diagnostics of joint training (issue "DIGER that reproduces its paper", item 1).

Each joint run's ``history.csv`` gets, per epoch: drift per level (incremental and cumulative), train-inference
agreement on the input and label tokens the recommender was fed, how far the tokenizer's parameters moved, the
median best-vs-second logit gap per level (noise of scale ~1 re-draws a level whose gap is well below 1), SDUD's
sigma beside its stationary point sigma* = max(0, sqrt(L_gen) - lambda) (Eq. 18), and the cost of churn: L_gen on
a fixed probe set of training samples under last epoch's IDs and under the new ones, same weights.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import metrics as M
from .data import Samples, make_batch
from .recommender import GenRecModel
from .rqvae import RQVAE
from .runtime import eval_mode
from .vocab import SIDVocab

PROBE_SIZE = 2048  # training samples in the fixed probe set


def sigma_star(l_gen: float, lam: float) -> float:
    """SDUD's stationary point (Eq. 18): max(0, sqrt(L_gen) - lambda)."""
    return max(0.0, math.sqrt(max(l_gen, 0.0)) - lam)


class ParamTracker:
    """Relative L2 change of the tokenizer's encoder and codebooks since the last call."""

    def __init__(self, rqvae: RQVAE) -> None:
        self.rqvae = rqvae
        self.last = self._snapshot()

    def _snapshot(self) -> dict[str, torch.Tensor]:
        enc = torch.cat([p.detach().flatten() for p in self.rqvae.encoder.parameters()])
        return {"encoder": enc.clone(), "codebooks": self.rqvae.codebooks.detach().flatten().clone()}

    def step(self) -> dict[str, float]:
        now = self._snapshot()
        out = {f"tok_delta_{k}": float((now[k] - v).norm() / v.norm().clamp(min=1e-12)) for k, v in self.last.items()}
        self.last = now
        return out


def probe_indices(samples: Samples, seed: int, size: int = PROBE_SIZE) -> np.ndarray:
    """A fixed, sorted subset of training samples (the same for every epoch and every run with this seed)."""
    n = len(samples)
    return np.sort(np.random.default_rng(seed + 7).choice(n, size=min(size, n), replace=False))


@torch.no_grad()
def probe_loss(model: GenRecModel, samples: Samples, idx: np.ndarray, full_ids: torch.Tensor, vocab: SIDVocab,
               token_table: torch.Tensor | None = None, batch_size: int = 256) -> float:
    """Mean token cross-entropy (Eq. 4) of ``samples[idx]`` when items carry ``full_ids`` [N, n_tokens], in eval
    mode with the inference embeddings (``token_table``)."""
    with eval_mode(model):
        tokens = vocab.codes_to_tokens(full_ids.long()).cpu()
        dev = next(model.parameters()).device
        total, n = 0.0, 0
        for s in range(0, len(idx), batch_size):
            b = make_batch(samples, idx[s:s + batch_size], tokens)
            out = model(b.input_ids.to(dev), b.attention_mask.to(dev), b.labels.to(dev), token_table=token_table)
            total += float(out.loss) * b.labels.numel()
            n += b.labels.numel()
        return total / max(n, 1)


def level_drift(prev: torch.Tensor | None, cur: torch.Tensor, prefix: str) -> dict[str, float]:
    """``{prefix}_l{j}``: fraction of items whose level-j code changed (0 when there is nothing to compare)."""
    if prev is None:
        return {f"{prefix}_l{j}": 0.0 for j in range(cur.shape[1])}
    return {f"{prefix}_l{j}": v for j, v in enumerate(M.sid_drift_per_level(prev.cpu(), cur.cpu()))}


def prefix_share(samples: Samples, codes: np.ndarray, level: int) -> float:
    """Fraction of samples whose target shares its first ``level`` codes with at least one item of its history.

    A measure of how much sequential signal a set of semantic IDs carries before any recommender is trained: IDs that
    group items a user visits in sequence put next items under prefixes the history already holds. Compare it with the
    same codes over randomly permuted items (``id_signal``); repeat visits (the target is in the history) count as hits
    at every level for any codes.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not 1 <= level <= codes.shape[1]:
        raise ValueError(f"level={level} must be in 1..{codes.shape[1] if codes.ndim == 2 else '?'} "
                         f"for codes of shape {codes.shape}")
    key = np.zeros(len(codes), dtype=np.int64)
    base = int(codes.max()) + 1
    for j in range(level):  # the prefix as one integer
        key = key * base + codes[:, j].astype(np.int64)
    hist = samples.history
    hk = np.where(hist >= 0, key[np.maximum(hist, 0)], -1)
    return float((hk == key[samples.target][:, None]).any(axis=1).mean())


def id_signal(samples: Samples, codes: dict[str, np.ndarray], seed: int = 0) -> list[dict[str, object]]:
    """``prefix_share`` at every level for each named set of codes, and for the first set over permuted items."""
    (first, c0), *_ = codes.items()
    perm = np.random.default_rng(seed).permutation(len(c0))
    rows = []
    for name, c in [*codes.items(), (f"{first}, items permuted", c0[perm])]:
        rows.append({"ids": name, **{f"level {lvl}": prefix_share(samples, c, lvl) for lvl in range(1, c.shape[1] + 1)}})
    return rows
