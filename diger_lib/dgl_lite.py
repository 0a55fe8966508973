"""The few pieces of DGL that cornac's LightGCN uses, in plain torch (issue 10: Table 3's LightGCN row).

cornac 3.0.1's ``cornac.models.lightgcn`` builds a user-item heterograph with DGL and propagates with
``fn.u_mul_e("h", "norm", "m")`` and ``fn.sum("m", "h_n")`` under ``multi_update_all(..., "sum")``: each node receives
the sum over its in-edges of the source's features times the edge's ``norm``. DGL has no build for torch 2.13 (its
newest wheel, 2.1.0, ships kernels up to torch 2.2.1), so ``install()`` puts this module in its place when ``import
dgl`` fails. Everything else of cornac's LightGCN (its model, Xavier init, BPR loss, Adam, sampling, epoch loop) runs
unchanged. One ``multi_update_all`` is one sparse matrix product per edge type, ``h_n[dst] = A_e @ h[src]`` with
``A_e[v, u] = sum of norm over the edges u -> v`` (duplicate edges add, as DGL's sum does); tests check it against
the dense normalised adjacency of the LightGCN paper (He et al., SIGIR 2020, Eq. 7).

Only the graph API that cornac's LightGCN calls exists here; anything else raises ``AttributeError``.
"""
from __future__ import annotations

import sys
import types
import warnings
from typing import Any

import torch

NID = "_ID"  # used by cornac only for sampled mini-batch blocks, which its fit never builds


class _Func(tuple):
    """A message or reduce function as DGL's ``dgl.function`` names it: (kind, *field names)."""


def u_mul_e(u_field: str, e_field: str, out: str) -> _Func:
    return _Func(("u_mul_e", u_field, e_field, out))


def sum(msg: str, out: str) -> _Func:  # noqa: A001 - DGL's name
    return _Func(("sum", msg, out))


class _PerType(dict):
    """``g.ndata`` / ``g.edata`` / ``g.dstdata``: field -> {type: tensor}; assigning a dict sets it per type."""

    def __setitem__(self, field: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"dgl_lite: {field!r} must be set per type (a dict), as cornac's LightGCN does")
        super().setdefault(field, {}).update(value)


class DGLGraph:
    """A heterograph of (src type, edge type, dst type) relations with fixed node counts."""

    def __init__(self, relations: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]],
                 num_nodes: dict[str, int]):
        self.canonical_etypes = list(relations)
        self.ntypes = sorted(num_nodes)
        self._n = dict(num_nodes)
        self._edges = {c: (torch.as_tensor(s, dtype=torch.long), torch.as_tensor(d, dtype=torch.long))
                       for c, (s, d) in relations.items()}
        for (st, et, dt), (s, d) in self._edges.items():
            if len(s) != len(d) or (len(s) and (s.max() >= self._n[st] or d.max() >= self._n[dt] or
                                                s.min() < 0 or d.min() < 0)):
                raise ValueError(f"dgl_lite: edges of {et} are not within the {st} / {dt} node counts")
        self.ndata, self.edata, self.dstdata = _PerType(), _PerType(), _PerType()
        self._adj: dict[tuple[tuple[str, str, str], str], tuple[torch.Tensor, torch.Tensor]] = {}  # (relation, field)

    def num_nodes(self, ntype: str) -> int:
        return self._n[ntype]

    def _canonical(self, etype: Any) -> tuple[str, str, str]:
        if isinstance(etype, tuple):
            return etype
        found = [c for c in self.canonical_etypes if c[1] == etype]
        if len(found) != 1:
            raise KeyError(f"dgl_lite: edge type {etype!r} names {len(found)} relations")
        return found[0]

    def edges(self, etype: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._edges[self._canonical(etype)]

    def _degrees(self, nodes: torch.Tensor, etype: Any, end: int) -> torch.Tensor:
        c = self._canonical(etype)
        count = torch.bincount(self._edges[c][end], minlength=self._n[c[2 * end]])
        return count[torch.as_tensor(nodes, dtype=torch.long)]

    def in_degrees(self, v: torch.Tensor, etype: Any = None) -> torch.Tensor:
        return self._degrees(v, etype, 1)

    def out_degrees(self, u: torch.Tensor, etype: Any = None) -> torch.Tensor:
        return self._degrees(u, etype, 0)

    def to(self, device: Any) -> "DGLGraph":
        self._edges = {c: (s.to(device), d.to(device)) for c, (s, d) in self._edges.items()}
        self._adj = {}
        return self

    def _adjacency(self, c: tuple[str, str, str], e_field: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A_e[v, u] = the sum of the edge field over the edges u -> v (n_dst x n_src), and its transpose, both in CSR
        (the product and its gradient without a transpose per step); kept until ``to``."""
        if (c, e_field) not in self._adj:
            s, d = self._edges[c]
            w = self.edata[e_field][c[1]].reshape(-1).detach().to(device=s.device, dtype=torch.float32)  # after .to
            shape = (self._n[c[2]], self._n[c[0]])
            with torch.sparse.check_sparse_tensor_invariants(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")  # tested here
                a = torch.sparse_coo_tensor(torch.stack([d, s]), w, shape).coalesce()
                self._adj[c, e_field] = (a.to_sparse_csr(), a.t().coalesce().to_sparse_csr())
        return self._adj[c, e_field]

    def multi_update_all(self, funcs: dict[tuple[str, str, str], tuple[_Func, _Func]], cross_reducer: str) -> None:
        if cross_reducer != "sum":
            raise NotImplementedError(f"dgl_lite: cross reducer {cross_reducer!r} (only 'sum')")
        out: dict[str, torch.Tensor] = {}
        field = None
        for c, (msg, red) in funcs.items():
            if msg[0] != "u_mul_e" or red[0] != "sum" or red[1] != msg[3]:
                raise NotImplementedError(f"dgl_lite: message {msg} with reduce {red} (only u_mul_e then sum)")
            h = self.ndata[msg[1]][c[0]]
            part = _SpMM.apply(h, *self._adjacency(c, msg[2]))
            out[c[2]] = part if c[2] not in out else out[c[2]] + part
            field = red[2]
        if field is not None:
            self.dstdata[field] = out


class _SpMM(torch.autograd.Function):
    """A @ h for a constant sparse A, with the gradient At @ g: two CSR products, no transpose at each backward
    (cornac's whole 3-layer propagation, forward + backward, 1.3x faster than with a prebuilt COO ``sparse.mm`` on one
    CPU thread, Beauty: ``benchmarks/bench_lightgcn.py``)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, a: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        ctx.at = at
        return a @ h

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return ctx.at @ g, None, None


def heterograph(data_dict: dict[tuple[str, str, str], tuple[Any, Any]],
                num_nodes_dict: dict[str, int]) -> DGLGraph:
    return DGLGraph(data_dict, num_nodes_dict)


def install() -> bool:
    """Make ``import dgl`` and ``import dgl.function`` give this module when DGL itself is not importable; returns
    True if it did (False: a real DGL is there and is used)."""
    try:
        import dgl  # noqa: F401
        return sys.modules["dgl"] is sys.modules[__name__]
    except Exception:  # not installed, or (as DGL 2.1 beside torch 2.13) failing to load its kernels
        sys.modules.pop("dgl", None)
    me = sys.modules[__name__]
    function = types.ModuleType("dgl.function")
    function.u_mul_e, function.sum = u_mul_e, sum
    me.function = function
    sys.modules["dgl"], sys.modules["dgl.function"] = me, function
    return True
