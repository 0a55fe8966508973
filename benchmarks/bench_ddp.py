"""Data-parallel training step: samples/s of N gloo (or nccl) processes under torchrun against 1 process.

Both sides run the same global batches (length-bucketed, ``diger_lib.training.epoch_batches``) through the Trainer's
own step (``_step_inputs``, ``_batch_backward``, clipping, AdamW): one process with ``Trainer``, N processes with
``parallel.DataParallelTrainer`` (each rank's share of every batch, one gradient all-reduce per step). Samples/s
counts global samples. The model is the paper's T5 (6+6, d 128) unless ``--tiny``; data are Beauty's training
samples with LETTER's IDs when ``<data-root>/Beauty`` exists, else synthetic ones. ``--method diger`` adds the
tokenizer (a k-means-initialised RQ-VAE on random item embeddings), whose forward every rank repeats.

    .venv/bin/python benchmarks/bench_ddp.py --procs 2 --steps 8 --threads 1

``--threads`` is per process (on a 2-core CPU: 1 thread each for 2 processes, 2 threads for 1 process is the fair
comparison of the whole machine; ``--threads-single`` sets the 1-process side separately). Run it on an idle
machine; the script launches both jobs itself and prints their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def build(args: argparse.Namespace, ckpt: Path, group):
    from bench_common import load_bench_data

    from diger_lib import data as D
    from diger_lib.config import AssignConfig, DataConfig, JointConfig, RecommenderConfig, RQVAEConfig, TrainConfig
    from diger_lib.pipeline import RunSpec, make_trainer
    from diger_lib.rqvae import RQVAE

    bench = load_bench_data(args.data_root, args.dataset)
    n = min(len(bench.samples), args.steps * args.batch_size)
    sp = D.Split(train=bench.samples, valid=bench.samples, test=bench.samples, n_items=len(bench.item_codes),
                 train_sequences=[])  # only the training samples are read (no validation here)
    model = RecommenderConfig(d_model=32, d_ff=64, n_heads=2, d_kv=16, n_encoder_layers=1, n_decoder_layers=1) \
        if args.tiny else RecommenderConfig()
    train = TrainConfig(method=args.method, batch_size=args.batch_size, micro_batch_size=args.micro_batch_size,
                        samples_per_epoch=n, epochs=2)
    spec = RunSpec(data=DataConfig(dataset=args.dataset, data_root=args.data_root), model=model, train=train,
                   assign=AssignConfig(), joint=JointConfig(), codebook_size=bench.vocab.codebook_size,
                   n_levels=bench.vocab.n_tokens - 1)
    kw = dict(ckpt_dir=ckpt, run_config={}, progress=False, log=lambda s: None, data_parallel=group)
    if args.method == "two_stage":
        return make_trainer(spec, sp, item_ids=bench.item_codes, K=bench.vocab.codebook_size, **kw), bench.source
    torch.manual_seed(0)
    x = torch.randn(sp.n_items, 384)
    rq = RQVAE(384, RQVAEConfig(codebook_size=bench.vocab.codebook_size, n_levels=bench.vocab.n_tokens - 1))
    rq.kmeans_init_(x, iters=3, seed=0)
    trainer = make_trainer(spec, sp, tokenizer=rq, item_emb=x, **kw)
    trainer.joint.refresh_ids()
    return trainer, bench.source


def worker(args: argparse.Namespace) -> None:
    """One process of a job: warm-up step, then ``--steps`` timed steps; rank 0 prints a JSON line."""
    from diger_lib import parallel

    if args.threads:
        torch.set_num_threads(args.threads)
    group = parallel.init(args.device) if parallel.env_world() > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        trainer, source = build(args, Path(tmp), group)
        trainer.train_epoch(0)  # warm-up (allocations, thread pools)
        t = time.perf_counter()
        trainer.train_epoch(1)
        seconds = time.perf_counter() - t
    n = trainer.cfg.samples_per_epoch
    if group is None or group.rank == 0:
        print(json.dumps({"procs": 1 if group is None else group.world, "samples": n, "seconds": seconds,
                          "samples_per_s": n / seconds, "source": source, "threads": torch.get_num_threads()}))
    parallel.shutdown()


def launch(args: argparse.Namespace, procs: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", __file__,
           "--worker", *sys.argv[1:]]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
               OMP_NUM_THREADS=str(threads or 1))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{procs}-process job failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="timed global batches")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--micro-batch-size", type=int, default=128)
    ap.add_argument("--method", default="two_stage", choices=("two_stage", "diger"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process of the N-process job")
    ap.add_argument("--threads-single", type=int, default=0, help="threads of the 1-process job (default: --threads)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiny", action="store_true", help="the smoke profile's 1+1-layer model (a quick check)")
    ap.add_argument("--data-root", default=str(ROOT / "data"))
    ap.add_argument("--dataset", default="Beauty")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    one = launch(args, 1, args.threads_single or args.threads)
    many = launch(args, args.procs, args.threads)
    print(f"data: {one['source']}; method {args.method}; {args.steps} global batches of {args.batch_size}")
    print(f"1 process ({one['threads']} threads): {one['samples_per_s']:.1f} samples/s")
    print(f"{args.procs} processes ({many['threads']} threads each): {many['samples_per_s']:.1f} samples/s")
    print(f"speed-up {args.procs} / 1: {many['samples_per_s'] / one['samples_per_s']:.2f}x")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
