"""Speed of one LightGCN epoch as Table 3's row trains it (``diger_lib.baseline_lightgcn``) against cornac's own parts,
measured in the same run on the same data and weights:

* BPR sampling: cornac's ``Dataset.uij_iter`` (one negative per Python loop turn) vs ``uniform_uij_iter`` (a batch
  at a time; same (user, positive) batches, negatives of the same law);
* graph propagation, forward + backward of cornac's ``Model`` (3 layers, 64 dimensions): ``dgl_lite``'s CSR product
  with its transpose kept (what runs) vs a COO ``torch.sparse.mm`` (the straightforward torch stand-in for DGL);
* one whole training epoch (sampling + steps + Adam) both ways.

Prints seconds (wall) and the ratios baseline / ours. Beauty's training pairs if ``data/Beauty`` is there, else a
synthetic graph of the same size.

    .venv/bin/python benchmarks/bench_lightgcn.py --threads 1
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
from bench_common import ROOT

from diger_lib import baselines as B, data as D, dgl_lite
from diger_lib.baseline_lightgcn import uniform_uij_iter


def dataset(data_root: str, name: str, seed: int, n_users: int = 22363):
    try:
        split = D.split_leave_one_out(D.load_interactions(data_root, name), 20)
        return B.interaction_dataset(split, seed), f"{name} (training pairs)"
    except D.DataError:
        rng = np.random.default_rng(seed)
        seqs = {u: rng.integers(0, 12101 * n_users // 22363, size=int(min(5 + rng.geometric(0.2), 50))).tolist()
                for u in range(n_users)}
        return B.interaction_dataset(D.split_leave_one_out(seqs, 20), seed), f"synthetic (no {data_root}/{name})"


class CooGraph(dgl_lite.DGLGraph):
    """The same graph, propagated with a COO ``torch.sparse.mm`` of the same matrix, built once (autograd transposes
    it at every backward)."""

    def multi_update_all(self, funcs, cross_reducer):
        out = {}
        for c, (msg, red) in funcs.items():
            key = ("coo", c, msg[2])
            if key not in self._adj:
                self._adj[key] = self._adjacency(c, msg[2])[0].to_sparse_coo().coalesce()
            out[c[2]] = torch.sparse.mm(self._adj[key], self.ndata[msg[1]][c[0]])
        self.dstdata[red[2]] = out


def timed(fn, repeat: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--data-root", default=str(ROOT / "data"))
    ap.add_argument("--dataset", default="Beauty")
    ap.add_argument("--batches", type=int, default=0, help="batches per timed epoch (0 = the whole epoch)")
    ap.add_argument("--repeat", type=int, default=5, help="propagation passes timed")
    ap.add_argument("--synthetic-users", type=int, default=22363, help="users of the synthetic graph (no data)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dgl_lite.install()
    from cornac.models.lightgcn import lightgcn

    data, source = dataset(args.data_root, args.dataset, 0, args.synthetic_users)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(f"data: {source}: {data.num_users:,} users, {data.num_items:,} items, {len(data.uir_tuple[0]):,} pairs")
    bs, limit = 2048, args.batches or None

    def take(it):
        return [b for _, b in zip(range(limit or 10**9), it)]

    data.dok_matrix  # cornac builds it on first use (its rejection test reads it); not part of an epoch
    data.reset()
    t_cornac = timed(lambda: take(data.uij_iter(batch_size=bs, shuffle=True)))
    data.reset()
    t_ours = timed(lambda: take(uniform_uij_iter(data, bs, True)))
    what = "one epoch" if not limit else f"{limit} batches"
    print(f"sampling, {what}: cornac uij_iter {t_cornac:.2f} s, ours {t_ours:.3f} s; ratio {t_cornac / t_ours:.1f}x")

    g = lightgcn.construct_graph(data, data.num_users, data.num_items)
    coo = copy.copy(g)  # the same edges and norms, its own node fields
    coo.__class__, coo.ndata, coo.dstdata, coo._adj = CooGraph, type(g.ndata)(), type(g.dstdata)(), {}
    graphs = {"dgl_lite CSR": g, "COO sparse.mm": coo}
    torch.manual_seed(0)
    models = {name: lightgcn.Model(g, 64, 3, 1e-4) for name, g in graphs.items()}
    models["COO sparse.mm"].load_state_dict(models["dgl_lite CSR"].state_dict())
    prop = {}
    for name, g in graphs.items():
        m = models[name]
        u, v, _ = m(g)
        (u.sum() + v.sum()).backward()  # warm-up (the CSR matrices are built here)
        prop[name] = timed(lambda: (lambda r: (r[0].sum() + r[1].sum()).backward())(m(g)), args.repeat)
    same = torch.allclose(models["dgl_lite CSR"](graphs["dgl_lite CSR"])[0],
                          models["COO sparse.mm"](graphs["COO sparse.mm"])[0], atol=1e-6)
    print(f"propagation fwd+bwd: COO sparse.mm {prop['COO sparse.mm'] * 1e3:.1f} ms, dgl_lite CSR "
          f"{prop['dgl_lite CSR'] * 1e3:.1f} ms; ratio {prop['COO sparse.mm'] / prop['dgl_lite CSR']:.1f}x; "
          f"same embeddings: {same}")

    def epoch(name: str, sampler) -> float:
        m, g = models[name], graphs[name]
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        t = time.perf_counter()
        for bu, bi, bj in take(sampler()):
            loss = m.loss_fn(*m(g, bu, bi, bj))[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    data.reset()
    t_base = epoch("COO sparse.mm", lambda: data.uij_iter(batch_size=bs, shuffle=True))
    data.reset()
    t_mine = epoch("dgl_lite CSR", lambda: uniform_uij_iter(data, bs, True))
    print(f"one training epoch ({'all' if not limit else limit} batches of {bs}): cornac sampler + COO {t_base:.2f} s, "
          f"ours {t_mine:.2f} s; ratio {t_base / t_mine:.1f}x")


if __name__ == "__main__":
    main()
