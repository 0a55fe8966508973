"""A peer's TIGER (cornac 3.0.1, ``cornac.models.tiger``) on our split, our item embeddings and our metric code: a
cross-check of our Two-Stage (issue 10, part 2).

cornac's model, tokenizer, loss, optimiser, schedule and beam search run unchanged; four hooks of a subclass make
the comparison exact and nothing else:

- **Items**: our MiniLM item embeddings (notebook 02's ``item_emb.npy``, row i = item i) are cornac's item features;
  with ``ids="cornac"`` cornac trains its own RQ-VAE on them (its constructor defaults have our tokenizer's shape);
  with ``ids="ours"`` it reads notebook 03's codes (3 levels; cornac appends its own collision level).
- **Budget in samples seen**: cornac's epoch iterator is replaced by ours over ``split.train`` (the user's training
  part ``s[:-2]``; cornac's prefix iterator yields the same samples): epoch e draws the very subset our Two-Stage
  draws (``training.epoch_subset``), shuffled into cornac's batch size. Its warm-up + cosine schedule then spans
  ``epochs * ceil(samples_per_epoch / batch_size)`` steps (cornac's spans its whole-data epochs).
- **Selection**: cornac's best-on-validation hook runs our metric (NDCG@10) on our first ``max_eval_users``
  validation users, every epoch, with cornac's own beam search; cornac restores the best epoch's weights.
- **Test**: cornac's own per-user ``score`` (beam search, ``n_beams`` = 20; items off the beams get -1e10) over the
  whole catalogue for every test user, then ``baseline_scoring.evaluate`` (top 10, ties to the lower id): the functions
  every other row uses.

Training and decoding wall times are recorded separately (tokenizer, training steps, validation, test decoding).

**Resume.** A full Beauty run takes hours on one core and cornac trains in one call, so with ``ckpt`` the run writes
a checkpoint after tokenizing (cornac's RQ-VAE is not trained twice) and after each epoch's validation (the model,
AdamW, the schedule, torch's random stream, the epochs' subsets drawn so far, the selection and the timings), and the
test decoding writes its top-k lists chunk by chunk. A run that finds them continues where it stopped: the hooks
give cornac the saved codes and, once cornac has built its model and optimiser, load the rest, and its loop runs
only the remaining epochs. The result equals an uninterrupted run's (tested on the Tiny fixture); the recorded
times add the completed parts (work a stop cut short is neither counted nor kept).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
from cornac.models.tiger import TIGER

from . import baseline_scoring as S, baselines as B
from .baseline_resume import SELECTION_FIELDS
from .checkpoint import atomic_torch_save
from .config import ConfigError
from .data import Split
from .paths import display_path
from .training import epoch_seed, epoch_subset


class PeerIds(str, Enum):
    CORNAC = "cornac"  # cornac's own RQ-VAE, trained on our item embeddings
    OURS = "ours"  # notebook 03's codes.npy (its first n_levels columns)


# The seq2seq recipe: Paischer et al.'s (cornac's PAISCHER_CONFIG, verbatim: dropout 0.2, AdamW lr 3e-4, weight decay
# 0.035, batch 64, warm-up then cosine), at our model's size (T5 2+2 layers, d_model 128, 4 heads x d_kv 64, d_ff 512:
# the diagnosis budget's Two-Stage), so the two differ in implementation and recipe, not in size. Warm-up: 500 steps,
# the diagnosis profile's cosine rows (PAISCHER's 10,000 exceed the whole budget of 4,096 steps at batch 64).
@dataclass(frozen=True)
class PeerConfig:
    epochs: int = 4  # validation checks; the budget is epochs x samples_per_epoch samples
    samples_per_epoch: int = 65536  # 0 = every training sample per epoch (then the same set every epoch)
    batch_size: int = 64  # PAISCHER
    lr: float = 3e-4  # PAISCHER
    weight_decay: float = 0.035  # PAISCHER
    dropout: float = 0.2  # PAISCHER
    lr_schedule: str = "cosine"  # cornac: constant | cosine (linear warm-up, then cosine to 0 over the budget)
    warmup_steps: int = 500  # the diagnosis profile's cosine rows
    n_encoder_layers: int = 2  # ours at the diagnosis budget
    n_decoder_layers: int = 2
    d_model: int = 128
    d_ff: int = 512  # ours (cornac's default 1024)
    n_heads: int = 4  # ours (cornac's default 6)
    d_kv: int = 64
    beam_size: int = 20  # ours (cornac's default 20; PAISCHER 30)
    topk: int = 10
    max_history: int = 20  # items the encoder reads (cornac's max_len)
    max_eval_users: int = 5000  # validation users per check (0 = all); test always uses all
    ids: PeerIds = PeerIds.CORNAC
    n_levels: int = 3  # semantic-ID levels before the collision level (ours: m = 3)
    codebook_size: int = 256  # codes per level (ours: K = 256)
    rqvae_epochs: int = 200  # cornac's default (ids="cornac" only)
    seed: int = 2026

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", PeerIds(self.ids))
        for name in ("epochs", "batch_size", "n_encoder_layers", "n_decoder_layers", "d_model", "d_ff", "n_heads",
                     "d_kv", "beam_size", "topk", "max_history", "n_levels", "codebook_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"peer TIGER: {name}={getattr(self, name)} must be >= 1")
        if self.beam_size < self.topk:
            raise ConfigError(f"peer TIGER: beam_size={self.beam_size} must be >= topk={self.topk}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"peer TIGER: lr_schedule={self.lr_schedule!r} must be 'constant' or 'cosine'")
        if min(self.samples_per_epoch, self.warmup_steps, self.max_eval_users, self.rqvae_epochs) < 0 or self.lr <= 0:
            raise ConfigError("peer TIGER: samples_per_epoch, warmup_steps, max_eval_users, rqvae_epochs must be >= 0 "
                              "and lr > 0")

    def steps_per_epoch(self, n_train: int) -> int:
        n = self.samples_per_epoch if 0 < self.samples_per_epoch < n_train else n_train
        return math.ceil(n / self.batch_size)


class Timing(NamedTuple):
    tokenizer_seconds: float  # cornac's RQ-VAE (0 with ids="ours")
    train_seconds: float  # the seq2seq training loop alone (its epochs' batches: forward, backward, AdamW)
    valid_seconds: float  # validation decoding inside fit
    setup_seconds: float  # the rest of fit: cornac's data maps, ID trie, model construction
    samples_seen: int  # training samples the model stepped on
    steps: int
    resumes: int = 0  # times the run continued from a checkpoint


class PeerRun(NamedTuple):
    model: Any  # the fitted cornac TIGER at its best epoch
    history: list[dict[str, Any]]  # one row per validation check (notebook 04's columns)
    best_epoch: int
    timing: Timing
    test: S.Evaluation | None  # None when not tested
    test_seconds: float  # decoding the test users (cornac's per-user beam search)


class _PeerTIGER(TIGER):
    """cornac's TIGER with the hooks the module docstring lists (tokenizer, schedule, validation); the rest is its."""

    def __init__(self, *, codes: np.ndarray | None, total_steps: int, on_validate: Callable[[], float],
                 resume: dict[str, Any] | None = None, on_checkpoint: Callable[[], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._codes, self._total_steps, self._on_validate = codes, total_steps, on_validate
        self._resume, self._on_checkpoint = resume, on_checkpoint
        self.seconds = {"tokenizer": 0.0, "valid": 0.0}
        self.codes_ = self.rng_tokenized_ = self.opt_ = self.scheduler_ = None

    def _tokenize(self, torch, feats_t):
        if self._resume is not None:  # the saved codes, and torch's random stream as it was right after tokenizing
            self.codes_, self.rng_tokenized_ = self._resume["codes"], self._resume["rng_tokenized"]
            self.seconds = dict(self._resume["seconds"])  # the tokenizer's and the validation checks' so far
            torch.set_rng_state(self.rng_tokenized_)
            return self.codes_
        t = time.perf_counter()
        codes = super()._tokenize(torch, feats_t) if self._codes is None else self._codes
        self.seconds["tokenizer"] += time.perf_counter() - t
        self.codes_, self.rng_tokenized_ = np.asarray(codes), torch.get_rng_state()
        if self._on_checkpoint is not None:
            self._on_checkpoint()  # epoch 0: the tokenizer's codes
        return codes

    def _make_lr_scheduler(self, torch, opt):  # cornac's lambda; total steps from the budget, not its epochs
        self.opt_, self.scheduler_ = opt, None
        if self.lr_schedule == "cosine":
            warm, total = self.warmup_steps, self._total_steps

            def lr_lambda(step):
                if step < warm:
                    return (step + 1) / max(1, warm)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
            self.scheduler_ = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        saved = self._resume
        if saved is not None and saved["epoch"] > 0:  # cornac has built its model and AdamW: continue from the save
            self.model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            if self.scheduler_ is not None:
                self.scheduler_.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
        return self.scheduler_

    def state(self) -> dict[str, Any]:
        """What a resumed fit needs beyond the epoch bookkeeping (``fit`` adds that)."""
        import torch

        trained = self.opt_ is not None
        return {"codes": self.codes_, "rng_tokenized": self.rng_tokenized_, "seconds": dict(self.seconds),
                "model": self.model.state_dict() if trained else None,
                "opt": self.opt_.state_dict() if trained else None,
                "scheduler": self.scheduler_.state_dict() if self.scheduler_ is not None else None,
                "torch_rng": torch.get_rng_state()}

    def _val_sessions(self, val_set):
        return None  # our validation users, read by on_validate

    def _validate(self, val_sessions, metric):
        t = time.perf_counter()
        score = self._on_validate()
        self.seconds["valid"] += time.perf_counter() - t
        if self._on_checkpoint is not None:
            self._on_checkpoint()
        return score


class _Stream:
    """What cornac's training loop iterates, epoch by epoch: our training samples (``epoch_subset``'s draw, shuffled
    into batches), as cornac's ``session_seq_iter`` yields them: (users, left-padded histories, next items)."""

    def __init__(self, split: Split, cfg: PeerConfig, record: list | None = None):
        self.split, self.cfg, self.record = split, cfg, record
        self.epoch, self.samples, self.steps, self.seconds = 0, 0, 0, 0.0

    def __call__(self, train_set, pad_index, batch_size, max_len, **_) -> Iterator[tuple]:
        self.epoch += 1
        s, cfg = self.split.train, self.cfg
        subset = epoch_subset(len(s), cfg.samples_per_epoch, cfg.seed, self.epoch)
        idx = np.arange(len(s)) if subset is None else subset
        idx = np.random.default_rng(epoch_seed(cfg.seed, self.epoch)).permutation(idx)
        t = time.perf_counter()  # from here to the epoch's end: cornac's training steps (and this batching)
        for b in range(0, len(idx), batch_size):
            rows = idx[b:b + batch_size]
            hist = S.left_padded(s.history[rows], s.length[rows], max_len, pad_index)
            if self.record is not None:
                self.record.append((rows, s.user[rows], hist, s.target[rows]))
            self.samples, self.steps = self.samples + len(rows), self.steps + 1
            yield s.user[rows], hist, s.target[rows]
        self.seconds += time.perf_counter() - t


@contextmanager
def _stream_in(model: TIGER, stream: _Stream) -> Iterator[None]:
    """Within this block cornac's TIGER trains on ``stream`` (its module's ``session_seq_iter`` global)."""
    module = inspect.getmodule(TIGER._fit_seq2seq)
    if not hasattr(module, "session_seq_iter"):
        raise TypeError("cornac's TIGER has no session_seq_iter to replace (cornac changed?)")
    old = module.session_seq_iter
    module.session_seq_iter = stream
    try:
        yield
    finally:
        module.session_seq_iter = old


def training_dataset(split: Split, item_emb: np.ndarray, seed: int = 0):
    """``baselines.sequential_dataset`` (each user's training part, identity maps) with our item embeddings as
    cornac's item features (row i = item i, every item of the catalogue)."""
    from cornac.data import FeatureModality

    if item_emb.shape[0] != split.n_items:
        raise ValueError(f"item embeddings have {item_emb.shape[0]} rows for {split.n_items} items")
    ds = B.sequential_dataset(split, seed)
    ds.add_modalities(item_feature=FeatureModality(features=np.asarray(item_emb, dtype=np.float32),
                                                   ids=list(range(split.n_items))))
    return ds


def checkpoint_file(folder: Path | str, cfg: PeerConfig, item_emb: np.ndarray, codes: np.ndarray | None) -> Path:
    """The checkpoint of a run of ``cfg`` on these embeddings and codes (another configuration never reads it)."""
    h = hashlib.sha256(json.dumps({k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(cfg).items()},
                                  sort_keys=True).encode())
    for a in (item_emb, codes):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return Path(folder) / f"peer_{h.hexdigest()[:16]}.pt"


def _test_file(ckpt: Path) -> Path:
    return ckpt.with_suffix(".test.npz")


def clear_checkpoint(ckpt: Path | str | None) -> None:
    """Delete a finished run's checkpoint and partial test (its metrics are written by then)."""
    if ckpt is not None:
        for f in (Path(ckpt), _test_file(Path(ckpt))):
            f.unlink(missing_ok=True)


def _load(ckpt: Path | None) -> dict[str, Any] | None:
    if ckpt is None or not Path(ckpt).is_file():
        return None
    import torch

    return torch.load(ckpt, map_location="cpu", weights_only=False)


def fit(split: Split, item_emb: np.ndarray, cfg: PeerConfig = PeerConfig(), codes: np.ndarray | None = None,
        log: Callable[[str], None] = print, record: list | None = None,
        ckpt: Path | str | None = None) -> tuple[Any, B.Selection, Timing]:
    """Train cornac's TIGER for ``epochs x samples_per_epoch`` samples, validating (our metric) after each epoch;
    returns the model at its best epoch. ``codes`` [N, >= n_levels] (``ids="ours"``): notebook 03's IDs. ``record``
    collects every batch cornac trains on as (rows of ``split.train``, users, left-padded histories, targets).
    ``ckpt``: a checkpoint file, written after tokenizing and after each epoch, and continued from if present."""
    if (cfg.ids is PeerIds.OURS) != (codes is not None):
        raise ValueError(f"ids={cfg.ids.value!r} {'needs' if codes is None else 'takes no'} codes")
    ckpt = Path(ckpt) if ckpt is not None else None
    saved, stream, holder = _load(ckpt), _Stream(split, cfg, record), {}
    resumes = saved["resumes"] + 1 if saved else 0  # this call continues from a checkpoint: one more resume
    t0 = time.perf_counter() - (saved["wall"] if saved else 0.0)

    def valid() -> dict[str, float]:
        return S.evaluate(S.reference_scorer(holder["m"]), split.valid, cfg.topk, max_users=cfg.max_eval_users).metrics

    # the best epoch's weights are kept here too: cornac's own copy covers only the epochs of its last call
    sel = B.Selection(valid, patience=cfg.epochs + 1,
                      snapshot=lambda: {k: v.detach().clone() for k, v in holder["m"].model.state_dict().items()})
    if saved is not None:
        stream.epoch, stream.samples, stream.steps, stream.seconds = saved["stream"]
        for k in SELECTION_FIELDS:
            setattr(sel, k, saved["selection"][k])
        log(f"  resuming after epoch {stream.epoch} of {cfg.epochs} ({display_path(ckpt)})")

    def on_validate() -> float:
        score = sel.check(stream.epoch, time.perf_counter() - t0)
        log(f"  epoch {stream.epoch}: {stream.samples:,} samples, valid N@10 {score:.4f} "
            f"(best {sel.best:.4f} at epoch {sel.best_epoch})")
        return score

    def checkpoint() -> None:
        atomic_torch_save({**holder["m"].state(), "epoch": stream.epoch, "wall": time.perf_counter() - t0,
                           "stream": (stream.epoch, stream.samples, stream.steps, stream.seconds),
                           "selection": {k: getattr(sel, k) for k in SELECTION_FIELDS}, "resumes": resumes}, ckpt)

    model = holder["m"] = _PeerTIGER(
        codes=None if codes is None else np.asarray(codes)[:, :cfg.n_levels].astype(np.int64),
        total_steps=cfg.epochs * cfg.steps_per_epoch(len(split.train)), on_validate=on_validate, resume=saved,
        on_checkpoint=checkpoint if ckpt is not None else None,
        name="TIGER (cornac)", rqvae_num_levels=cfg.n_levels, rqvae_codebook_size=cfg.codebook_size,
        rqvae_n_epochs=cfg.rqvae_epochs,
        d_model=cfg.d_model, d_ff=cfg.d_ff, num_heads=cfg.n_heads, d_kv=cfg.d_kv, num_enc_layers=cfg.n_encoder_layers,
        num_dec_layers=cfg.n_decoder_layers, dropout=cfg.dropout, max_len=cfg.max_history, n_epochs=cfg.epochs,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, lr_schedule=cfg.lr_schedule,
        warmup_steps=cfg.warmup_steps, model_selection="best", val_eval_every=1, val_k=cfg.topk, scoring="beam",
        n_beams=cfg.beam_size, device="cpu", seed=cfg.seed)
    model.n_epochs = cfg.epochs - stream.epoch  # cornac's loop counts from 1 again: only the remaining epochs
    with _stream_in(model, stream):
        model.fit(training_dataset(split, item_emb, cfg.seed), val_set=B._OurValidation())
    B.check_identity_maps(model, split.n_items)
    if sel.best_state is not None:
        model.model.load_state_dict(sel.best_state)
    wall = time.perf_counter() - t0
    s = model.seconds
    setup = wall - s["tokenizer"] - s["valid"] - stream.seconds
    return model, sel, Timing(s["tokenizer"], stream.seconds, s["valid"], setup, stream.samples, stream.steps, resumes)


def model_digest(model: Any) -> str:
    """A digest of the fitted weights and IDs (names the partial test decoding of exactly this model)."""
    h = hashlib.sha256(np.ascontiguousarray(model.sid_table).tobytes())
    for k, v in sorted(model.model.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run(split: Split, item_emb: np.ndarray, cfg: PeerConfig = PeerConfig(), codes: np.ndarray | None = None,
        log: Callable[[str], None] = print, max_test_users: int = 0, ckpt: Path | str | None = None,
        record: list | None = None) -> PeerRun:
    """``fit``, then the test: every item scored for every test user (or the first ``max_test_users``), timed; with
    ``ckpt``, both resume (the test in chunks of 1,024 users)."""
    model, sel, timing = fit(split, item_emb, cfg, codes, log, record, ckpt)
    if ckpt is None:
        t = time.perf_counter()
        test = S.evaluate(S.reference_scorer(model), split.test, cfg.topk, max_users=max_test_users)
        return PeerRun(model, sel.history, sel.best_epoch, timing, test, time.perf_counter() - t)
    test, seconds = S.evaluate_resumable(S.reference_scorer(model), split.test, cfg.topk, _test_file(Path(ckpt)),
                                         tag=model_digest(model), max_users=max_test_users)
    return PeerRun(model, sel.history, sel.best_epoch, timing, test, seconds)


def record(run_: PeerRun, cfg: PeerConfig, n_users: int) -> dict[str, Any]:
    """The flat metrics.json fields of a run beside notebook 04's: metrics, budget, and the speeds."""
    import cornac

    t, n_test = run_.timing, len(run_.test.ranks)
    best = next((h for h in run_.history if h["epoch"] == run_.best_epoch), {})
    return {**{f"peer_{k}": (v.value if isinstance(v, Enum) else v) for k, v in asdict(cfg).items()},
            **run_.test.metrics,
            **{f"valid_{k[4:]}": v for k, v in best.items() if k.startswith("val_") and k != "val_ndcg10"},
            "best_epoch": run_.best_epoch, "epochs_run": len(run_.history), "n_test_users": n_test,
            "all_test_users": n_test == n_users, "samples_seen": t.samples_seen, "train_steps": t.steps,
            "tokenizer_seconds": t.tokenizer_seconds, "train_seconds": t.train_seconds,
            "valid_seconds": t.valid_seconds, "setup_seconds": t.setup_seconds, "resumes": t.resumes,
            "test_decode_seconds": run_.test_seconds,
            "train_samples_per_s": t.samples_seen / max(t.train_seconds, 1e-9),
            "decode_users_per_s": n_test / max(run_.test_seconds, 1e-9), "cornac": cornac.__version__,
            "collisions": int((run_.model.sid_table[:, -1] > 0).sum())}


_IDS_WORD = {"cornac": "cornac", "ours": "our"}  # a table row's "TIGER (cornac, our IDs)"


def comparison_table(runs_dir: Path | str, profile: str, compare_run: str = "",
                     current: tuple[str, dict[str, Any]] | None = None, log: Callable[[str], None] = print):
    """``figures/peer_tiger``: every finished peer run in ``runs_dir`` (and ``current`` = (name, metrics), the run
    being recorded) beside the ``compare_run`` Two-Stage (a run folder under the runs root, e.g.
    ``unigrec/04_train_recommender__ug_m0``). ``fit_s``: training steps plus validation checks, wall seconds (notebook
    04's ``train_wall_seconds`` covers the same); speeds in ``benchmarks/bench_peer_tiger.py``, timed side by side."""
    import pandas as pd

    from . import records, runs as R

    keys = ("R@5", "R@10", "N@5", "N@10")

    def peer_row(name: str, m: dict[str, Any]) -> dict[str, Any]:
        return {"run": f"{profile}/{name}", "method": f"TIGER (cornac, {_IDS_WORD.get(m.get('peer_ids'), '?')} IDs)",
                **{k: m[k] for k in keys}, "samples_seen": m["samples_seen"],
                "fit_s": round(m["train_seconds"] + m["valid_seconds"], 1),
                "test_decode_s": round(m["test_decode_seconds"], 1)}

    me = current[0] if current else None
    rows = [peer_row(*current)] if current else []
    finished = sorted(Path(runs_dir).glob("04b_peer_tiger__*/metrics.json"))
    rows += [peer_row(f.parent.name, records.read_json(f)) for f in finished if f.parent.name != me]
    other = Path(runs_dir).parent / compare_run if compare_run else None
    if other is not None and (other / "metrics.json").is_file():
        o = R.read_run(other)
        cfg_o = records.read_json(other / "config.json") if (other / "config.json").is_file() else {}
        rows.append({"run": compare_run, "method": o.metrics.get("label", "?"), **{k: o.metrics[k] for k in keys},
                     "samples_seen": int(cfg_o.get("epochs", 0)) * int(cfg_o.get("samples_per_epoch", 0)) or None,
                     "fit_s": o.timing.get("train_wall_seconds"), "test_decode_s": None})
    elif compare_run:
        log(f"compare_run {compare_run!r} has no metrics.json under {display_path(Path(runs_dir).parent)}")
    return pd.DataFrame(rows).sort_values("run", kind="stable") if rows else pd.DataFrame(rows)


def write_table(table, figures_dir: Path | str) -> tuple[Path, Path]:
    """``comparison_table``'s table as ``figures_dir/peer_tiger.csv`` and ``.md`` (notebook 04b, ``cli peer-table``)."""
    from .tables import markdown_table

    figures = Path(figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    table.to_csv(figures / "peer_tiger.csv", index=False)
    (figures / "peer_tiger.md").write_text(markdown_table(table) + "\n")
    return figures / "peer_tiger.csv", figures / "peer_tiger.md"
