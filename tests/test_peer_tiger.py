"""The peer TIGER adapter (cornac's TIGER on our split, issue 10 part 2) on the Tiny fixture, end to end in seconds:
what cornac trains on (our training samples only, the Two-Stage's epoch subsets, the budget exactly), what it is
scored on (every item of the catalogue, the held-out last item), its beam scores against its exact ones, and the
schedule over the budget."""
import math

import numpy as np
import pytest
import torch

from diger_lib import baseline_scoring as S, baselines as B
from diger_lib import data as D
from diger_lib import metrics as M
from diger_lib import peer_tiger as P
from diger_lib.config import ConfigError
from diger_lib.training import epoch_subset

FIXTURES = "tests/fixtures"
TINY = dict(epochs=2, samples_per_epoch=96, batch_size=16, warmup_steps=2, n_encoder_layers=1, n_decoder_layers=1,
            d_model=16, d_ff=32, n_heads=2, d_kv=8, codebook_size=8, max_eval_users=30, seed=0)


@pytest.fixture(scope="module")
def tiny():
    seqs = D.load_interactions(FIXTURES, "Tiny")
    split = D.split_leave_one_out(seqs, 20)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(split.n_items, 12)).astype(np.float32)
    codes = rng.integers(0, 8, size=(split.n_items, 3))
    return seqs, split, emb, codes


@pytest.fixture(scope="module")
def trained(tiny):
    """One run with notebook 03-style codes (ids="ours"), recording every batch cornac trains on."""
    _, split, emb, codes = tiny
    cfg = P.PeerConfig(**TINY, ids="ours")
    fed: list = []
    model, sel, timing = P.fit(split, emb, cfg, codes, log=lambda s: None, record=fed)
    return cfg, model, sel, timing, fed


def _training_pairs(seqs, max_history=20) -> set:
    """Every (user, history, next item) with the next item inside the training part s[:-2]."""
    return {(u, tuple(s[:t][-max_history:]), s[t]) for u, s in seqs.items() for t in range(1, len(s) - 2)}


def _fed_pairs(split, fed) -> set:
    pad = split.n_items
    return {(int(u), tuple(int(i) for i in h if i != pad), int(y))
            for _, users, hist, target in fed for u, h, y in zip(users, hist, target)}


def test_cornac_trains_on_the_training_part_only(tiny, trained):
    """Every (history, next item) cornac steps on has its next item in s[:-2]: neither the validation nor the test
    item is ever a target or in a history; the item features it reads are ours, row i = item i."""
    seqs, split, emb, _ = tiny
    _, model, _, _, fed = trained
    assert _fed_pairs(split, fed) <= _training_pairs(seqs)
    assert np.array_equal(model.train_set.item_feature.features, emb)
    sessions = {int(u): [] for u in split.valid.user}
    for u, _, i, _ in B.training_rows(split):
        sessions[u].append(i)
    assert sessions == {u: s[:-2] for u, s in seqs.items()}


def test_a_leak_of_the_held_out_items_is_caught(tiny):
    """The mutation the check above must catch: a split whose training samples include the validation and test ones."""
    seqs, split, _, _ = tiny
    leaky_train = D.Samples(*[np.concatenate([a, b, c]) for a, b, c in zip(split.train, split.valid, split.test)])
    leaky = D.Split(leaky_train, split.valid, split.test, split.n_items, split.train_sequences)
    cfg = P.PeerConfig(**dict(TINY, samples_per_epoch=0), ids="ours")
    fed: list = []
    list(P._Stream(leaky, cfg, fed)(None, split.n_items, 16, 20))
    assert not _fed_pairs(split, fed) <= _training_pairs(seqs)


def test_the_budget_is_the_two_stages_samples(tiny, trained):
    """epochs x samples_per_epoch samples, each epoch exactly the subset our Two-Stage draws (training.epoch_subset),
    each sample once per epoch, in batches of cornac's batch size."""
    _, split, _, _ = tiny
    cfg, _, _, timing, fed = trained
    assert timing.samples_seen == cfg.epochs * cfg.samples_per_epoch
    per_epoch = math.ceil(cfg.samples_per_epoch / cfg.batch_size)
    assert timing.steps == len(fed) == cfg.epochs * per_epoch
    for e in range(cfg.epochs):
        rows = np.concatenate([r for r, _, _, _ in fed[e * per_epoch:(e + 1) * per_epoch]])
        assert np.array_equal(np.sort(rows), epoch_subset(len(split.train), cfg.samples_per_epoch, cfg.seed, e + 1))
    assert max(len(r) for r, _, _, _ in fed) == cfg.batch_size


def test_full_ranking_on_the_held_out_test_item(tiny, trained):
    """Scores cover the whole catalogue (items never trained on included), the target is each user's last item, and
    the ranks are those of our metric code over cornac's scores."""
    seqs, split, _, _ = tiny
    _, model, _, _, _ = trained
    s = split.test
    scores = S.reference_scorer(model)(s.user, s.history, s.length)
    assert scores.shape == (len(s), split.n_items) and len(model.sid_to_item) == split.n_items
    trained_items = {i for seq in split.train_sequences for i in seq}
    unseen = sorted(set(range(split.n_items)) - trained_items)
    assert all(tuple(model.sid_table[i]) in model.sid_to_item for i in unseen)
    assert [int(t) for t in s.target] == [seqs[int(u)][-1] for u in s.user]
    assert all((row > -1e9).sum() >= 10 for row in scores)  # at least top-k items come off the beams
    ev = S.evaluate(S.reference_scorer(model), s, topk=10)
    for r in range(len(s)):
        order = sorted(range(split.n_items), key=lambda i: (-scores[r, i], i))[:10]
        assert ev.top[r].tolist() == order
    assert (ev.ranks == M.target_ranks(ev.top, s.target)).all()
    assert ev.metrics == M.ranking_metrics(ev.top, s.target)


def test_beam_scores_are_cornacs_exact_log_likelihoods(tiny, trained):
    """cornac's two scoring modes from one model: every item its beam search returns carries the item's exact
    teacher-forced log-likelihood."""
    _, split, _, _ = tiny
    _, model, _, _, _ = trained
    s = split.test
    for r in range(10):
        hist = [int(i) for i in s.history[r, :s.length[r]]]
        model.scoring = "beam"
        beam = model.score(0, hist)
        model.scoring = "exact"
        exact = model.score(0, hist)
        on = beam > -1e9
        assert on.sum() >= 10 and np.allclose(beam[on], exact[on], atol=1e-4)
        assert beam[on].max() <= exact.max() + 1e-4
    model.scoring = "beam"


def test_cornacs_own_tokenizer_on_our_embeddings(tiny):
    """ids="cornac": cornac trains its RQ-VAE on our embeddings; every item gets a unique ID (collision level)."""
    _, split, emb, _ = tiny
    cfg = P.PeerConfig(**dict(TINY, epochs=1, samples_per_epoch=32), rqvae_epochs=2)
    run = P.run(split, emb, cfg, log=lambda s: None, max_test_users=20)
    assert len({tuple(r) for r in run.model.sid_table}) == split.n_items
    assert run.timing.tokenizer_seconds > 0 and run.timing.samples_seen == 32
    rec = P.record(run, cfg, len(split.test))
    assert {"R@5", "R@10", "N@5", "N@10", "valid_N@10", "train_samples_per_s", "decode_users_per_s"} <= set(rec)
    assert rec["n_test_users"] == 20 and rec["all_test_users"] is False
    with pytest.raises(ValueError, match="takes no codes"):
        P.fit(split, emb, cfg, codes=np.zeros((split.n_items, 3), dtype=int))


def test_cosine_schedule_spans_the_budget():
    cfg = P.PeerConfig(**TINY)
    m = P._PeerTIGER(codes=None, total_steps=100, on_validate=lambda: 0.0, lr_schedule="cosine", warmup_steps=10,
                     learning_rate=1.0)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = m._make_lr_scheduler(torch, opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[99] < 1e-3
    assert cfg.steps_per_epoch(10_000) == math.ceil(96 / 16)


def test_config_is_validated():
    with pytest.raises(ValueError):
        P.PeerConfig(ids="mine")
    with pytest.raises(ConfigError, match="beam_size"):
        P.PeerConfig(beam_size=5)


class _Killed(Exception):
    """Stands for the session's end killing the run."""


class _KillAfter(list):
    """A ``record`` list that raises once cornac has stepped on ``n`` batches: a stop in the middle of an epoch."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def append(self, batch):
        if len(self) >= self.n:
            raise _Killed
        super().append(batch)


def _no_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("ids, kill_after", [("ours", 14), ("cornac", 2)])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(tiny, tmp_path, ids, kill_after):
    """Stopped in epoch 3 (checkpoint of epoch 2) or in epoch 1 (checkpoint of the tokenizer's codes only), the run
    started again from its checkpoint ends with the uninterrupted run's validation history, best epoch, weights, IDs
    and test ranks (the best epoch's weights come from before the stop: cornac's own copy covers only its last call)."""
    _, split, emb, codes = tiny
    cfg = P.PeerConfig(**dict(TINY, epochs=3), ids=ids, rqvae_epochs=3)
    c = codes if ids == "ours" else None
    ref_ckpt = P.checkpoint_file(tmp_path / "ref", cfg, emb, c)
    ref = P.run(split, emb, cfg, c, log=lambda s: None, max_test_users=40, ckpt=ref_ckpt)
    ckpt = P.checkpoint_file(tmp_path / "run", cfg, emb, c)
    with pytest.raises(_Killed):
        P.run(split, emb, cfg, c, log=lambda s: None, max_test_users=40, ckpt=ckpt, record=_KillAfter(kill_after))
    assert ckpt.is_file()
    before = torch.load(ckpt, weights_only=False)["seconds"]
    logs: list = []
    res = P.run(split, emb, cfg, c, log=logs.append, max_test_users=40, ckpt=ckpt)
    done = kill_after // cfg.steps_per_epoch(len(split.train))
    assert any(f"resuming after epoch {done} of 3" in line for line in logs)
    assert _no_seconds(res.history) == _no_seconds(ref.history) and res.best_epoch == ref.best_epoch
    assert np.array_equal(res.model.sid_table, ref.model.sid_table)
    got, want = res.model.model.state_dict(), ref.model.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert np.array_equal(res.test.ranks, ref.test.ranks) and res.test.metrics == ref.test.metrics
    assert res.timing.samples_seen == ref.timing.samples_seen and res.timing.resumes == 1 and ref.timing.resumes == 0
    assert res.timing.valid_seconds > before["valid"] and res.timing.tokenizer_seconds == before["tokenizer"]
    last, ref_last = (torch.load(f, weights_only=False) for f in (ckpt, ref_ckpt))  # the last epoch's state
    assert all(torch.equal(last["model"][k], ref_last["model"][k]) for k in ref_last["model"])
    assert last["epoch"] == 3 and last["stream"][1:3] == ref_last["stream"][1:3]
    P.clear_checkpoint(ckpt)
    assert not list((tmp_path / "run").iterdir())


def test_the_checkpoint_names_its_configuration(tiny, tmp_path):
    """Another configuration, other embeddings or other codes never read a run's checkpoint."""
    _, split, emb, codes = tiny
    cfg = P.PeerConfig(**TINY, ids="ours")
    f = P.checkpoint_file(tmp_path, cfg, emb, codes)
    assert f == P.checkpoint_file(tmp_path, P.PeerConfig(**TINY, ids="ours"), emb.copy(), codes.copy())
    assert f != P.checkpoint_file(tmp_path, P.PeerConfig(**dict(TINY, lr=1e-3), ids="ours"), emb, codes)
    assert f != P.checkpoint_file(tmp_path, cfg, emb + 1, codes)
    assert f != P.checkpoint_file(tmp_path, cfg, emb, codes[::-1])


def test_test_decoding_resumes_chunk_by_chunk(tiny, tmp_path):
    """``evaluate_resumable``: stopped after two chunks, it decodes only the rest and equals ``evaluate``; a partial
    file of another model (tag) is not used."""
    _, split, _, _ = tiny
    s, n_items, calls = split.test, split.n_items, []

    def score(users, history, length, fail_at=None):
        calls.extend(int(u) for u in users)
        if fail_at is not None and len(calls) > fail_at:
            raise _Killed
        return np.stack([np.random.default_rng(int(u)).normal(size=n_items) for u in users])

    want = S.evaluate(score, s, topk=10)
    part = tmp_path / "t.npz"
    calls.clear()
    with pytest.raises(_Killed):
        S.evaluate_resumable(lambda *a: score(*a, fail_at=25), s, 10, part, tag="m1", chunk=10, batch_size=10)
    calls.clear()
    got, seconds = S.evaluate_resumable(score, s, 10, part, tag="m1", chunk=10, batch_size=10)
    assert calls == [int(u) for u in s.user[20:]] and seconds > 0
    assert np.array_equal(got.top, want.top) and np.array_equal(got.ranks, want.ranks) and got.metrics == want.metrics
    calls.clear()
    S.evaluate_resumable(score, s, 10, part, tag="m2", chunk=10)
    assert calls == [int(u) for u in s.user]
