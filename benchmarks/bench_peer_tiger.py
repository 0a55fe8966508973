"""Speed of a peer's TIGER (cornac 3.0.1, ``diger_lib.peer_tiger``) beside our Two-Stage, measured in the same run.

Both at the diagnosis budget's model size (T5 2+2 layers, d_model 128, 4 heads x d_kv 64, d_ff 512), on the same
training samples (the first epoch's subset our Two-Stage draws, ``training.epoch_subset``) and the same test users,
with the same semantic IDs (their first 3 levels; cornac appends its own collision level), beam 20, top 10:

* training: ours = ``GenRecModel`` + ``gen_backward`` + AdamW on length-bucketed batches (what the Trainer does), at
  our batch size (256) and at the peer's (64); peer = cornac's own training loop (``peer_tiger.fit``, its recipe:
  batch 64, AdamW, warm-up + cosine), timed over its batches only (its tokenizer is skipped: IDs are given).
* decoding: ours = ``decoding.recommend`` (batched, KV-cached, calls of 64 users); peer = cornac's ``score`` (one
  user at a time, decoder recomputed per level), both on the first ``--users`` test users.

Prints samples/s and users/s (wall and CPU), the ratios ours / peer, and the full diagnosis-budget cost of each
(4 x 65,536 training samples, 4 x 5,000 validation users, all test users) extrapolated from these rates.

    .venv/bin/python benchmarks/bench_peer_tiger.py --samples 2048 --users 256 --threads 2
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from bench_common import ROOT, load_bench_data, rss_mb

from diger_lib import baseline_scoring as B
from diger_lib import data as D
from diger_lib import peer_tiger as P
from diger_lib.config import RecommenderConfig, TrainConfig
from diger_lib.decoding import SIDTrie, recommend
from diger_lib.recommender import GenRecModel
from diger_lib.training import epoch_subset, gen_backward

BUDGET = dict(train=4 * 65536, valid=4 * 5000)  # the diagnosis profile's budget (profiles._DIAG_TRAIN)


class Clock:
    """Wall and CPU seconds of a block (CPU: this process, all threads)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def train_ours(model: GenRecModel, samples: D.Samples, idx: np.ndarray, tokens, batch_size: int) -> Clock:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    batches = [idx[b] for b in D.bucket_batches(samples.length[idx], batch_size, shuffle=True, seed=0)]
    with Clock() as c:
        for b in batches:
            batch = D.make_batch(samples, b, tokens)
            opt.zero_grad(set_to_none=True)
            gen_backward(model, TrainConfig().micro_batch_size, batch.input_ids, batch.attention_mask, batch.labels)
            opt.step()
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=2048, help="training samples each side trains on (timed)")
    ap.add_argument("--users", type=int, default=256, help="test users each side decodes (timed)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--data-root", default=str(ROOT / "data"))
    ap.add_argument("--dataset", default="Beauty")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    bench = load_bench_data(args.data_root, args.dataset, "train")
    split, vocab = bench.split, bench.vocab
    train, test = split.train, split.test
    codes = bench.item_codes.numpy()
    n_items = len(codes)
    sub = epoch_subset(len(train), args.samples, args.seed, 1)
    idx = np.arange(len(train)) if sub is None else sub
    users = min(args.users, len(test))
    print(f"data: {bench.source}; {len(idx):,} training samples (mean history {train.length[idx].mean():.2f} items), "
          f"{users} test users, {n_items:,} items")

    rcfg = RecommenderConfig(n_encoder_layers=2, n_decoder_layers=2)
    tokens = vocab.codes_to_tokens(bench.item_codes)
    torch.manual_seed(args.seed)
    rows, res = [], {}
    for bs in (256, P.PeerConfig().batch_size):
        ours = GenRecModel(rcfg, vocab)
        train_ours(ours, train, idx[:bs], tokens, bs)  # warm-up (allocator, MKL)
        c = train_ours(ours, train, idx, tokens, bs)
        res[f"ours_train_{bs}"] = c
        rows.append((f"ours, batch {bs}", len(idx), c))

    pcfg = P.PeerConfig(epochs=1, samples_per_epoch=len(idx), max_eval_users=1, ids="ours", seed=args.seed)
    with Clock() as fit_clock:
        peer, _, timing = P.fit(split, np.zeros((n_items, 8), np.float32), pcfg, codes, log=lambda s: None)
    # the peer's loop is timed inside fit (wall); its CPU share is taken as fit's CPU share
    peer_train = Clock()
    peer_train.wall, peer_train.cpu = timing.train_seconds, timing.train_seconds * fit_clock.cpu / fit_clock.wall
    res["peer_train"] = peer_train
    rows.append((f"peer (cornac), batch {pcfg.batch_size}", timing.samples_seen, peer_train))
    for name, n, c in rows:
        print(f"train  {name:28s} {n / c.wall:8.1f} samples/s wall  {n / c.cpu:8.1f} /CPU-s")

    trie = SIDTrie(bench.item_codes, vocab)
    b = D.make_batch(test, np.arange(users), tokens)
    with Clock() as c_ours:
        top = recommend(ours, b.input_ids, b.attention_mask, trie, beam_size=20, topk=10, batch_size=64,
                        progress=False)
    assert ((top >= 0) & (top < n_items)).all()
    with Clock() as c_peer:
        ev = B.evaluate(B.reference_scorer(peer), test, 10, max_users=users)
    assert ev.top.shape == (users, 10)
    for name, c in (("ours (recommend, calls of 64)", c_ours), ("peer (cornac score, 1 user)", c_peer)):
        print(f"decode {name:28s} {users / c.wall:8.1f} users/s wall    {users / c.cpu:8.1f} /CPU-s")

    t_ours, t_peer = res["ours_train_256"], res["peer_train"]
    print(f"ratio ours / peer: training {t_peer.wall / t_ours.wall:.2f}x (ours at batch 256), "
          f"{t_peer.wall / res['ours_train_64'].wall:.2f}x (both at batch 64); decoding {c_peer.wall / c_ours.wall:.2f}x")
    n_all = len(test)
    for name, tr, dec in (("ours", t_ours, c_ours), ("peer", t_peer, c_peer)):
        train_s = BUDGET["train"] / (len(idx) / tr.wall)
        dec_s = (BUDGET["valid"] + n_all) / (users / dec.wall)
        print(f"diagnosis budget, {name}: training {train_s / 60:.0f} min + decoding {dec_s / 60:.0f} min "
              f"(4 x 5,000 validation + {n_all:,} test users) = {(train_s + dec_s) / 60:.0f} min wall at these rates")
    print(f"peak RSS {rss_mb():.0f} MB; load average at the end {os.getloadavg()} (other processes slow every number)")


if __name__ == "__main__":
    main()
