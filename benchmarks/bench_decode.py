"""Decoding speed: HF ``generate`` with a Python prefix trie vs our batched, KV-cached, tensor-trie beam search.

Same paper-size weights in both (random init; ranking agreement does not need a trained model). Users are
Beauty's test users (history = the last 20 items before the held-out one, LETTER's IDs made unique) when
``<data-root>/Beauty`` exists, else synthetic ones.

1. HF ``T5ForConditionalGeneration.generate(num_beams=20, num_return_sequences=10, max_new_tokens=4,
   prefix_allowed_tokens_fn=<dict trie>)`` on ``--hf-users`` users (LETTER's evaluation) vs
   ``constrained_beam_search`` on the same users: users/s, ratio, share of users with identical top-10.
2. ours alone through ``recommend`` (chunks of 64 sorted by length, searched by ``--threads`` single-threaded
   workers at once) on ``--users`` users, extrapolated to all test users; ``--all`` decodes every one of them.
3. ``--baseline-rounds N``: ``recommend`` against a frozen earlier search, alternately N times each on the same
   users, in the same process: wall and CPU time ratios and whether every top-10 list is identical.
   Alternating keeps a busy machine's load about equal on both sides. ``--baseline pointer`` (default): the
   search before issue 11 part 2 (``decode_baseline.py``: every op split over ``--threads`` threads);
   ``--baseline appended``: the one after its first round (``decode_appended.py``: appended K/V, one masked
   SDPA call per layer, concurrent single-threaded chunks like ours).
4. ``--chunk-rounds N``: the same comparison at a finer grain, on one thread: each chunk ``recommend`` would form
   is searched by the baseline and by ours back to back (order alternating), N rounds; thread CPU time per call.
   Both calls of a pair meet about the same load, so on a busy machine the median of the per-chunk ratios is the
   number to trust; whole-call alternation (3.) still drifts with the load of the minutes between calls.

    .venv/bin/python benchmarks/bench_decode.py --hf-users 64 --users 2048 --threads 2
    .venv/bin/python benchmarks/bench_decode.py --hf-users 0 --users 1024 --threads 2 --baseline-rounds 2
    .venv/bin/python benchmarks/bench_decode.py --hf-users 0 --users 2048 --threads 2 --baseline-rounds 3 \
        --baseline appended --chunk-rounds 3
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import decode_appended
import decode_baseline
from bench_common import ROOT, build_models, load_bench_data, rss_mb

from diger_lib import data as D
from diger_lib.config import RecommenderConfig, TrainConfig
from diger_lib.decoding import SIDTrie, constrained_beam_search, length_chunks, recommend
from diger_lib.runtime import torch_threads


def hf_prefix_fn(tokens: torch.Tensor):
    """prefix_allowed_tokens_fn over item token IDs [N, n_tokens]: a dict from each prefix to its next tokens."""
    allowed: dict[tuple, list[int]] = {}
    for row in tokens.tolist():
        for j in range(len(row)):
            allowed.setdefault(tuple(row[:j]), []).append(row[j])
    allowed = {k: sorted(set(v)) for k, v in allowed.items()}

    def fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        return allowed.get(tuple(sent[1:].tolist()), [])  # sent[0] is the decoder start (PAD)

    return fn


def hf_recommend(hf, input_ids, attention_mask, tokens, *, beam_size, topk, batch_size) -> torch.Tensor:
    fn = hf_prefix_fn(tokens)
    item_of = {tuple(r): i for i, r in enumerate(tokens.tolist())}
    n_tok = tokens.shape[1]
    out = []
    hf.eval()
    with torch.no_grad():
        for s in range(0, len(input_ids), batch_size):
            ids, mask = input_ids[s:s + batch_size], attention_mask[s:s + batch_size]
            seq = hf.generate(input_ids=ids, attention_mask=mask.long(), num_beams=beam_size,
                              num_return_sequences=topk, max_new_tokens=n_tok, prefix_allowed_tokens_fn=fn,
                              do_sample=False, early_stopping=True)
            items = [item_of.get(tuple(r[1:1 + n_tok]), -1) for r in seq.tolist()]
            out.append(torch.tensor(items).view(len(ids), topk))
    return torch.cat(out)


def compare_baseline(model, b, trie, top: torch.Tensor, args) -> None:
    """Time a frozen earlier search (``--baseline``) and ours alternately on the same users: best and median wall
    time, median CPU time of the process (all threads; on a busy machine it shows the work done, wall time also
    shows the waiting), and whether every list is identical."""
    kw = dict(beam_size=args.beam_size, topk=args.topk, batch_size=args.batch_size)
    wall, cpu = {"baseline": [], "ours": []}, {"baseline": [], "ours": []}
    frozen = {"pointer": decode_baseline, "appended": decode_appended}[args.baseline]
    runs = {"baseline": lambda: frozen.recommend(model, b.input_ids, b.attention_mask, trie, **kw),
            "ours": lambda: recommend(model, b.input_ids, b.attention_mask, trie, progress=False, **kw)}
    got = {}
    for _ in range(args.baseline_rounds):
        for name, run in runs.items():
            t, c = time.perf_counter(), time.process_time()
            got[name] = run()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    assert torch.equal(got["ours"], top), "recommend is not deterministic"
    same = (got["baseline"] == got["ours"]).all(1)
    for name in runs:
        print(f"{name:8s}: wall best {min(wall[name]):6.2f} s, median {np.median(wall[name]):6.2f} s; "
              f"CPU median {np.median(cpu[name]):6.2f} s")
    best = min(wall["baseline"]) / min(wall["ours"])
    wall_med, cpu_med = (np.median(t["baseline"]) / np.median(t["ours"]) for t in (wall, cpu))
    print(f"speed ratio baseline ({args.baseline}) / ours on {len(top):,} users, {args.baseline_rounds} alternating "
          f"rounds: wall best {best:.2f}x, wall median {wall_med:.2f}x, CPU median {cpu_med:.2f}x; identical "
          f"top-{args.topk} lists: {same.float().mean().item():.1%} of users ({int((~same).sum())} differ)")


def compare_per_chunk(model, b, trie, args) -> None:
    """One thread; per chunk of ``recommend``, the frozen search (``--baseline``) and ours back to back, the order
    alternating: thread CPU time of each call, the median and spread of the per-chunk ratios, differing lists."""
    frozen = {"pointer": decode_baseline, "appended": decode_appended}[args.baseline]
    kw = dict(beam_size=args.beam_size, topk=args.topk)
    runs = {"baseline": lambda ids, mask: frozen.constrained_beam_search(model, ids, mask, trie, **kw).items,
            "ours": lambda ids, mask: constrained_beam_search(model, ids, mask, trie, **kw).items}
    chunks, end = length_chunks(b.attention_mask, args.batch_size)
    cpu, ratios, differ = {"baseline": 0.0, "ours": 0.0}, [], 0
    with torch_threads(1):
        for r in range(args.chunk_rounds):
            for k, idx in enumerate(chunks):
                width = max(int(end[idx].max()), 1)
                ids, mask = b.input_ids[idx, :width], b.attention_mask[idx, :width]
                secs, items = {}, {}
                for name in (("baseline", "ours") if (r + k) % 2 == 0 else ("ours", "baseline")):
                    t = time.thread_time()
                    items[name] = runs[name](ids, mask)
                    secs[name] = time.thread_time() - t
                    cpu[name] += secs[name]
                ratios.append(secs["baseline"] / secs["ours"])
                differ += int((items["baseline"] != items["ours"]).any(1).sum()) if r == 0 else 0
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    print(f"per-chunk speed ratio baseline ({args.baseline}) / ours, 1 thread, {len(chunks)} chunks x "
          f"{args.chunk_rounds} rounds: median {med:.3f}x (quartiles {q1:.3f}-{q3:.3f}); total CPU "
          f"{cpu['baseline']:.1f} s / {cpu['ours']:.1f} s = {cpu['baseline'] / cpu['ours']:.3f}x; "
          f"users with different top-{args.topk} lists: {differ}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hf-users", type=int, default=64, help="users decoded by both HF and ours (0 = skip HF)")
    ap.add_argument("--hf-batch", type=int, default=16, help="users per HF generate call")
    ap.add_argument("--users", type=int, default=2048, help="users decoded by ours alone")
    ap.add_argument("--all", action="store_true", help="decode every test user with ours")
    ap.add_argument("--batch-size", type=int, default=TrainConfig().eval_batch_size,
                    help="users per beam search call (ours, in recommend)")
    ap.add_argument("--compare-batch-size", type=int, default=0,
                    help="also time recommend on the same users in calls of this many users (e.g. 512), same process")
    ap.add_argument("--baseline-rounds", type=int, default=0,
                    help="also time a frozen earlier search (--baseline) and ours alternately this many times")
    ap.add_argument("--chunk-rounds", type=int, default=0,
                    help="also compare with --baseline chunk by chunk on one thread, this many rounds")
    ap.add_argument("--baseline", choices=["pointer", "appended"], default="pointer",
                    help="pointer: before issue 11 part 2 (decode_baseline.py); appended: after its first round "
                         "(decode_appended.py)")
    ap.add_argument("--beam-size", type=int, default=20)
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--data-root", default=str(ROOT / "data"))
    ap.add_argument("--dataset", default="Beauty")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    bench = load_bench_data(args.data_root, args.dataset, "test", args.seed)
    samples, vocab = bench.samples, bench.vocab
    tokens = vocab.codes_to_tokens(bench.item_codes)
    trie = SIDTrie(bench.item_codes, vocab)
    U = len(samples)
    print(f"data: {bench.source}; {U:,} users, mean history {samples.length.mean():.2f} items, "
          f"{len(tokens):,} items; beams {args.beam_size}, top-{args.topk}")
    hf, ours = build_models(RecommenderConfig(), vocab, args.seed)
    rng = np.random.default_rng(args.seed)

    if args.hf_users:
        idx = np.sort(rng.choice(U, size=min(args.hf_users, U), replace=False))
        b = D.make_batch(samples, idx, tokens)
        t = time.perf_counter()
        ref = hf_recommend(hf, b.input_ids, b.attention_mask, tokens, beam_size=args.beam_size, topk=args.topk,
                           batch_size=args.hf_batch)
        t_hf = time.perf_counter() - t
        hf_rate = len(idx) / t_hf
        t = time.perf_counter()
        got = constrained_beam_search(ours, b.input_ids, b.attention_mask, trie, beam_size=args.beam_size,
                                      topk=args.topk).items
        t_ours = time.perf_counter() - t
        same = (got == ref).all(1).float().mean().item()
        overlap = np.mean([len(set(a) & set(r)) / args.topk for a, r in zip(got.tolist(), ref.tolist())])
        print(f"HF generate:   {len(idx) / t_hf:8.1f} users/s ({len(idx)} users, batches of {args.hf_batch})")
        print(f"ours (1 call): {len(idx) / t_ours:8.1f} users/s  -> {t_hf / t_ours:.1f}x HF")
        print(f"identical top-{args.topk} lists: {same:.1%} of users; mean overlap {overlap:.1%}")

    n = U if args.all else min(args.users, U)
    idx = np.arange(U) if args.all else np.sort(rng.choice(U, size=n, replace=False))
    b = D.make_batch(samples, idx, tokens)
    t = time.perf_counter()
    top = recommend(ours, b.input_ids, b.attention_mask, trie, beam_size=args.beam_size, topk=args.topk,
                    batch_size=args.batch_size, progress=False)
    secs = time.perf_counter() - t
    assert ((top >= 0) & (top < len(tokens))).all(), "beam search returned an id outside the catalogue"
    print(f"ours recommend: {n / secs:8.1f} users/s on {n:,} users in calls of {args.batch_size}, "
          f"{torch.get_num_threads()} workers ({secs:.1f} s); "
          f"all {U:,} users: {'measured' if args.all else 'estimated'} {U / (n / secs):.0f} s; "
          f"peak RSS {rss_mb():.0f} MB")
    if args.compare_batch_size:
        t = time.perf_counter()
        other = recommend(ours, b.input_ids, b.attention_mask, trie, beam_size=args.beam_size, topk=args.topk,
                          batch_size=args.compare_batch_size, progress=False)
        secs_other = time.perf_counter() - t
        print(f"ours recommend in calls of {args.compare_batch_size}: {n / secs_other:8.1f} users/s; speed ratio "
              f"(calls of {args.batch_size} / calls of {args.compare_batch_size}): {secs_other / secs:.2f}x; same top-{args.topk}: "
              f"{(other == top).all(1).float().mean().item():.1%} of users")
    if args.baseline_rounds:
        compare_baseline(ours, b, trie, top, args)
    if args.chunk_rounds:
        compare_per_chunk(ours, b, trie, args)
    if args.hf_users:
        print(f"ours recommend / HF generate: {(n / secs) / hf_rate:.1f}x")
    print(f"load average at the end {os.getloadavg()} (other processes on the machine slow every number)")


if __name__ == "__main__":
    main()
