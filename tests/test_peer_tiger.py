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
