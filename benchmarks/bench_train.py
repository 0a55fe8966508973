"""Training-step speed: HF T5ForConditionalGeneration fed LETTER-style vs GenRecModel's fast path.

Both models hold the same paper-size weights (6+6 layers, d_model 128, 4 x 64 heads, d_ff 512, dropout 0.1)
and train with the same AdamW on the same samples:

* HF, as LETTER/TIGER train it: random batches of 256, every batch padded to its longest history (up to
  20 items = 80 tokens), fp32, ``model(input_ids=..., attention_mask=..., labels=...)``.
* ours: the same samples in length-bucketed batches of 256 (``steps`` batches of a full epoch's
  ``diger_lib.data.bucket_batches``, evenly spaced over the sorted lengths), ``GenRecModel`` (fused QKV,
  cheap dropout, attention masks only where something is padded).

Data: Beauty's leave-one-out training prefixes (history = up to 20 previous items, target = next item, IDs
from LETTER's ``Beauty.index.json``) when ``<data-root>/Beauty`` exists, else synthetic lengths drawn from
the same distribution shape. Prints samples/s of both and their ratio, peak RSS, and model FLOPs
utilisation (useful FLOPs: unpadded tokens only) against a float32 matmul peak measured in the same run.

    .venv/bin/python benchmarks/bench_train.py --steps 4 --threads 2
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from bench_common import ROOT, build_models, load_bench_data, rss_mb

from diger_lib import data as D
from diger_lib.config import RecommenderConfig, TrainConfig
from diger_lib.training import gen_backward
from diger_lib.vocab import SIDVocab


def forward_macs(cfg: RecommenderConfig, vocab: SIDVocab, lengths: np.ndarray) -> float:
    """Multiply-accumulates of one forward pass over samples with ``lengths`` real encoder tokens each
    (projections, attention scores and mixing, feed-forward, lm_head; padding excluded)."""
    L = lengths.astype(np.float64)
    n, T, d, inner, ff, V = len(L), vocab.n_tokens, cfg.d_model, cfg.n_heads * cfg.d_kv, cfg.d_ff, vocab.size
    enc = cfg.n_encoder_layers * (L.sum() * (4 * d * inner + 2 * d * ff) + (L ** 2).sum() * 2 * inner)
    dec = cfg.n_decoder_layers * (n * T * (6 * d * inner + 2 * d * ff + 2 * T * inner)  # self q,k,v,o + cross q,o
                                  + L.sum() * 2 * d * inner + T * L.sum() * 2 * inner)  # cross k,v + attention
    return enc + dec + n * T * d * V


def train_flops(cfg: RecommenderConfig, vocab: SIDVocab, lengths: np.ndarray) -> float:
    """Useful FLOPs of a training step: forward + backward = 3 x forward, 2 FLOPs per MAC."""
    return 3 * 2 * forward_macs(cfg, vocab, lengths)


def matmul_peak(seconds: float = 1.0) -> float:
    """float32 GFLOP/s of torch.mm on 1024 x 1024 matrices, best of repeated runs for ``seconds``."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = max(best, 4 * 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def run_steps(step, batches) -> tuple[float, list[float]]:
    times = []
    for b in batches:
        t = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t)
    return sum(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4,
                    help="timed HF steps of --batch-size random samples; ours trains on the same samples")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--micro-batch-size", type=int, default=TrainConfig().micro_batch_size,
                    help="ours: samples per forward/backward pass, as the Trainer does it (0 = the whole batch)")
    ap.add_argument("--data-root", default=str(ROOT / "data"))
    ap.add_argument("--dataset", default="Beauty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-hf", action="store_true", help="time only our model")
    ap.add_argument("--hf-bucketed", action="store_true",
                    help="also time HF on our length-bucketed batches (separates batching from the model)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    cfg = RecommenderConfig()
    bench = load_bench_data(args.data_root, args.dataset, "train", args.seed)
    samples, vocab = bench.samples, bench.vocab
    tokens = vocab.codes_to_tokens(bench.item_codes)
    rng = np.random.default_rng(args.seed)
    # ours: `steps` full batches of a real epoch's length buckets, evenly spaced over the sorted lengths so
    # they represent the epoch; HF: the same samples, shuffled into random batches (LETTER)
    epoch = [b for b in D.bucket_batches(samples.length, args.batch_size, shuffle=True, seed=args.seed)
             if len(b) == args.batch_size]
    epoch.sort(key=lambda b: samples.length[b].mean())
    ours_idx = [epoch[int((i + 0.5) * len(epoch) / args.steps)] for i in range(args.steps)]
    pool = rng.permutation(np.concatenate(ours_idx))
    hf_idx = [pool[i:i + args.batch_size] for i in range(0, len(pool), args.batch_size)]
    n = len(pool)
    enc_tokens = int(samples.length[pool].sum()) * vocab.n_tokens
    print(f"data: {bench.source}; {len(samples):,} training samples, mean history "
          f"{samples.length.mean():.2f} items; timing {n} samples ({args.steps} batches of {args.batch_size})")
    hf_pad = sum(len(b) * samples.length[b].max() for b in hf_idx) * vocab.n_tokens / n
    our_pad = sum(len(b) * samples.length[b].max() for b in ours_idx) * vocab.n_tokens / n
    epoch_pad = np.mean([samples.length[rng.choice(len(samples), args.batch_size, replace=False)].max()
                         for _ in range(50)]) * vocab.n_tokens
    print(f"encoder tokens per sample incl. padding: HF random batches {hf_pad:.1f} (random batches of the whole "
          f"epoch: {epoch_pad:.1f}), ours bucketed {our_pad:.1f}, unpadded {enc_tokens / n:.1f}")

    peak = matmul_peak()
    useful = train_flops(cfg, vocab, samples.length[pool] * vocab.n_tokens)
    print(f"matmul peak (1024^2 fp32 torch.mm): {peak:.1f} GFLOP/s; useful work {useful / n / 1e6:.0f} MFLOP/sample")

    hf, ours = build_models(cfg, vocab, args.seed)
    results = {}

    def batch_of(idx):
        return D.make_batch(samples, idx, tokens)

    # ours first, so the RSS printed after it is ours alone
    ours.train()
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-3, weight_decay=0.05)

    def our_step(b):  # what Trainer.train_epoch does for Two-Stage
        opt.zero_grad(set_to_none=True)
        gen_backward(ours, args.micro_batch_size, b.input_ids, b.attention_mask, b.labels)
        opt.step()

    batches = [batch_of(i) for i in ours_idx]
    our_step(batch_of(hf_idx[0]))  # warm-up (allocator, MKL)
    secs, times = run_steps(our_step, batches)
    results["ours"] = secs
    print(f"micro-batches of {args.micro_batch_size or args.batch_size} samples for ours")
    print(f"{'ours:':13s}{n / secs:7.1f} samples/s  ({len(batches)} batches, "
          f"{n / args.batch_size / secs:.3f} steps/s of {args.batch_size})  MFU {useful / secs / 1e9 / peak:.1%}  peak RSS {rss_mb():.0f} MB")

    if not args.skip_hf:
        hf.train()
        hopt = torch.optim.AdamW(hf.parameters(), lr=1e-3, weight_decay=0.05)

        def hf_step(b):
            out = hf(input_ids=b.input_ids, attention_mask=b.attention_mask.long(), labels=b.labels)
            hopt.zero_grad(set_to_none=True)
            out.loss.backward()
            hopt.step()

        hf_step(batch_of(hf_idx[0]))  # warm-up
        for name, idx in (("HF", hf_idx), ("HF bucketed", ours_idx)):
            if name == "HF bucketed" and not args.hf_bucketed:
                continue
            secs, times = run_steps(hf_step, [batch_of(i) for i in idx])
            results[name] = secs
            print(f"{name + ':':13s}{n / secs:7.1f} samples/s  ({len(idx)} batches, {n / args.batch_size / secs:.3f} "
                  f"steps/s of {args.batch_size})  MFU {useful / secs / 1e9 / peak:.1%}  "
                  f"peak RSS {rss_mb():.0f} MB (process, both models)")
        print(f"speed-up ours / HF (LETTER-style): {results['HF'] / results['ours']:.2f}x")
        if "HF bucketed" in results:
            print(f"speed-up ours / HF on the same bucketed batches (the model alone): "
                  f"{results['HF bucketed'] / results['ours']:.2f}x")
    per_epoch = len(samples) / (n / results["ours"])
    print(f"ours, one epoch of {len(samples):,} samples: ~{per_epoch / 60:.1f} min at this rate")
    print(f"load average at the end {os.getloadavg()} (other processes on the machine slow every number)")


if __name__ == "__main__":
    main()
