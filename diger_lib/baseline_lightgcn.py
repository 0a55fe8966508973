"""Table 3's LightGCN row: cornac's ``LightGCN`` on our split, with our epoch selection (issue 10, part 1).

cornac's model, initialisation, BPR loss with its L2 term, Adam, negative sampling and epoch loop run unchanged; the
graph propagation it asks of DGL comes from ``dgl_lite`` (DGL has no build for torch 2.13). It trains on the distinct
(user, item) training pairs MF trains on (``baselines.interaction_dataset``), and is scored like MF: every item of the
catalogue by ``U[u] . V[i]`` (full ranking, nothing removed). One change of speed, not of sampling: cornac's
``uij_iter`` draws each BPR negative in a Python loop (5-9 s of a 12 s Beauty epoch); ``uniform_uij_iter`` draws the
same thing (uniform over the items the user has no training interaction with, by rejection) a batch at a time.
A grid point checkpoints at each validation check and resumes from there (``baseline_resume``).
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from .baseline_selection import Selection
    from .data import Split


def uniform_uij_iter(data: Any, batch_size: int = 1, shuffle: bool = False,
                     neg_sampling: str = "uniform") -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """cornac's ``Dataset.uij_iter`` for implicit data (every rating 1), vectorised: the same batches of (user,
    positive) in the same order (its ``idx_iter`` on its ``rng``), each negative uniform over the items the user has
    no training pair with; a draw that hits one is drawn again, as cornac's loop does, until none is left."""
    if neg_sampling.lower() != "uniform":
        raise ValueError(f"uniform_uij_iter: neg_sampling={neg_sampling!r} (only 'uniform')")
    users, items, ratings = data.uir_tuple
    if len(ratings) and not np.all(ratings == ratings[0]):
        raise ValueError("uniform_uij_iter needs implicit data (one rating value); cornac compares ratings")
    n = data.num_items
    positive = np.unique(users.astype(np.int64) * n + items)  # sorted keys of the (user, item) training pairs

    def is_positive(u: np.ndarray, j: np.ndarray) -> np.ndarray:
        keys = u.astype(np.int64) * n + j
        at = np.minimum(np.searchsorted(positive, keys), len(positive) - 1)
        return positive[at] == keys

    for batch_ids in data.idx_iter(len(users), batch_size, shuffle):
        bu, bi = users[batch_ids], items[batch_ids]
        bj = data.rng.randint(0, n, size=len(bu))
        bad = is_positive(bu, bj)
        while bad.any():
            bj[bad] = data.rng.randint(0, n, size=int(bad.sum()))
            bad[bad] = is_positive(bu[bad], bj[bad])
        yield bu, bi, bj.astype(bi.dtype)


def make(params: dict[str, Any], fixed: dict[str, Any], max_epochs: int, seed: int):
    """cornac's LightGCN with the grid point ``params`` and the fixed settings; DGL replaced if it is missing."""
    from . import dgl_lite

    dgl_lite.install()
    from cornac.models import LightGCN

    return LightGCN(num_epochs=max_epochs, seed=seed, verbose=False, **fixed, **params)


def _save(path: Path, opt: Any, data: Any, epoch: int, seconds: float, sel: "Selection") -> None:
    """The fit's state after ``epoch``: the embedding tables (the optimizer's parameters), Adam, ``data.rng`` (it
    shuffles the batches and draws the negatives; torch draws nothing after the initialisation) and the selection;
    atomically."""
    from .baseline_resume import write

    write(path, opt, epoch, seconds, sel, params=[p.detach().clone() for g in opt.param_groups for p in g["params"]],
          np_rng=data.rng.get_state())


def _restore(data: Any, opt: Any, saved: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for p, v in zip((p for g in opt.param_groups for p in g["params"]), saved["params"], strict=True):
            p.copy_(v)
    opt.load_state_dict(saved["opt"])
    data.rng.set_state(saved["np_rng"])


def fit(params: dict[str, Any], fixed: dict[str, Any], data: Any, split: "Split", cfg: Any,
        log, ckpt: Path | None = None) -> tuple[Any, "Selection"]:
    """cornac's fit on ``data`` (``baselines.interaction_dataset``) with ``cfg`` (a ``baselines.FitConfig``). Its
    per-epoch ``early_stop`` call (made when ``early_stopping`` is set) runs our selection every ``eval_every`` epochs
    on validation NDCG@10 with ``patience`` checks, and the model ends at its best epoch. With ``ckpt``, the state is
    written at each check, and a fit that finds it runs only the remaining epochs, to the uninterrupted result."""
    from . import baseline_resume as R
    from .baseline_scoring import evaluate, scorer
    from .baseline_selection import Selection, _OurValidation, _Stop

    net = make(params, fixed, cfg.max_epochs, cfg.seed)
    saved, opt = R.load(ckpt), []
    sel = Selection(lambda: evaluate(scorer(net), split.valid, cfg.topk, max_users=cfg.max_eval_users).metrics,
                    cfg.patience, lambda: (net.U.copy(), net.V.copy()))
    t0, done = R.resume(saved, sel, log)
    epoch = [done]
    net.num_epochs = cfg.max_epochs - done

    def early_stop(train_set, val_set, **_) -> bool:  # cornac calls it after each epoch, once U and V are set
        epoch[0] += 1
        if epoch[0] % cfg.eval_every:
            return False
        try:
            score = sel.check(epoch[0], time.time() - t0)
        except _Stop:
            log(f"  stopped: no better validation N@10 for {cfg.patience} checks")
            return True
        log(f"  epoch {epoch[0]}: valid N@10 {score:.4f} (best {sel.best:.4f} at epoch {sel.best_epoch})")
        if ckpt is not None:
            _save(ckpt, opt[0], data, epoch[0], time.time() - t0, sel)
        return False

    net.early_stopping, net.early_stop = {}, early_stop
    data.uij_iter = partial(uniform_uij_iter, data)
    with R.resuming_adam(net, saved, opt, restore=partial(_restore, data)):
        net.fit(data, val_set=_OurValidation())
    if sel.best_state is not None:
        net.U, net.V = sel.best_state
    del net.early_stop  # the instance's hook; a pickled model keeps cornac's method
    return net, sel
