"""Notebook 04's training as a data-parallel job: ``torchrun --nproc_per_node=N -m diger_lib.distributed --params FILE``.

``FILE`` is a JSON object of notebook 04's parameters (the same names and values as its parameters cell; names left
out keep the library defaults, which are the notebook's), plus optionally ``run_name`` (the checkpoint folder's run
name; default: from ``out_dir``, as the notebook derives it) and ``progress`` (progress bars on rank 0). Every rank builds the run with ``pipeline.build_trainer``,
exactly as the notebook does, and trains its share of each global batch (``parallel.py``); rank 0 prints, writes the
checkpoints and, with ``--result``, the ``TrainResult`` the notebook reads back (``pipeline.train`` with
``n_procs > 1`` launches this module). Launched without torchrun it trains in this one process. Backend: gloo on CPU,
nccl on CUDA (``--backend`` overrides).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from . import data as D, parallel, paths
from .pipeline import RunSpec, build_trainer, run_name_for
from .training import TrainResult


def train(params: dict[str, Any], backend: str = "") -> tuple[TrainResult, int]:
    """Train the run ``params`` describe on this rank; returns its result and this process's rank."""
    spec = RunSpec.from_params(params)
    group = parallel.init(spec.train.device, backend) if parallel.env_world() > 1 else None
    try:
        split = D.split_leave_one_out(D.load_interactions(spec.data.data_root, spec.data.dataset),
                                      spec.data.max_history)
        art = paths.artifacts_dir(params.get("artifacts_dir", ""), params.get("profile", "manual"))
        run_name = params.get("run_name") or run_name_for(params.get("out_dir", "papermill_runs/manual/04_train_recommender"))
        quiet = group is not None and group.rank != 0
        trainer = build_trainer(spec, split, art, run_name, log=(lambda s: None) if quiet else print,
                                data_parallel=group, progress=bool(params.get("progress", True)) and not quiet)
        if group is None or group.rank == 0:
            print(f"checkpoints: {paths.display_path(trainer.ckpt_dir)}; processes: {1 if group is None else group.world}",
                  flush=True)
        result = trainer.fit(resume=bool(params.get("resume", True)))
        return result, 0 if group is None else group.rank
    finally:
        parallel.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diger_lib.distributed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True, help="JSON file of notebook 04's parameters")
    ap.add_argument("--result", default="", help="rank 0 writes the TrainResult here (torch.save of a dict)")
    ap.add_argument("--backend", default="", help="gloo | nccl (default: nccl on CUDA, gloo on CPU)")
    args = ap.parse_args(argv)
    params = json.loads(Path(args.params).read_text())
    if not isinstance(params, dict):
        ap.error(f"{args.params} must hold a JSON object of notebook 04's parameters")
    result, rank = train(params, args.backend)
    if rank == 0:
        if args.result:
            Path(args.result).parent.mkdir(parents=True, exist_ok=True)
            torch.save(dataclasses.asdict(result), args.result)
        print(json.dumps({"test": result.test, "best_epoch": result.best_epoch, "stop_reason": result.stop_reason}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
