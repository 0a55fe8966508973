"""Table 3's LightGCN row (issue 10): cornac's LightGCN with ``dgl_lite`` in place of DGL, checked against the LightGCN
paper's propagation written densely here, and trained end to end on the Tiny fixture through the baseline adapter."""
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diger_lib import baseline_scoring as S, baseline_selection, baselines as B, data as D, dgl_lite
from test_baselines import FIXTURES, QUICK  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return D.split_leave_one_out(D.load_interactions(FIXTURES, "Tiny"), 20)


def _cornac_lightgcn():
    assert dgl_lite.install() is True and sys.modules["dgl"] is dgl_lite  # no real DGL here
    from cornac.models.lightgcn import lightgcn

    return lightgcn


def _dense_lightgcn(users, items, n_users, n_items, e_user, e_item, layers):
    """He et al. (SIGIR 2020) Eq. 7-9 with the normalised adjacency D^-1/2 A D^-1/2 of the bipartite graph built
    densely (duplicate pairs count twice, as multi-edges do); the final embedding is the mean of layers 0..L."""
    R = torch.zeros(n_users, n_items)
    for u, i in zip(users, items):
        R[u, i] += 1.0
    A = torch.zeros(n_users + n_items, n_users + n_items)
    A[:n_users, n_users:], A[n_users:, :n_users] = R, R.T
    deg = A.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    A_hat = inv[:, None] * A * inv[None, :]
    e = torch.cat([e_user, e_item])
    out, h = e, e
    for _ in range(layers):
        h = A_hat @ h
        out = out + h
    out = out / (layers + 1)
    return out[:n_users], out[n_users:]


def test_cornacs_lightgcn_on_dgl_lite_is_the_papers_propagation():
    """cornac's own construct_graph and Model (3 layers) on a graph with a duplicate pair, an isolated user and an
    isolated item: the embeddings and their gradients equal the dense formula's."""
    lightgcn = _cornac_lightgcn()
    users, items = np.array([0, 0, 1, 2, 2, 2, 0]), np.array([0, 1, 1, 0, 2, 3, 1])  # (0, 1) twice; user 3, item 4 alone
    g = lightgcn.construct_graph(SimpleNamespace(uir_tuple=(users, items, None)), 4, 5)
    torch.manual_seed(0)
    model = lightgcn.Model(g, 6, 3, 1e-4)
    u, v, _ = model(g)
    eu, ev = model.feature_dict["user"], model.feature_dict["item"]
    du, dv = _dense_lightgcn(users, items, 4, 5, eu, ev, 3)
    assert torch.allclose(u, du, atol=1e-6) and torch.allclose(v, dv, atol=1e-6)
    assert torch.allclose(u[3], eu[3] / 4) and torch.allclose(v[4], ev[4] / 4)  # no neighbours: layer 0 only
    w = torch.randn(4, 6), torch.randn(5, 6)
    got = torch.autograd.grad((u * w[0]).sum() + (v * w[1]).sum(), [eu, ev])
    want = torch.autograd.grad((du * w[0]).sum() + (dv * w[1]).sum(), [eu, ev])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))


def test_dgl_lite_refuses_what_it_does_not_implement():
    g = dgl_lite.heterograph({("a", "ab", "b"): ([0], [1])}, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="not within"):
        dgl_lite.heterograph({("a", "ab", "b"): ([0], [2])}, {"a": 1, "b": 2})
    with pytest.raises(NotImplementedError, match="only 'sum'"):
        g.multi_update_all({}, "mean")
    with pytest.raises(NotImplementedError, match="u_mul_e then sum"):
        g.multi_update_all({("a", "ab", "b"): (dgl_lite.u_mul_e("h", "w", "m"), dgl_lite.sum("x", "o"))}, "sum")
    with pytest.raises(TypeError, match="per type"):
        g.ndata["h"] = torch.zeros(1, 2)


def test_lightgcn_trains_through_the_adapter_with_our_selection(tiny):
    """A real grid point on the fixture: our selection runs at every check, the model ends at its best epoch's U and
    V, the fast scorer equals cornac's score, and the items keep our ids."""
    split = tiny
    logs: list[str] = []
    cfg = QUICK._replace(max_epochs=6, eval_every=2, patience=5)
    net, sel = B.fit("lightgcn", dict(learning_rate=5e-3, lambda_reg=1e-4), split, cfg, log=logs.append)
    assert [h["epoch"] for h in sel.history] == [2, 4, 6] and sum("valid N@10" in line for line in logs) == 3
    assert np.array_equal(net.U, sel.best_state[0]) and np.array_equal(net.V, sel.best_state[1])
    assert net.V.shape == (split.n_items, 64) and "early_stop" not in vars(net)
    s = split.test
    fast = S.scorer(net)(s.user, s.history, s.length)
    assert np.allclose(fast, S.reference_scorer(net)(s.user, s.history, s.length), atol=1e-4)
    assert S.evaluate(S.scorer(net), split.valid).metrics["N@10"] == pytest.approx(sel.best)


def test_lightgcn_ends_at_its_best_epoch_not_its_last(tiny, monkeypatch):
    """Validation scores that fall after the first check (patched in): the model keeps the first check's U and V."""
    snaps = []

    class Falling(B.Selection):
        def __init__(self, evaluate_valid, patience, snapshot):
            scores = iter([0.3, 0.2, 0.1])
            super().__init__(lambda: {"N@10": next(scores)}, patience, lambda: snaps.append(snapshot()) or snaps[-1])

    monkeypatch.setattr(baseline_selection, "Selection", Falling)
    cfg = QUICK._replace(max_epochs=6, eval_every=2, patience=5)
    net, sel = B.fit("lightgcn", dict(learning_rate=5e-3, lambda_reg=1e-4), tiny, cfg, log=lambda s: None)
    assert sel.best_epoch == 2 and len(snaps) == 1 and np.array_equal(net.U, snaps[0][0])
    assert np.array_equal(net.V, snaps[0][1]) and not np.allclose(net.V, net.V * 0)


def test_lightgcn_stops_by_patience(tiny):
    logs: list[str] = []
    cfg = QUICK._replace(max_epochs=40, eval_every=1, patience=1)
    _, sel = B.fit("lightgcn", dict(learning_rate=1e-3, lambda_reg=1e-3), tiny, cfg, log=logs.append)
    assert len(sel.history) < 40 and any("stopped" in line for line in logs)


def test_the_vectorised_bpr_sampler_draws_what_cornacs_loop_draws(tiny):
    """uniform_uij_iter against cornac's uij_iter on the same seed: the same (user, positive) batches in the same
    order; every negative is an item the user has no training pair with; and over many epochs the negatives of one
    user are uniform over those items (as cornac's rejection loop makes them)."""
    from diger_lib.baseline_lightgcn import uniform_uij_iter

    ours, theirs = B.interaction_dataset(tiny, 3), B.interaction_dataset(tiny, 3)
    pos = set(zip(*[a.tolist() for a in ours.uir_tuple[:2]]))
    for (u1, i1, j1), (u2, i2, j2) in zip(uniform_uij_iter(ours, 16, True), theirs.uij_iter(16, True), strict=True):
        assert np.array_equal(u1, u2) and np.array_equal(i1, i2) and j1.dtype == j2.dtype
        assert not any((u, j) in pos for u, j in zip(u1.tolist(), j1.tolist()))
    u0 = int(ours.uir_tuple[0][0])
    allowed = sorted(set(range(ours.num_items)) - {i for u, i in pos if u == u0})
    draws = np.concatenate([j[u == u0] for _ in range(300) for u, _, j in uniform_uij_iter(ours, 64)])
    counts = np.bincount(draws, minlength=ours.num_items)
    assert set(np.flatnonzero(counts)) <= set(allowed)
    expected = len(draws) / len(allowed)
    chi2 = ((counts[allowed] - expected) ** 2 / expected).sum()
    assert chi2 < len(allowed) + 6 * np.sqrt(2 * len(allowed))  # far inside a uniform draw's spread
    with pytest.raises(ValueError, match="only 'uniform'"):
        next(uniform_uij_iter(ours, 4, neg_sampling="popularity"))


def test_a_lightgcn_grid_keeps_its_model_for_a_rerun(tiny, tmp_path):
    """train_grid pickles the chosen LightGCN (U, V; no graph, no hook) in its cache; a rerun skips the point and
    scores with the kept model exactly as the first run did."""
    cfg = QUICK._replace(max_epochs=4, eval_every=2, patience=3)
    spec = "learning_rate:0.005;lambda_reg:0.0001"
    first = B.train_grid("lightgcn", tiny, cfg, log=lambda s: None, cache_dir=tmp_path, spec=spec)
    logs: list[str] = []
    again = B.train_grid("lightgcn", tiny, cfg, log=logs.append, cache_dir=tmp_path, spec=spec)
    assert any("skipped" in line for line in logs) and again.valid == first.valid
    assert np.array_equal(again.model.U, first.model.U) and again.grid == first.grid


def test_a_lightgcn_point_stopped_mid_fit_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    """A stop after epoch 4 of 8 (a 4-epoch fit that leaves its checkpoint), then the 8-epoch fit with it: epochs 5-8
    only, ending with the uninterrupted fit's U, V and validation checks (tables, Adam, the stream of the batches
    and negatives, and the selection are restored; the grid deletes the file once its point is done)."""
    params, cfg = dict(learning_rate=5e-3, lambda_reg=1e-4), QUICK._replace(max_epochs=8, eval_every=2, patience=10)
    ref, ref_sel = B.fit("lightgcn", params, tiny, cfg, log=lambda s: None)
    ckpt = tmp_path / "point.pt"
    B.fit("lightgcn", params, tiny, cfg._replace(max_epochs=4), log=lambda s: None, ckpt=ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["epoch"] == 4 and len(saved["selection"]["history"]) == 2
    logs: list[str] = []
    net, sel = B.fit("lightgcn", params, tiny, cfg, log=logs.append, ckpt=ckpt)
    assert any("resumed after epoch 4" in line for line in logs)
    assert [line.split(":")[0].strip() for line in logs if "valid N@10" in line] == ["epoch 6", "epoch 8"]
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(sel.history) == strip(ref_sel.history) and sel.best_epoch == ref_sel.best_epoch
    assert np.array_equal(net.U, ref.U) and np.array_equal(net.V, ref.V)
