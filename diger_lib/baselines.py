"""Conventional baselines of DIGER's Table 3, trained by cornac on our exact leave-one-out split and scored by our
metric code (issue 10, part 1).

cornac (3.0.1) trains the models; everything around it is ours, so these rows compare with every other row:

- **Data**: each user's training part ``s[:-2]`` (``data.split_leave_one_out``) is one cornac session; validation and
  test targets never reach cornac. Item and user ids are fed with identity maps, so cornac's item index i is our
  item i (the teacher export relies on it). Sequential models read at most ``max_history`` (20) items, as the
  generative rows do; cornac's prefix iterator then yields exactly our training samples.
- **Ranking**: every item of the catalogue is scored for every evaluated user (full ranking), top-k by score with
  ties to the lower item id, then ``metrics.ranking_metrics`` and ``metrics.target_ranks``. Like every other row
  (beam search, most-popular), items already in the history are *not* removed.
- **Selection**: the epoch by validation NDCG@10 (the early-stopping metric of notebook 04, checked every
  ``eval_every`` epochs, ``patience`` checks), the grid point by the best validation NDCG@10; test once.
- **SASRec as UniGRec's teacher** (issue 10, part 4): the chosen SASRec's item embeddings go to
  ``$DIGER_ARTIFACTS/<dataset>/teachers/sasrec/`` (``teachers.py``'s contract), so one model serves both.
"""
from __future__ import annotations

import inspect
import itertools
import json
import time
from collections import OrderedDict
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from .baseline_scoring import evaluate, scorer
from .baseline_selection import Selection, _OurValidation, _Stop  # noqa: F401 (part of this module's interface)
from .data import Split
from .teachers import teacher_dir


class Baseline(str, Enum):
    MF = "mf"  # matrix factorisation trained with the BPR loss (cornac BPR); the paper's "MF" row
    SASREC = "sasrec"  # cornac SASRec (causal self-attention, next item at the last position)
    BERT4REC = "bert4rec"  # cornac TransformerRec(backbone="bert", objective="mlm"): the Cloze training of BERT4Rec
    LIGHTGCN = "lightgcn"  # cornac LightGCN (its graph propagation from dgl_lite: DGL has no build for torch 2.13)


TABLE3_ROW = {Baseline.MF: "MF", Baseline.SASREC: "SASRec", Baseline.BERT4REC: "BERT4Rec",
              Baseline.LIGHTGCN: "LightGCN"}

# Table 3 rows this module does not train, and why (README "Conventional baselines (cornac)").
ABSENT = {
    "Caser": "not in cornac 3.0.1",
    "HGN": "not in cornac 3.0.1",
    "BigRec": "LLM-based (a fine-tuned LLaMA-7B); not in cornac",
    "P5-SID": "LLM-based (P5 on T5); not in cornac",
    "P5-CID": "LLM-based (P5 on T5); not in cornac",
    "ETEGRec": "generative; not in cornac",
}
# Table 3's generative rows come from notebook-04 runs (reproduce.py's keys) of another profile.
GENERATIVE_ROWS = {"TIGER": "two_stage", "LETTER": "two_stage_letter", "DIGER": "diger_frqud"}

# The validation grids (small, as public tuning studies use: SASRec's loss CE vs BCE and its size and dropout, after
# Klenitskiy & Vasilev, RecSys 2023, and Petrov & Macdonald, RecSys 2022). ``FIXED`` holds what no grid point changes.
GRIDS: dict[Baseline, dict[str, tuple]] = {
    # BPR's SGD rate matters most: at 0.01 (cornac's examples) the factors hardly leave their init in 100 epochs and the
    # ranking is the item bias, i.e. popularity (Beauty, first run: valid R@10 0.016 for every k); 0.05 learns them
    Baseline.MF: {"k": (64, 128), "lambda_reg": (1e-3, 1e-2), "learning_rate": (0.01, 0.05)},
    # "bce1" is SASRec's own loss (sasrec_bce1_loss), not cornac's "bce" (which collapses here, see there)
    Baseline.SASREC: {"loss": ("ce", "bce1"), "embedding_dim": (64, 128), "dropout": (0.2, 0.5)},
    Baseline.BERT4REC: {"embedding_dim": (64, 128), "dropout": (0.2, 0.5)},
    # LightGCN's paper tunes Adam's rate and the L2 weight at 64 dimensions and 3 layers (its best depth)
    Baseline.LIGHTGCN: {"learning_rate": (1e-3, 5e-3), "lambda_reg": (1e-4, 1e-3)},
}
FIXED: dict[Baseline, dict[str, Any]] = {
    Baseline.MF: dict(use_bias=True),
    Baseline.SASREC: dict(num_blocks=2, num_heads=1, learning_rate=1e-3, batch_size=256, n_sample=2048),
    Baseline.BERT4REC: dict(num_blocks=2, num_heads=1, learning_rate=1e-3, batch_size=256, n_sample=2048,
                            mask_prob=0.2),
    Baseline.LIGHTGCN: dict(emb_size=64, num_layers=3, batch_size=2048),  # the LightGCN paper's size and batch
}


def grid_points(model: Baseline | str, first_only: bool = False, spec: str = "full") -> list[dict[str, Any]]:
    """Every combination of the model's grid (``first_only``: just the first, for smoke runs). ``spec`` restricts axes
    to some of their values, ``"KEY:V[,V...][;KEY:V...]"`` (e.g. ``"loss:ce;dropout:0.2"``: the rest of the grid with
    those axes fixed); ``"full"`` keeps every point. A key or value outside the grid is an error that names the choices."""
    kind = Baseline(model)
    grid = dict(GRIDS[kind])
    for part in ([] if spec in ("", "full") else spec.split(";")):
        key, sep, values = part.partition(":")
        key = key.strip()
        if not sep or key not in grid:
            raise ValueError(f"grid={spec!r}: {part!r} is not KEY:VALUE[,VALUE] with KEY one of {', '.join(grid)} "
                             f"(the {kind.value} grid: {GRIDS[kind]})")
        by_text = {str(v): v for v in GRIDS[kind][key]}
        wanted = [v.strip() for v in values.split(",")]
        unknown = [v for v in wanted if v not in by_text]
        if unknown or not wanted:
            raise ValueError(f"grid={spec!r}: {key} has no value {', '.join(unknown) or '(none given)'}; "
                             f"its grid values are {', '.join(by_text)}")
        grid[key] = tuple(by_text[v] for v in wanted)
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return points[:1] if first_only else points


# ----------------------------------------------------------------------------------------------
# Our split -> cornac datasets (identity id maps: cornac's index i is our item i)
# ----------------------------------------------------------------------------------------------
def _identity(n: int) -> OrderedDict:
    return OrderedDict((i, i) for i in range(n))


def training_rows(split: Split) -> list[tuple[int, int, int, int]]:
    """(user, session, item, position) for every training interaction: user u's ``s[:-2]`` in time order. The
    validation and test targets (the last two items) are never among them."""
    return [(int(u), int(u), int(i), t) for u, seq in zip(split.valid.user, split.train_sequences)
            for t, i in enumerate(seq)]


def _user_map(split: Split) -> OrderedDict:
    """Our user id -> cornac's user index (the order of ``split.train_sequences``, which ``split.valid`` shares)."""
    return OrderedDict((int(u), j) for j, u in enumerate(split.valid.user))


def sequential_dataset(split: Split, seed: int = 0):
    """A cornac ``SequentialDataset``: one session per user (its training part), ids as our indices."""
    from cornac.data import SequentialDataset

    return SequentialDataset.build(training_rows(split), fmt="USIT", global_uid_map=_user_map(split),
                                   global_sid_map=_user_map(split), global_iid_map=_identity(split.n_items),
                                   seed=seed)


def interaction_dataset(split: Split, seed: int = 0):
    """A cornac ``Dataset`` of distinct (user, item) training pairs with rating 1 (implicit feedback), for MF."""
    from cornac.data import Dataset

    pairs = sorted({(u, i) for u, _, i, _ in training_rows(split)})
    return Dataset.build([(u, i, 1.0) for u, i in pairs], fmt="UIR", global_uid_map=_user_map(split),
                         global_iid_map=_identity(split.n_items), seed=seed)


def check_identity_maps(model: Any, n_items: int) -> None:
    """cornac's item index i must be our item i (scores and exported embeddings are read by index)."""
    iid = model.iid_map
    if len(iid) != n_items or any(k != v for k, v in iid.items()):
        raise ValueError("cornac's item map is not the identity: scores would not be indexed by our item ids")


# ----------------------------------------------------------------------------------------------
# Training with epoch selection on our validation metric
# ----------------------------------------------------------------------------------------------
@contextmanager
def _validation_hook(model: Any, hook: Callable[[], float]) -> Iterator[None]:
    """cornac's sequential models call ``val_score`` (their module's global) every ``val_eval_every`` epochs when
    ``model_selection="best"``; within this block that call runs ``hook`` (our metric, our validation users)."""
    module = inspect.getmodule(type(model).fit)
    if not hasattr(module, "val_score"):
        raise TypeError(f"{type(model).__name__}.fit has no val_score hook (cornac changed?)")
    old = module.val_score
    module.val_score = lambda *args, **kwargs: hook()
    try:
        yield
    finally:
        module.val_score = old


# SASRec's own loss (Kang & McAuley, ICDM 2018, Eq. 7): each position's positive against ONE negative drawn uniformly,
# -log sigmoid(s_pos) - log(1 - sigmoid(s_neg)). cornac 3.0.1's "bce" is another loss: the mean binary cross-entropy
# over the whole B x (B + 2,048) score matrix with one positive per row, so each positive weighs ~1/2,300 of its row
# and training pushes every score down (Beauty, d 64: validation N@10 0.0003-0.0004 at both dropouts, below the
# most-popular floor; session 10). The grid's "bce1" trains cornac's SASRec with this loss, its 2,048 negatives drawn
# uniformly (sample_alpha 0) and one of them per row.
SASREC_BCE1 = "diger_sasrec_bce1"


def sasrec_bce1_loss(item_scores, **kwargs):
    """cornac's loss contract: ``item_scores`` [B, B + N], column i of row i its positive, columns B.. the N sampled
    negatives; one negative column per row, drawn with torch's generator (cornac seeds it in ``fit``)."""
    import torch
    import torch.nn.functional as F

    B, N = item_scores.shape
    if N <= B:
        raise ValueError(f"sasrec_bce1_loss needs sampled negatives (n_sample > 0): scores of shape {tuple(item_scores.shape)}")
    rows = torch.arange(B, device=item_scores.device)
    neg = torch.randint(B, N, (B,), device=item_scores.device)
    return F.softplus(-item_scores[rows, rows]).mean() + F.softplus(item_scores[rows, neg]).mean()


def _make_sequential(model: Baseline, params: dict[str, Any], max_history: int, max_epochs: int, eval_every: int,
                     seed: int):
    from cornac.models import SASRec, TransformerRec

    bce1 = model == Baseline.SASREC and params.get("loss") == "bce1"
    if bce1:
        params = dict(params, loss="bce", sample_alpha=0.0)  # "bce" passes cornac's check; the loss is replaced below
    common = dict(n_epochs=max_epochs, model_selection="best", val_eval_every=eval_every, seed=seed, verbose=False,
                  **FIXED[model], **params)
    if model == Baseline.SASREC:
        net = SASRec(max_len=max_history, **common)
        if bce1:
            from cornac.models.seq_utils import losses

            losses.LOSS_FUNCTIONS[SASREC_BCE1] = sasrec_bce1_loss  # fit() looks its loss up by name
            net.loss = SASREC_BCE1
        return net
    # BERT4Rec reads the history plus a trailing mask token: max_len = max_history + 1 keeps 20 history items
    return TransformerRec(name="BERT4Rec", backbone="bert", objective="mlm", loss_at="all", max_len=max_history + 1,
                          **common)


def _fit_sequential(model: Baseline, params, split: Split, cfg: "FitConfig", log,
                    ckpt: Path | None = None) -> tuple[Any, Selection]:
    """cornac's fit with our epoch selection; with ``ckpt``, a checkpoint at each validation check, and a fit that
    finds one resumes from it (``baseline_resume``)."""
    from . import baseline_resume as R

    net = _make_sequential(model, params, cfg.max_history, cfg.max_epochs, cfg.eval_every, cfg.seed)
    saved, opt = R.load(ckpt), []

    def valid():
        return evaluate(scorer(net), split.valid, cfg.topk, max_users=cfg.max_eval_users).metrics

    sel = Selection(valid, cfg.patience, lambda: {k: v.detach().clone() for k, v in net.model.state_dict().items()})
    t0, done = R.resume(saved, sel, log)
    epoch = [done]
    net.n_epochs = cfg.max_epochs - done  # cornac counts its epochs from 1 again; checks stay aligned

    def hook():
        epoch[0] += cfg.eval_every
        score = sel.check(epoch[0], time.time() - t0)
        log(f"  epoch {epoch[0]}: valid N@10 {score:.4f} (best {sel.best:.4f} at epoch {sel.best_epoch})")
        if ckpt is not None:
            R.save(ckpt, net, opt[0], epoch[0], time.time() - t0, sel)
        return score

    with _validation_hook(net, hook), R.resuming_adam(net, saved, opt):
        try:
            net.fit(sequential_dataset(split, cfg.seed), val_set=_OurValidation())
        except _Stop:
            log(f"  stopped: no better validation N@10 for {cfg.patience} checks")
    if sel.best_state is not None:
        net.model.load_state_dict(sel.best_state)
    return net, sel


def _fit_mf(params, split: Split, cfg: "FitConfig", log) -> tuple[Any, Selection]:
    """cornac BPR trained ``eval_every`` epochs at a time, warm-started from the previous chunk (constant-rate SGD,
    so chunks continue one run), with the same epoch selection as the sequential models."""
    from cornac.models import BPR

    data, t0, state = interaction_dataset(split, cfg.seed), time.time(), {}

    def snapshot():
        return {"U": state["m"].u_factors.copy(), "V": state["m"].i_factors.copy(), "Bi": state["m"].i_biases.copy()}

    sel = Selection(lambda: evaluate(scorer(state["m"]), split.valid, cfg.topk, max_users=cfg.max_eval_users).metrics,
                    cfg.patience, snapshot)
    init = None
    try:
        for epoch in range(cfg.eval_every, cfg.max_epochs + 1, cfg.eval_every):
            state["m"] = BPR(max_iter=cfg.eval_every, seed=cfg.seed + epoch, init_params=init, verbose=False,
                             **FIXED[Baseline.MF], **params).fit(data)
            init = snapshot()
            score = sel.check(epoch, time.time() - t0)
            log(f"  epoch {epoch}: valid N@10 {score:.4f} (best {sel.best:.4f} at epoch {sel.best_epoch})")
    except _Stop:
        log(f"  stopped: no better validation N@10 for {cfg.patience} checks")
    best = state["m"]
    best.u_factors, best.i_factors, best.i_biases = sel.best_state["U"], sel.best_state["V"], sel.best_state["Bi"]
    return best, sel


class FitConfig(NamedTuple):
    max_history: int = 20  # items a sequential model reads (as the generative rows)
    max_epochs: int = 200  # upper bound; epoch selection usually stops sooner
    eval_every: int = 5  # epochs between validation checks
    patience: int = 4  # checks without a better validation NDCG@10 before stopping
    topk: int = 10
    max_eval_users: int = 0  # validation on the first this-many users (0 means all); test always uses all
    seed: int = 2026


class Trained(NamedTuple):
    model: Any  # the fitted cornac model at its best epoch
    params: dict[str, Any]  # its grid point
    best_epoch: int
    valid: dict[str, float]  # validation metrics at the best epoch (all validation users)
    history: list[dict[str, Any]]  # one row per validation check
    grid: list[dict[str, Any]]  # per grid point: params, best epoch, its best validation N@10


def fit(model: Baseline | str, params: dict[str, Any], split: Split, cfg: FitConfig = FitConfig(),
        log: Callable[[str], None] = print, ckpt: Path | str | None = None) -> tuple[Any, Selection]:
    """Train one grid point with epoch selection; returns the model at its best epoch and the selection record.
    ``ckpt`` (SASRec, BERT4Rec, LightGCN): an epoch checkpoint file, written at each check and resumed from if present."""
    model = Baseline(model)
    if model == Baseline.MF:
        net, sel = _fit_mf(params, split, cfg, log)
    elif model == Baseline.LIGHTGCN:
        from . import baseline_lightgcn

        net, sel = baseline_lightgcn.fit(params, FIXED[model], interaction_dataset(split, cfg.seed), split, cfg, log,
                                         Path(ckpt) if ckpt else None)
    else:
        net, sel = _fit_sequential(model, params, split, cfg, log, Path(ckpt) if ckpt else None)
    check_identity_maps(net, split.n_items)
    return net, sel


def _plain(obj: Any) -> Any:
    """``obj`` as grid.json holds it (tuples become lists), so a point read back compares equal to a fresh one."""
    return json.loads(json.dumps(obj))


class GridCache:
    """Finished grid points of one (dataset, model, seed) in ``folder``, so a rerun after an interruption trains only
    the points still missing: ``grid.json`` (each finished point's row and selection history, and the settings they
    were trained with) and ``best.pkl`` (the best point's fitted model). Other settings start the grid afresh.

    ``record``: a copy of the points (no model) in a file git keeps (notebook 03b: ``<runs_dir>/grid_points/``),
    written with each finished point. A new machine has no ``folder``; it reads the points from ``record`` and
    trains only the missing ones, then fits the chosen point again for its model (``best_model`` is None)."""

    def __init__(self, folder: Path | str | None, settings: dict[str, Any], record: Path | str | None = None):
        self.folder, self.settings = (Path(folder) if folder else None), settings
        self.record = Path(record) if record else None
        self.points: list[dict[str, Any]] = []
        self.best_params: dict[str, Any] | None = None  # the point whose model best.pkl holds
        f = self.folder / "grid.json" if self.folder else None
        if f is not None and f.is_file() and (self.folder / "best.pkl").is_file():
            saved = json.loads(f.read_text())
            if saved["settings"] == _plain(settings):
                self.points, self.best_params = saved["points"], saved.get("best_params")
        local = len(self.points)
        if self.record is not None and self.record.is_file():
            saved = json.loads(self.record.read_text())
            if saved["settings"] == _plain(settings):
                self.points += [p for p in saved["points"] if self.done(p["params"]) is None]
        # no fitted model to read back: none kept here, or points from the record and best.pkl's owner unrecorded
        self.no_model = local == 0 or (self.best_params is None and len(self.points) > local)

    def point_ckpt(self, params: dict[str, Any]) -> Path | None:
        from .baseline_resume import point_file

        return point_file(self.folder, _plain(self.settings), _plain(params)) if self.folder else None

    def done(self, params: dict[str, Any]) -> dict[str, Any] | None:
        return next((p for p in self.points if p["params"] == _plain(params)), None)

    def best_model(self, params: dict[str, Any]) -> Any:
        """The kept model if it is ``params``'s (None otherwise; a grid.json without ``best_params``, written before
        it was recorded, is trusted)."""
        import pickle

        kept = self.best_params
        if self.no_model or (kept is not None and kept != _plain(params)):
            return None
        return pickle.loads((self.folder / "best.pkl").read_bytes())

    def sync_record(self) -> None:
        """Write ``record`` with every point known here, unless it already holds exactly them: a grid whose points all
        came from ``folder`` (trained by a run whose record was not kept) still leaves a complete record in git."""
        from .atomic import atomic_open

        if self.record is None:
            return
        text = json.dumps({"settings": _plain(self.settings), "points": self.points}, indent=1, sort_keys=True) + "\n"
        if self.record.is_file() and self.record.read_text() == text:
            return
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.record, "w") as fh:
            fh.write(text)

    def add(self, point: dict[str, Any], model: Any, is_best: bool) -> None:
        from .atomic import atomic_open

        self.points.append(_plain(point))
        self.sync_record()
        if self.folder is None:
            return
        import pickle

        self.folder.mkdir(parents=True, exist_ok=True)
        if is_best:  # fit()'s data sets are dropped: the scorers need only the fitted parameters and id maps
            self.no_model = False
            data, model.train_set, model.val_set = (model.train_set, model.val_set), None, None
            with atomic_open(self.folder / "best.pkl", "wb") as fh:
                fh.write(pickle.dumps(model))
            model.train_set, model.val_set = data
            self.best_params = _plain(point["params"])
        with atomic_open(self.folder / "grid.json", "w") as fh:
            fh.write(json.dumps({"settings": self.settings, "points": self.points, "best_params": self.best_params},
                                indent=1, sort_keys=True))


def _grid_row(row: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A grid point's row with its columns in one order: the grid's axes, then the selection (grid.json stores keys
    sorted, so a row read back from it would otherwise give grid.csv other columns than a fresh one)."""
    first = [*params, "best_epoch", "valid_N@10", "epochs_run"]
    return {**{k: row[k] for k in first if k in row}, **{k: v for k, v in row.items() if k not in first}}


def train_grid(model: Baseline | str, split: Split, cfg: FitConfig = FitConfig(), first_only: bool = False,
               log: Callable[[str], None] = print, cache_dir: Path | str | None = None, spec: str = "full",
               record: Path | str | None = None) -> Trained:
    """Every grid point of ``model`` (``spec``: a restriction, ``grid_points``); the one with the best validation
    NDCG@10 is kept. With ``cache_dir``, finished points survive an interruption, and with ``record`` (a file git
    keeps) a new machine (``GridCache``)."""
    model = Baseline(model)
    cache = GridCache(cache_dir, {"cfg": cfg._asdict(), "fixed": FIXED[model], "n_items": split.n_items,
                                  "n_users": len(split.test), "n_train": len(split.train)}, record)
    best, best_net = None, None
    points = grid_points(model, first_only, spec)
    for params in points:
        trained, point, ckpt = None, cache.done(params), None
        if point is not None:
            log(f"{model.value} {params}: finished before (best epoch {point['row']['best_epoch']}), skipped")
        else:
            log(f"{model.value} {params}")
            ckpt = cache.point_ckpt(params)  # an interrupted point resumes from its last validation check
            trained, sel = fit(model, params, split, cfg, log, ckpt)
            point = {"params": params, "history": sel.history, "row": {
                **params, "best_epoch": sel.best_epoch, "valid_N@10": sel.best,
                "epochs_run": sel.history[-1]["epoch"] if sel.history else 0}}
        is_best = best is None or point["row"]["valid_N@10"] > best["row"]["valid_N@10"]
        if trained is not None:
            cache.add(point, trained, is_best)
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)  # the point is in grid.json now
        if is_best:
            best, best_net = point, trained  # None for a point finished before: its model is in best.pkl
    cache.sync_record()
    net = best_net if best_net is not None else cache.best_model(best["params"])
    if net is None:  # best.pkl holds another point (one outside this restricted grid): fit the chosen point again
        log(f"{model.value} {best['params']}: the kept model is another point's; fitting this one again")
        net, _ = fit(model, best["params"], split, cfg, log)
    valid = evaluate(scorer(net), split.valid, cfg.topk).metrics  # all validation users, whatever max_eval_users
    rows = [_grid_row(cache.done(params)["row"], params) for params in points]
    return Trained(net, best["params"], best["row"]["best_epoch"], valid, best["history"], rows)


# ----------------------------------------------------------------------------------------------
# SASRec -> UniGRec's teacher
# ----------------------------------------------------------------------------------------------
def item_embeddings(model: Any) -> np.ndarray:
    """The item embedding table [n_items, d] (float32) a sequential model scores with; row i = our item i."""
    return model.model.item_emb.weight[:model.total_items].detach().cpu().numpy().astype(np.float32)


def export_teacher(trained: Trained, dataset: str, name: str = "sasrec", root: Path | str | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write ``item_emb.npy`` and ``meta.json`` where ``teachers.load_teacher`` reads them."""
    import cornac

    emb = item_embeddings(trained.model)
    d = teacher_dir(dataset, name, root)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "item_emb.npy", emb)
    meta = {"model": f"cornac {type(trained.model).__name__}", "cornac": cornac.__version__, "n_items": emb.shape[0],
            "dim": emb.shape[1], "params": trained.params, "best_epoch": trained.best_epoch,
            **{f"valid_{k}": v for k, v in trained.valid.items()}, **(extra or {})}
    (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return d
