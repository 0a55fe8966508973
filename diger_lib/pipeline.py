"""One run of notebook 04, built from its flat parameters: the call the notebook, the tests and the benchmarks share.

``RunSpec.from_params(params)`` turns the flat, typed parameters into the frozen configs (``config.from_flat``,
validated, ``ids`` an Enum); ``spec.run_config()`` is the dict whose hash (``checkpoint.fingerprint``) names the
checkpoint folder, so it must not change for the same parameters (a test pins it). ``build_trainer`` loads what the
run needs from the artifacts (the tokenizer of notebook 03 for joint methods, its codes or LETTER's IDs for
Two-Stage) and returns a ready ``Trainer``; ``make_trainer`` does the same from objects in memory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .checkpoint import atomic_torch_save, fingerprint
from . import unigrec as UG
from .config import (AssignConfig, ConfigError, Coupling, DataConfig, EvalIDs, IDSource, JointConfig, LRSchedule,
                     Method, NOT_FINGERPRINTED, RecommenderConfig, RQVAEConfig, TrainConfig, UniGRecConfig,
                     UniGRecPart, UniGRecVariant, Update, _enum, from_flat, to_dict)
from .data import Split, dataset_dir, load_index_codes, make_ids_unique, sha256_file
from .outputs import ids_file
from .joint import JointTokenizer, assign_config_for
from .parallel import DataParallelTrainer, Group, check_batch_size
from .paths import dataset_artifacts, display_path, run_of_folder, rqvae_dir
from .records import write_json
from .rqvae import RQVAE
from .runtime import resolve_device, seed_everything
from .teachers import load_teacher
from .training import Trainer, TrainResult
from .vocab import SIDVocab

LETTER_K = 256  # LETTER's codebooks: codes <a_0> ... <a_255>


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a notebook-04 run (the configs of ``config.py`` plus where its IDs come from)."""

    data: DataConfig
    model: RecommenderConfig
    train: TrainConfig
    assign: AssignConfig  # as the method uses it (STE fixes its switches: ``joint.assign_config_for``)
    joint: JointConfig
    ids: IDSource = IDSource.OURS
    codebook_size: int = 256  # K of the tokenizer to load (notebook 03)
    n_levels: int = 3  # m of the tokenizer to load
    init_from: str = ""  # warm start from this finished run's best recommender weights
    unigrec: UniGRecConfig = UniGRecConfig()  # method="unigrec" only (notebook parameters unigrec_*)
    teacher: str = "sasrec"  # unigrec's distillation: <artifacts root>/<dataset>/teachers/<teacher>/ (teachers.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _enum(IDSource, self.ids, "ids"))
        if self.ids is IDSource.LETTER and self.train.method != Method.TWO_STAGE:
            raise ConfigError("ids='letter' only applies to method='two_stage' (LETTER's IDs have no tokenizer to train)")
        if (self.is_joint and self.assign.update is Update.HARD
                and self.joint.coupling is Coupling.EMBEDDINGS):
            raise ConfigError("update='hard' with coupling='embeddings': that coupling sends L_gen through the "
                              "Gumbel-softmax probabilities only, so the hard update (and method='ste') would have no "
                              "path; use coupling='gradient'")
        if self.is_unigrec and self.uses_teacher and (not self.teacher or "/" in self.teacher):
            raise ConfigError(f"teacher={self.teacher!r} must name a folder under <artifacts root>/<dataset>/teachers/")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "RunSpec":
        """Build from notebook 04's flat parameters (other keys, e.g. the notebook's globals, are ignored)."""
        train = from_flat(TrainConfig, params)
        joint = UG.JOINT if train.method is Method.UNIGREC else from_flat(JointConfig, params)
        return cls(data=from_flat(DataConfig, params), model=from_flat(RecommenderConfig, params), train=train,
                   assign=assign_config_for(train.method, from_flat(AssignConfig, params)),
                   joint=joint, ids=params.get("ids", "ours"),
                   codebook_size=params.get("codebook_size", 256), n_levels=params.get("n_levels", 3),
                   init_from=params.get("init_from", ""), unigrec=from_flat(UniGRecConfig, params, prefix="unigrec_"),
                   teacher=params.get("teacher", "sasrec"))

    @property
    def is_joint(self) -> bool:
        return self.train.method in (Method.STE, Method.DIGER)

    @property
    def is_unigrec(self) -> bool:
        return self.train.method is Method.UNIGREC

    @property
    def uses_soft_ids(self) -> bool:
        """UniGRec with soft identifiers (M1-M6); M0 is TIGER, which trains as Two-Stage."""
        return self.is_unigrec and self.unigrec.has(UniGRecPart.SOFT)

    @property
    def uses_teacher(self) -> bool:
        return self.is_unigrec and bool(self.unigrec.parts & {UniGRecPart.CDT, UniGRecPart.CDR})

    def run_config(self) -> dict[str, Any]:
        """The configuration a checkpoint belongs to. Keys, order and values are those notebook 04 has always
        written: changing them would orphan every checkpoint of an interrupted batch (tests/test_pipeline.py)."""
        cfg = {"data": to_dict(self.data), "model": to_dict(self.model),
               "train": {k: v for k, v in to_dict(self.train).items() if k not in NOT_FINGERPRINTED},
               "assign": to_dict(self.assign), "joint": _joint_view(self.joint), "ids": self.ids.value,
               "K": self.codebook_size, "m": self.n_levels, "init_from": self.init_from}
        if self.train.lr_schedule is LRSchedule.WARMUP_COSINE:  # the cosine horizon is `epochs`: then it changes the run
            cfg["cosine_epochs"] = self.train.epochs
        if self.is_unigrec:  # only here, so no other method's fingerprint changes
            cfg["unigrec"] = {**to_dict(self.unigrec), "parts": sorted(p.value for p in self.unigrec.parts),
                              "teacher": self.teacher if self.uses_teacher else ""}
        return cfg

    def fingerprint(self) -> str:
        return fingerprint(self.run_config())


def _joint_view(joint: JointConfig) -> dict[str, Any]:
    """``joint`` as run_config records it: a switch added later is left out at its default value, so the
    fingerprints of earlier runs (and their checkpoints) stay valid."""
    out = to_dict(joint)
    if joint.eval_ids is EvalIDs.REFRESHED:
        out.pop("eval_ids")
    if joint.tokenizer_losses:
        out.pop("tokenizer_losses")
    return out


# ------------------------------------------------------------------------------------------------------------
# Tokenizer and IDs on disk
# ------------------------------------------------------------------------------------------------------------
def save_tokenizer(model: RQVAE, cfg: RQVAEConfig, path: Path | str) -> Path:
    """``rqvae.pt`` as notebook 03 writes it: input size, config and weights (atomic)."""
    atomic_torch_save({"in_dim": model.in_dim, "config": to_dict(cfg), "state_dict": model.state_dict()}, path)
    return Path(path)


def load_tokenizer(path: Path | str) -> RQVAE:
    """The RQ-VAE saved by :func:`save_tokenizer`, on the CPU."""
    saved = torch.load(path, map_location="cpu")
    cfg = RQVAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()})
    model = RQVAE(saved["in_dim"], cfg)
    model.load_state_dict(saved["state_dict"])
    return model


def load_letter_ids(data_root: Path | str, dataset: str, n_items: int, K: int = LETTER_K) -> tuple[np.ndarray, int, int]:
    """LETTER's published IDs (``NAME.index.json``) made unique (a trie maps each ID to one item).
    Returns (codes [n_items, L], K, number of items whose last code was moved)."""
    codes = load_index_codes(dataset_dir(data_root, dataset) / f"{dataset}.index.json", n_items)
    K = max(K, int(codes.max()) + 1)
    codes, n_changed = make_ids_unique(codes, K)
    return codes, K, n_changed


# ------------------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------------------
def make_trainer(spec: RunSpec, split: Split, *, ckpt_dir: Path | str, item_ids: torch.Tensor | None = None,
                 K: int | None = None, tokenizer: RQVAE | None = None, item_emb: torch.Tensor | None = None,
                 run_config: dict[str, Any] | None = None, init_state: dict[str, torch.Tensor] | None = None,
                 teacher: torch.Tensor | None = None, stage1_dir: Path | str | None = None,
                 data_parallel: Group | None = None, **trainer_kw: Any) -> Trainer:
    """A Trainer for ``spec``: Two-Stage (and UniGRec's M0, TIGER) reads the frozen ``item_ids`` (codes in [0, K));
    STE, DIGER and UniGRec tokenise ``item_emb`` with ``tokenizer`` at every step (UniGRec after its stage 1, cached
    in ``stage1_dir`` if given; its distillation reads ``teacher`` [n_items, d]). ``run_config`` defaults to
    ``spec.run_config()``. ``data_parallel`` (``parallel.init()`` under torchrun) makes this process one rank of a
    data-parallel job."""
    run_config = spec.run_config() if run_config is None else run_config
    trainer_cls: Any = Trainer
    if data_parallel is not None:
        if spec.uses_soft_ids:  # M0 (TIGER) trains as Two-Stage and is split like it
            raise ValueError("method=unigrec (M1-M6): data-parallel training is not implemented (its soft identifiers "
                             "and distillation losses are not split across ranks); run it in one process (n_procs=1)")
        trainer_cls = partial(DataParallelTrainer, group=data_parallel)
    if spec.uses_soft_ids:
        return _unigrec_trainer(spec, split, tokenizer, item_emb, teacher, stage1_dir, ckpt_dir=ckpt_dir,
                                run_config=run_config, init_state=init_state, **trainer_kw)
    if spec.is_joint:
        if tokenizer is None or item_emb is None:
            raise ValueError(f"method={spec.train.method.value} needs the tokenizer and the item embeddings")
        seed_everything(spec.train.seed)  # the projection W is initialised here
        joint = JointTokenizer(tokenizer, spec.assign, item_emb.to(resolve_device(spec.train.device)),
                               spec.model.d_model, seed=spec.train.seed, joint=spec.joint)
        return trainer_cls(split, spec.train, spec.model, joint.vocab, joint=joint, ckpt_dir=ckpt_dir,
                           run_config=run_config, init_state=init_state, **trainer_kw)
    if item_ids is None:
        raise ValueError("method=two_stage needs item_ids")
    vocab = SIDVocab(item_ids.shape[1], K or spec.codebook_size)
    return trainer_cls(split, spec.train, spec.model, vocab, item_ids=item_ids, ckpt_dir=ckpt_dir,
                       run_config=run_config, init_state=init_state, **trainer_kw)


def _unigrec_trainer(spec: RunSpec, split: Split, tokenizer: RQVAE | None, item_emb: torch.Tensor | None,
                     teacher: torch.Tensor | None, stage1_dir: Path | str | None, **trainer_kw: Any) -> Trainer:
    """UniGRec's Algorithm 1: stage 1 on the tokenizer (or its cached result), then the stage-2 trainer."""
    if tokenizer is None or item_emb is None:
        raise ValueError("method=unigrec needs the tokenizer and the item embeddings")
    dev = resolve_device(spec.train.device)
    item_emb = item_emb.to(dev)
    history = UG.run_stage1(tokenizer.to(dev), item_emb, spec.unigrec, seed=spec.train.seed, cache_dir=stage1_dir,
                            progress=trainer_kw.get("progress", True), log=trainer_kw.get("log", print))
    seed_everything(spec.train.seed)  # the distillation projections are initialised here
    joint = UG.UniGRecTokenizer(tokenizer, item_emb, spec.unigrec, spec.model.d_model, seed=spec.train.seed,
                                teacher=teacher if spec.uses_teacher else None)
    trainer = UG.UniGRecTrainer(split, spec.train, spec.model, joint.vocab, joint=joint, **trainer_kw)
    trainer.stage1_history = history
    return trainer


def checkpoint_dir(spec: RunSpec, artifacts_dir: Path | str, run_name: str) -> Path:
    """``<artifacts>/<dataset>/runs/<run_name>/<fingerprint>``: one folder per configuration."""
    return dataset_artifacts(artifacts_dir, spec.data.dataset) / "runs" / run_name / spec.fingerprint()


def build_trainer(spec: RunSpec, split: Split, artifacts_dir: Path | str, run_name: str,
                  log: Callable[[str], None] = print, **trainer_kw: Any) -> Trainer:
    """The Trainer of a notebook-04 run from the artifacts of notebooks 02 and 03 (or LETTER's IDs)."""
    art = dataset_artifacts(artifacts_dir, spec.data.dataset)
    kw: dict[str, Any] = {}
    if spec.ids is IDSource.LETTER:
        codes, kw["K"], n_changed = load_letter_ids(spec.data.data_root, spec.data.dataset, split.n_items)
        log(f"LETTER's IDs: {n_changed} items shared an ID with another item; their last code was moved to a free value")
        kw["item_ids"] = torch.from_numpy(codes)
    else:
        rq = rqvae_dir(artifacts_dir, spec.data.dataset, spec.codebook_size, spec.n_levels)
        if not (rq / "rqvae.pt").is_file():
            raise FileNotFoundError(f"{rq / 'rqvae.pt'} not found: run notebook 03 with codebook_size="
                                    f"{spec.codebook_size}, n_levels={spec.n_levels} first")
        if spec.is_joint or spec.uses_soft_ids:
            kw["tokenizer"] = load_tokenizer(rq / "rqvae.pt")
            kw["item_emb"] = torch.from_numpy(np.load(art / "item_emb.npy")).float()
            if spec.uses_soft_ids:  # stage 1's result, shared by the variants with the same stage 1
                kw["stage1_dir"] = rq / "unigrec_stage1"
            if spec.uses_teacher:
                kw["teacher"] = load_teacher(spec.data.dataset, spec.teacher, split.n_items).emb
        else:
            kw["item_ids"] = torch.from_numpy(np.load(rq / "codes.npy"))
    init_state = finished_run_weights(art / "runs", spec.init_from) if spec.init_from else None
    return make_trainer(spec, split, ckpt_dir=checkpoint_dir(spec, artifacts_dir, run_name), init_state=init_state,
                        log=log, **kw, **trainer_kw)


def tokenizer_digest(spec: RunSpec, artifacts_dir: Path | str) -> str:
    """SHA-256 of the file that fixes the run's semantic IDs: notebook 03's ``codes.npy`` (the deterministic IDs of its
    tokenizer, written beside ``rqvae.pt``) or LETTER's ``NAME.index.json``; "" for the floors. Two runs are paired
    (same items, same IDs at the start) only when their digests agree; notebook 03 prints the same digest."""
    if not spec.train.method.trains:
        return ""
    path = ids_file(artifacts_dir, spec.data.data_root, spec.data.dataset, ids=spec.ids.value, K=spec.codebook_size,
                    m=spec.n_levels)  # the file the runner's --skip-finished checks too (outputs.stale_reason)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run's semantic IDs come from it (notebook 03 writes codes.npy)")
    return sha256_file(path)


def mark_finished(trainer: Trainer, artifacts_dir: Path | str, dataset: str, run_name: str) -> Path:
    """``runs/<run_name>/finished.json`` names the finished configuration (what ``init_from`` reads)."""
    return write_json(dataset_artifacts(artifacts_dir, dataset) / "runs" / run_name / "finished.json",
                      {"fingerprint": trainer.ckpt_dir.name})


def finished_run_weights(runs_dir: Path | str, name: str) -> dict[str, Any]:
    """Best recommender weights of a finished notebook-04 run of the same artifacts folder (warm start)."""
    pointer = Path(runs_dir) / name / "finished.json"
    if not pointer.is_file():
        known = sorted(p.parent.name for p in Path(runs_dir).glob("*/finished.json"))
        raise FileNotFoundError(f"init_from={name!r}: no finished run {pointer}; finished runs here: "
                                f"{', '.join(known) or 'none'} (run that step first, same artifacts_dir)")
    best = Path(runs_dir) / name / json.loads(pointer.read_text())["fingerprint"] / "best.pt"
    return torch.load(best, map_location="cpu", weights_only=False)["model"]


def run_label(method: str, ids: str = "ours", decay: str = "none", noise: str = "gumbel", update: str = "soft",
              unigrec: UniGRecConfig | None = None) -> str:
    """The row name of Table 2/4 (DIGER) or Table 3 (UniGRec) a run reproduces (``metrics.json``'s ``label``)."""
    if method == "unigrec":
        u = unigrec or UniGRecConfig()
        if u.variant is UniGRecVariant.CUSTOM:
            return "UniGRec (" + ",".join(sorted(p.value for p in u.parts)) + ")"
        return UG.TABLE3_ROWS[u.variant]
    label = {"two_stage": "Two-Stage" + (" (LETTER IDs)" if ids == "letter" else ""), "ste": "STE",
             "most_popular": "MostPopular", "markov1": "Markov-1"}.get(method)
    if label is None:
        label = "DIGER (" + {"none": "w/o UD", "sdud": "SDUD", "frqud": "FrqUD", "sdud+frqud": "SDUD+FrqUD",
                             "tau_anneal": "tau annealing"}[decay] + ")"
        if noise != "gumbel" or update != "soft":
            label += f" noise={noise} update={update}"
    return label


def floor_topk(method: Method, split: Split, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` [U, k] a floor (a method that trains nothing) gives every validation and every test user: the most
    popular training items, or the last history item's most frequent training successors (``metrics.markov1_topk``)."""
    from . import metrics as M

    if method is Method.MOST_POPULAR:
        top = M.most_popular_topk(split.train_sequences, split.n_items, k)
        return np.tile(top, (len(split.valid), 1)), np.tile(top, (len(split.test), 1))
    if method is Method.MARKOV1:  # one count of the transitions for both splits
        last = np.concatenate([M.last_items(s.history, s.length) for s in (split.valid, split.test)])
        top = M.markov1_topk(split.train_sequences, last, split.n_items, k)
        return top[:len(split.valid)], top[len(split.valid):]
    raise ValueError(f"method={method.value!r} is not a floor (floors: most_popular, markov1)")


def print_config(run_config: dict[str, Any]) -> None:
    print(json.dumps(run_config, indent=1))


def recommend_for(trainer: Trainer, item_ids: np.ndarray | torch.Tensor, samples, idx) -> np.ndarray:
    """Top-k items [len(idx), k] the trained model (its best checkpoint, as ``fit`` leaves it) gives samples ``idx``,
    with the IDs ``item_ids`` the test used (``TrainResult.item_ids``)."""
    from .training import top_items

    ids = torch.as_tensor(np.asarray(item_ids)).long().to(trainer.device)
    table = trainer.joint.token_table(trainer.model.embed_weight()) if trainer.joint is not None else None
    return top_items(trainer.model, samples, np.asarray(idx), ids, trainer.vocab, trainer.cfg, token_table=table).numpy()


# ------------------------------------------------------------------------------------------------------------
# Notebook 04's training call: in this process, or data-parallel through torchrun
# ------------------------------------------------------------------------------------------------------------
def run_name_for(out_dir: str) -> str:
    """The checkpoint folder's run name of a notebook-04 output folder (the runner's staging suffix dropped)."""
    return run_of_folder(Path(out_dir).name)


def train(spec: RunSpec, split: Split, artifacts_dir: Path | str, run_name: str, *, params: Mapping[str, Any],
          resume: bool = True, n_procs: int = 1, log: Callable[[str], None] = print) -> tuple[Trainer, Any]:
    """Build and fit the run: ``(trainer, TrainResult)``. With ``n_procs > 1`` the training runs as ``torchrun
    --nproc_per_node=n_procs -m diger_lib.distributed`` on notebook 04's ``params`` (the job's output is printed
    here); the trainer returned is then rebuilt in this process at the job's last checkpoint with its best weights."""
    if n_procs < 1:
        raise ValueError(f"n_procs={n_procs} must be >= 1")
    if n_procs == 1:
        trainer = build_trainer(spec, split, artifacts_dir, run_name, log=log)
        log(f"checkpoints: {display_path(trainer.ckpt_dir)}")  # <artifacts>/<dataset>/runs/<run>/<fingerprint>
        return trainer, trainer.fit(resume=resume)
    check_batch_size(spec.train.batch_size, n_procs)
    if spec.uses_soft_ids:
        raise ValueError("method=unigrec (M1-M6): data-parallel training is not implemented; use n_procs=1")
    simple = {k: v for k, v in params.items() if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
    simple.update(artifacts_dir=str(artifacts_dir), run_name=run_name, resume=resume, progress=False)
    with tempfile.TemporaryDirectory(prefix="diger_ddp_") as tmp:
        pfile, rfile = Path(tmp) / "params.json", Path(tmp) / "result.pt"
        pfile.write_text(json.dumps(simple))
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_procs)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_procs}",
               "-m", "diger_lib.distributed", "--params", str(pfile), "--result", str(rfile)]
        log(f"launching: torchrun --standalone --nproc_per_node={n_procs} -m diger_lib.distributed (OMP_NUM_THREADS="
            f"{env['OMP_NUM_THREADS']}; its parameters and result pass through a temporary folder)")
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            for line in proc.stdout:
                log(line.rstrip())
        if proc.returncode != 0:
            raise RuntimeError(f"the {n_procs}-process training failed (exit code {proc.returncode}); its output is above")
        result = TrainResult(**torch.load(rfile, weights_only=False))
    trainer = build_trainer(spec, split, artifacts_dir, run_name, log=log)
    trainer.try_resume()
    trainer.load_best()
    return trainer, result
