"""The cornac adapter (issue 10, parts 1 and 4) on the Tiny fixture: what cornac is fed (the training part only), the
ranking against a hand-computed one, the fast scorers against cornac's own, the metrics keys of notebook 04, a real
cornac model end to end, the SASRec teacher export, and Table 3."""
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest

from diger_lib import baseline_scoring as S, baselines as B
from diger_lib import data as D
from diger_lib import metrics as M
from diger_lib import records, table3
from diger_lib.teachers import load_teacher

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
QUICK = B.FitConfig(max_epochs=2, eval_every=1, patience=2, seed=0)


@pytest.fixture(scope="module")
def tiny():
    seqs = D.load_interactions(FIXTURES, "Tiny")
    return seqs, D.split_leave_one_out(seqs, 20)


def _fed_sessions(dataset) -> dict[int, list[int]]:
    """Our user id -> the items of its cornac session, in cornac's order (what its iterators train on)."""
    users, items = dataset.uir_tuple[0], dataset.uir_tuple[1]
    inv_user = {v: k for k, v in dataset.uid_map.items()}
    return {inv_user[int(users[ix[0]])]: [int(items[i]) for i in ix] for ix in dataset.sessions.values()}


def test_cornac_is_fed_the_training_part_only(tiny):
    """Each user's session is exactly its sequence without the last two items: neither the validation nor the test
    target reaches cornac (positions, not item ids: an item may recur earlier in a sequence)."""
    seqs, split = tiny
    fed = _fed_sessions(B.sequential_dataset(split))
    assert fed == {u: s[:-2] for u, s in seqs.items()}
    pairs = B.interaction_dataset(split)
    got = {(u, int(i)) for u, i in zip(*[np.asarray(x) for x in pairs.uir_tuple[:2]])}
    inv = {v: k for k, v in pairs.uid_map.items()}
    assert {(inv[u], i) for u, i in got} == {(u, i) for u, s in seqs.items() for i in s[:-2]}
    assert list(pairs.iid_map.items()) == [(i, i) for i in range(split.n_items)]  # cornac's item i is our item i


def test_a_leak_of_the_test_item_is_caught(tiny, monkeypatch):
    """The mutation the test above must catch: the adapter feeding the sequence without only its last item."""
    seqs, split = tiny
    leaky = split.__class__(split.train, split.valid, split.test, split.n_items, [s[:-1] for s in seqs.values()])
    assert _fed_sessions(B.sequential_dataset(leaky)) != {u: s[:-2] for u, s in seqs.items()}


def test_ranking_equals_a_hand_computed_one(tiny):
    """A fake scorer with known scores: score(u, i) = -|i - 7u mod n| (ties: two items at each distance; the lower id
    wins). The adapter's top 10, ranks and metrics equal the ones computed by hand."""
    _, split = tiny
    n = split.n_items

    def fake(users, history, length):
        centre = (7 * users) % n
        return -np.abs(np.arange(n)[None, :] - centre[:, None]).astype(float)

    ev = S.evaluate(fake, split.test, topk=10, batch_size=7)
    for r in range(len(split.test)):
        c = (7 * int(split.test.user[r])) % n
        order = sorted(range(n), key=lambda i: (abs(i - c), i))[:10]
        assert ev.top[r].tolist() == order
        t = int(split.test.target[r])
        assert ev.ranks[r] == (order.index(t) if t in order else -1)
    hits = ev.ranks[ev.ranks >= 0]
    assert ev.metrics["R@10"] == pytest.approx(len(hits) / len(split.test))
    assert ev.metrics["N@10"] == pytest.approx(sum(1 / math.log2(h + 2) for h in hits) / len(split.test))
    assert ev.metrics == M.ranking_metrics(ev.top, split.test.target)


def test_seen_items_are_not_removed(tiny):
    """As in every other row, an item already in the history may be recommended (and hit)."""
    _, split = tiny
    first = split.test.history[:, 0]
    ev = S.evaluate(lambda u, h, n: np.eye(split.n_items)[h[:, 0]], split.test, topk=10)
    assert (ev.top[:, 0] == first).all()


def test_left_padding_keeps_the_last_items():
    hist = np.array([[5, 6, 7, -1, -1], [1, 2, 3, 4, 5]])
    out = S.left_padded(hist, np.array([3, 5]), 4, pad=99)
    assert out.tolist() == [[99, 5, 6, 7], [2, 3, 4, 5]]


def _notebook04_metric_keys() -> set[str]:
    book = nbformat.read(ROOT / "notebooks" / "04_train_recommender.ipynb", as_version=4)
    src = next(c.source for c in book.cells if "records.write_metrics(OUT, metrics)" in c.source)
    assert '**test, **{f"valid_{k}": v for k, v in valid.items()}' in src  # the keys below are notebook 04's
    return {"label", "dataset", "method", "best_epoch", "epochs_run", "n_test_users", "seed",
            "R@5", "R@10", "N@5", "N@10", "valid_R@5", "valid_R@10", "valid_N@5", "valid_N@10"}


def test_mf_trains_end_to_end_and_writes_notebook04s_keys(tiny, tmp_path):
    """The cheapest real cornac model (BPR, 2 epochs) on the fixture: fast scorer = cornac's score, metrics in
    range, and the record notebook 03b writes (its metrics cell) has every key notebook 04's has."""
    _, split = tiny
    trained = B.train_grid("mf", split, QUICK, first_only=True, log=lambda s: None)
    fast, ref = S.scorer(trained.model), S.reference_scorer(trained.model)
    s = split.test
    assert np.allclose(fast(s.user, s.history, s.length), ref(s.user, s.history, s.length), atol=1e-5)
    test = S.evaluate(fast, s)
    assert all(0 <= v <= 1 for v in test.metrics.values()) and len(trained.history) == 2
    book = nbformat.read(ROOT / "notebooks" / "03b_conventional_baselines.ipynb", as_version=4)
    cell = next(c.source for c in book.cells if "records.write_metrics(OUT, metrics)" in c.source)
    env = dict(B=B, trained=trained, test=test, kind=B.Baseline.MF, dataset="Tiny", split=split, seed=0,
               max_history=20, teacher_path="", cornac=__import__("cornac"), records=records, OUT=tmp_path,
               grid_table=__import__("pandas").DataFrame(trained.grid), time=__import__("time"), T0=0.0)
    exec(cell.split("from diger_lib import runs as R")[0], env)  # the notebook's own metrics record
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert _notebook04_metric_keys() <= set(written)
    records.write_ranks(tmp_path / "test_ranks.txt.gz", test.ranks)
    assert (records.read_ranks(tmp_path / "test_ranks.txt.gz") == test.ranks).all()


def test_sasrec_scorer_equals_cornac_and_exports_the_teacher(tiny, tmp_path):
    """SASRec (one epoch): the batched scorer equals cornac's per-user score, and its item embeddings are what
    UniGRec's teacher reader loads (row i = item i)."""
    _, split = tiny
    params = dict(loss="ce", embedding_dim=8, dropout=0.2)
    cfg = QUICK._replace(max_epochs=1)
    net, sel = B.fit("sasrec", params, split, cfg, log=lambda s: None)
    s = split.test
    fast = S.scorer(net)(s.user[:20], s.history[:20], s.length[:20])
    ref = S.reference_scorer(net)(s.user[:20], s.history[:20], s.length[:20])
    assert np.allclose(fast, ref, atol=1e-5)
    trained = B.Trained(net, params, sel.best_epoch, {"N@10": sel.best}, sel.history, [])
    B.export_teacher(trained, "Tiny", "sasrec", root=tmp_path)
    t = load_teacher("Tiny", "sasrec", split.n_items, root=tmp_path)
    assert t.emb.shape == (split.n_items, 8)
    assert np.allclose(t.emb.numpy(), net.model.item_emb.weight.detach().numpy()[:split.n_items])


def test_table3_sets_ours_beside_the_paper(tmp_path):
    run = tmp_path / f"{table3.STEM}__Beauty__sasrec__s2026"
    run.mkdir()
    records.write_metrics(run, {"dataset": "Beauty", "R@5": 0.03, "R@10": 0.05, "N@5": 0.02, "N@10": 0.025})
    df = table3.table3(table3.read_baseline_runs(tmp_path))
    row = df[(df["dataset"] == "Beauty") & (df["row"] == "SASRec")].iloc[0]
    assert row["R@10"] == 0.05 and row["paper_R@10"] == 0.0588 and row["runs"] == 1
    caser = df[(df["dataset"] == "Beauty") & (df["row"] == "Caser")].iloc[0]
    assert caser["source"].startswith("absent") and math.isnan(caser["R@10"])
    paths = table3.write_table3(df, tmp_path / "fig")
    assert "0.0588" in paths[1].read_text() and len(df) == 3 * (13 + 2)
    # the floors head each dataset, from the generative profile's runs
    gen = tmp_path / "gen" / "04_train_recommender__Beauty__markov1__s2026"
    gen.mkdir(parents=True)
    records.write_metrics(gen, {"dataset": "Beauty", "R@5": 0.05, "R@10": 0.066, "N@5": 0.038, "N@10": 0.043})
    from diger_lib import runs as R

    df = table3.table3(table3.read_baseline_runs(tmp_path), R.read_runs(tmp_path / "gen"))
    beauty = df[df["dataset"] == "Beauty"].reset_index(drop=True)
    assert list(beauty["row"][:2]) == ["Most popular (ours only)", "Markov-1 (ours only)"]
    assert beauty.loc[1, "R@10"] == 0.066 and math.isnan(beauty.loc[1, "paper_R@10"]) and "floor" in beauty.loc[1, "source"]


def test_every_table3_row_is_trained_or_explained():
    rows = table3.paper_tables()["diger"]["table3_baselines_R10_N10"]
    covered = set(B.TABLE3_ROW.values()) | set(B.GENERATIVE_ROWS) | set(B.ABSENT)
    assert set(rows) == covered


def test_topk_equals_a_stable_full_sort():
    """The partition-based top k equals the order of a stable sort of the whole row (ties to the lower id)."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(50, 40)).astype(np.float32)  # many ties
    full = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (S.topk_items(scores, 10) == full).all()
    scores = rng.normal(size=(20, 300))
    assert (S.topk_items(scores, 10) == np.argsort(-scores, axis=1, kind="stable")[:, :10]).all()


def test_a_rerun_skips_finished_grid_points(tiny, tmp_path):
    """The grid cache: a second call trains nothing and returns the same model (read back from best.pkl)."""
    _, split = tiny
    logs: list[str] = []
    first = B.train_grid("mf", split, QUICK, first_only=True, log=lambda s: None, cache_dir=tmp_path)
    again = B.train_grid("mf", split, QUICK, first_only=True, log=logs.append, cache_dir=tmp_path)
    assert any("skipped" in line for line in logs) and not any("epoch" in line and "valid" in line for line in logs)
    assert again.valid == first.valid and again.grid == first.grid and again.best_epoch == first.best_epoch
    # the same grid.csv too: its columns in one order, the grid's axes first, whether a point is fresh or read back
    assert [list(r) for r in again.grid] == [list(r) for r in first.grid]
    assert list(first.grid[0]) == [*B.grid_points("mf")[0], "best_epoch", "valid_N@10", "epochs_run"]
    logs.clear()
    B.train_grid("mf", split, QUICK._replace(seed=1), first_only=True, log=logs.append, cache_dir=tmp_path)
    assert any("valid N@10" in line for line in logs)  # other settings train afresh


def test_sasrec_bce1_is_sasrecs_own_loss():
    """Each row's positive (its diagonal) against one of the sampled negative columns, -log s(pos) - log(1 - s(neg)):
    not cornac's "bce", which averages over every column of the row."""
    import torch

    scores = torch.randn(4, 4 + 6, requires_grad=True)
    torch.manual_seed(0)
    loss = B.sasrec_bce1_loss(scores)
    torch.manual_seed(0)
    neg = torch.randint(4, 10, (4,))
    rows = torch.arange(4)
    pos_p, neg_p = torch.sigmoid(scores[rows, rows]), torch.sigmoid(scores[rows, neg])
    assert torch.allclose(loss, -(torch.log(pos_p).mean() + torch.log(1 - neg_p).mean()), atol=1e-6)
    loss.backward()
    touched = (scores.grad != 0).sum(dim=1)
    assert touched.tolist() == [2, 2, 2, 2]  # one positive and one negative per row, nothing else
    assert (scores.grad[rows, rows] < 0).all()  # raises each positive
    with pytest.raises(ValueError, match="needs sampled negatives"):
        B.sasrec_bce1_loss(torch.zeros(4, 4))


def test_sasrec_bce1_trains_cornacs_sasrec_with_it(tiny, monkeypatch):
    """The grid's "bce1" point: cornac's SASRec with uniform negatives (sample_alpha 0), and its fit() calls our loss
    at every step; "ce" points keep cornac's loss and its popularity-sampled negatives."""
    _, split = tiny
    net = B._make_sequential(B.Baseline.SASREC, dict(loss="bce1", embedding_dim=8, dropout=0.2), 20, 1, 1, 0)
    assert net.loss == B.SASREC_BCE1 and net.sample_alpha == 0.0
    ce = B._make_sequential(B.Baseline.SASREC, dict(loss="ce", embedding_dim=8, dropout=0.2), 20, 1, 1, 0)
    assert ce.loss == "ce" and ce.sample_alpha == 0.5
    calls, orig = [], B.sasrec_bce1_loss
    monkeypatch.setattr(B, "sasrec_bce1_loss", lambda *a, **k: calls.append(1) or orig(*a, **k))
    net, sel = B.fit("sasrec", dict(loss="bce1", embedding_dim=8, dropout=0.2), split, QUICK._replace(max_epochs=1),
                     log=lambda s: None)
    assert calls and net.loss == B.SASREC_BCE1 and sel.history


def test_a_restricted_grid_keeps_only_the_named_values():
    """grid="KEY:V[,V];KEY:V" fixes axes of the grid: SASRec with loss ce and dropout 0.2 leaves the two sizes; a
    key or value outside the grid is an error that names the choices."""
    assert len(B.grid_points("sasrec")) == len(B.grid_points("sasrec", spec="full")) == 8
    points = B.grid_points("sasrec", spec="loss:ce; dropout:0.2")
    assert points == [dict(loss="ce", embedding_dim=64, dropout=0.2), dict(loss="ce", embedding_dim=128, dropout=0.2)]
    assert B.grid_points("mf", spec="k:128;learning_rate:0.01,0.05") == [
        p for p in B.grid_points("mf") if p["k"] == 128]
    with pytest.raises(ValueError, match="KEY one of loss, embedding_dim, dropout"):
        B.grid_points("sasrec", spec="lr:0.1")
    with pytest.raises(ValueError, match="dropout has no value 0.3; its grid values are 0.2, 0.5"):
        B.grid_points("sasrec", spec="dropout:0.3")


def test_a_restricted_grid_refits_its_choice_when_the_kept_model_is_another_points(tiny, tmp_path):
    """best.pkl holds the best model of the points trained so far. A restricted grid whose choice is not that point
    must not test the kept model under the wrong name: it fits its choice again (the same model, seeded)."""
    _, split = tiny
    a, b = "k:64;lambda_reg:0.001;learning_rate:0.05", "k:128;lambda_reg:0.001;learning_rate:0.05"
    first = B.train_grid("mf", split, QUICK, log=lambda s: None, cache_dir=tmp_path, spec=a)
    B.train_grid("mf", split, QUICK, log=lambda s: None, cache_dir=tmp_path, spec=b)  # best.pkl is now b's
    logs: list[str] = []
    again = B.train_grid("mf", split, QUICK, log=logs.append, cache_dir=tmp_path, spec=a)
    assert any("fitting this one again" in line for line in logs)
    assert again.params == first.params and again.valid == first.valid
    logs.clear()
    B.train_grid("mf", split, QUICK, log=logs.append, cache_dir=tmp_path, spec=b)  # best.pkl is still b's: read back
    assert any("skipped" in line for line in logs) and not any("again" in line for line in logs)


def test_bert4rec_batched_scorer_equals_cornac(tiny):
    """BERT4Rec (Cloze, one epoch): the batched scorer equals cornac's per-user score, with 20 history items read."""
    _, split = tiny
    net, _ = B.fit("bert4rec", dict(embedding_dim=8, dropout=0.2), split, QUICK._replace(max_epochs=1),
                   log=lambda s: None)
    assert net.max_len == 21
    s = split.test
    fast = S.scorer(net)(s.user[:20], s.history[:20], s.length[:20])
    ref = S.reference_scorer(net)(s.user[:20], s.history[:20], s.length[:20])
    assert fast.shape == (20, split.n_items) and np.allclose(fast, ref, atol=1e-5)


def test_the_baselines_profiles_grid_restrictions_name_real_grid_values():
    """A restriction in profiles._BASELINE_GRIDS is parsed when its notebook starts, hours into a batch: parse it now."""
    from diger_lib.profiles import steps_for

    restricted = [(name, p) for _, name, p in steps_for("baselines") if "grid" in p]
    assert restricted
    for name, p in restricted:
        assert 0 < len(B.grid_points(p["model"], spec=p["grid"])) < len(B.grid_points(p["model"])), name


def test_cli_table3_rebuilds_the_table_from_committed_runs(tmp_path, capsys):
    """`python -m diger_lib.cli table3`: the same table notebook 03b writes, after generative runs land."""
    from diger_lib import cli

    base = tmp_path / "runs" / "baselines"
    run = base / f"{table3.STEM}__Beauty__mf__s2026"
    run.mkdir(parents=True)
    records.write_metrics(run, {"dataset": "Beauty", "R@5": 0.01, "R@10": 0.02, "N@5": 0.01, "N@10": 0.012})
    gen = tmp_path / "runs" / "gen" / "04_train_recommender__Beauty__markov1__s2026"
    gen.mkdir(parents=True)
    records.write_metrics(gen, {"dataset": "Beauty", "R@5": 0.05, "R@10": 0.066, "N@5": 0.038, "N@10": 0.043})
    assert cli.main(["table3", "--baselines", str(base), "--generative", "gen", "--figures", str(tmp_path / "fig")]) == 0
    md = (tmp_path / "fig" / "table3.md").read_text()
    assert "(1 runs of notebook 03b, profile baselines)" in md and "from profile gen (1 runs)" in md
    assert "| Beauty | Markov-1 (ours only) |  | 0.0660 |" in md and "| Beauty | MF | 0.0474 | 0.0200 |" in md
    assert cli.main(["table3", "--baselines", str(tmp_path / "nowhere")]) == 1
    assert "not a folder of notebook-03b runs" in capsys.readouterr().err


def test_a_new_machine_trains_only_the_grid_points_missing_from_the_record(tiny, tmp_path):
    """The grid's rows are also written to ``record`` (a file git keeps). A new machine (no cache folder) reads them,
    trains only the points missing there, and fits the chosen point again for its model: the same choice, the same
    validation metrics (seeded) and the same grid rows as the machine that trained them all."""
    _, split = tiny
    record = tmp_path / "runs" / "grid_points" / "Tiny__mf_s2026.json"
    a, ab = "k:64;lambda_reg:0.001;learning_rate:0.05", "k:64,128;lambda_reg:0.001;learning_rate:0.05"
    full = B.train_grid("mf", split, QUICK, log=lambda s: None, cache_dir=tmp_path / "old", spec=ab, record=record)
    saved = json.loads(record.read_text())
    assert [p["params"]["k"] for p in saved["points"]] == [64, 128] and "best_params" not in saved
    logs: list[str] = []
    new = B.train_grid("mf", split, QUICK, log=logs.append, cache_dir=tmp_path / "new", spec=ab, record=record)
    assert sum("skipped" in line for line in logs) == 2 and any("fitting this one again" in line for line in logs)
    assert new.params == full.params and new.valid == full.valid and new.grid == full.grid
    # the record holds one point and the new machine's cache another: both are read, nothing is trained again
    record.write_text(json.dumps(dict(saved, points=saved["points"][1:])))
    B.train_grid("mf", split, QUICK, log=lambda s: None, cache_dir=tmp_path / "part", spec=a)
    logs.clear()
    both = B.train_grid("mf", split, QUICK, log=logs.append, cache_dir=tmp_path / "part", spec=ab, record=record)
    assert sum("skipped" in line for line in logs) == 2 and both.grid == full.grid
    assert both.params == full.params and both.valid == full.valid
    # the point read from the cache folder alone is written back: the record in git is complete again
    kept = json.loads(record.read_text())["points"]  # (its history's timings are the cache run's own)
    assert [p["row"] for p in kept] == [p["row"] for p in saved["points"]]
    # other settings: the record is not used
    logs.clear()
    B.train_grid("mf", split, QUICK._replace(seed=1), log=logs.append, cache_dir=tmp_path / "s1", spec=a, record=record)
    assert not any("skipped" in line for line in logs)


@pytest.mark.parametrize("kind,params", [("sasrec", dict(loss="bce1", embedding_dim=8, dropout=0.2)),
                                         ("bert4rec", dict(embedding_dim=8, dropout=0.2))])
def test_a_grid_point_stopped_mid_fit_resumes_to_the_uninterrupted_result(tiny, tmp_path, kind, params):
    """A stop after epoch 2 of 4 (here: a fit of 2 epochs that leaves its checkpoint), then the fit of 4 epochs with the
    same checkpoint: it runs epochs 3-4 only and ends where one uninterrupted 4-epoch fit ends (weights, every
    validation check), since model, optimizer, both random streams and the selection are restored."""
    import torch

    _, split = tiny
    cfg = QUICK._replace(max_epochs=4, patience=10)
    ref, ref_sel = B.fit(kind, params, split, cfg, log=lambda s: None)
    ckpt = tmp_path / "point.pt"
    B.fit(kind, params, split, cfg._replace(max_epochs=2), log=lambda s: None, ckpt=ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["epoch"] == 2 and len(saved["selection"]["history"]) == 2
    logs: list[str] = []
    net, sel = B.fit(kind, params, split, cfg, log=logs.append, ckpt=ckpt)
    assert any("resumed after epoch 2" in line for line in logs)
    assert sum("valid N@10" in line for line in logs) == 2  # epochs 3 and 4 only
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(sel.history) == strip(ref_sel.history) and sel.best_epoch == ref_sel.best_epoch
    for (k, a), b in zip(net.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_train_grid_keeps_a_checkpoint_only_while_its_point_runs(tiny, tmp_path):
    _, split = tiny
    B.train_grid("sasrec", split, QUICK, first_only=True, log=lambda s: None, cache_dir=tmp_path)
    assert (tmp_path / "grid.json").is_file() and not list(tmp_path.glob("point_*.pt"))
