"""A tiny joint-training run used by the resume and determinism tests (also run as a subprocess)."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diger_lib import data as D
from diger_lib.config import (AssignConfig, DataConfig, JointConfig, RecommenderConfig, RQVAEConfig, TrainConfig,
                              UniGRecConfig)
from diger_lib.joint import assign_config_for
from diger_lib.pipeline import RunSpec, make_trainer
from diger_lib.rqvae import RQVAE, add_conflict_codes
from diger_lib.training import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
TINY = RecommenderConfig(d_model=16, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)


def build(method: str, ckpt_dir, epochs: int = 4, decay: str = "sdud+frqud", lr: float = 2e-3,
          time_budget_minutes: float = 0.0, assign: dict | None = None, joint: dict | None = None,
          train: dict | None = None, init_state: dict | None = None, unigrec: dict | None = None,
          teacher: torch.Tensor | None = None, log=lambda s: None, model: dict | None = None,
          data_parallel=None) -> Trainer:
    """``unigrec`` (method="unigrec"): UniGRecConfig fields; its distillation reads ``teacher`` (default: a seeded
    random [n_items, 6] table). ``model``: RecommenderConfig fields over TINY; ``data_parallel``: a
    ``parallel.Group`` (this process is one rank of a torchrun job)."""
    torch.manual_seed(0)
    seqs = D.load_interactions(FIXTURES, "Tiny")
    split = D.split_leave_one_out(seqs, 20)
    X = torch.from_numpy(np.random.default_rng(0).normal(size=(split.n_items, 12)).astype("float32"))
    rq = RQVAE(12, RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,)))
    rq.kmeans_init_(X, iters=5, seed=0)
    cfg = TrainConfig(method=method, epochs=epochs, patience=10, batch_size=64, lr=lr, beam_size=10, topk=10,
                      time_budget_minutes=time_budget_minutes, **(train or {}))
    run_config = {"method": method, "decay": decay, "lr": lr,  # epochs is an upper bound: raising it resumes
                  "assign": assign, "joint": joint, "train": train}
    extra = {}
    if method == "unigrec":
        run_config["unigrec"] = unigrec
        extra = dict(unigrec=UniGRecConfig(**(unigrec or {})))
        if teacher is None:
            teacher = torch.from_numpy(np.random.default_rng(1).normal(size=(split.n_items, 6)).astype("float32"))
    spec = RunSpec(data=DataConfig(dataset="Tiny", data_root=str(FIXTURES)), model=replace(TINY, **(model or {})), train=cfg,
                   assign=assign_config_for(cfg.method, AssignConfig(decay=decay, **(assign or {}))),
                   joint=JointConfig(**(joint or {})), codebook_size=8, n_levels=2, **extra)
    quiet = dict(ckpt_dir=ckpt_dir, run_config=run_config, init_state=init_state, progress=False, log=log)
    if data_parallel is not None:
        quiet["data_parallel"] = data_parallel
    if method == "two_stage" or (method == "unigrec" and not spec.uses_soft_ids):  # notebook 04's call, IDs frozen
        return make_trainer(spec, split, item_ids=add_conflict_codes(rq.deterministic_codes(X), 8), **quiet)
    trainer = make_trainer(spec, split, tokenizer=rq, item_emb=X, teacher=teacher, **quiet)
    trainer.joint.refresh_ids()  # the epoch table exists before fit() (tests inspect a step without training)
    return trainer


def _nan_to_none(v):
    return None if isinstance(v, float) and v != v else v


def summary(result) -> dict:
    """Everything a run reports except wall-clock times (NaN -> None so equal runs compare equal)."""
    return {"test": result.test, "best_epoch": result.best_epoch,
            "history": [{k: _nan_to_none(v) for k, v in r.items() if k != "seconds"} for r in result.history],
            "ids": result.item_ids.tolist()}


if __name__ == "__main__":  # python tests/_tiny_run.py METHOD CKPT_DIR OUT_JSON
    method, ckpt, out = sys.argv[1:4]
    torch.set_num_threads(1)
    res = build(method, ckpt).fit()
    Path(out).write_text(json.dumps(summary(res), sort_keys=True))
