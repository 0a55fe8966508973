"""The switches of the DIGER diagnosis study (labels, coupling, tokenizer parts, FrqUD reading, W init, LR schedule,
warm start), the per-epoch diagnostics and the paired bootstrap. Each test fails if its switch stops working."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diger_lib import metrics as M
from diger_lib.assignment import assign_level
from diger_lib.config import AssignConfig, ConfigError, JointConfig, LRSchedule, TrainConfig
from diger_lib.diagnostics import sigma_star
from diger_lib.training import lr_lambda

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import build  # noqa: E402
from test_joint import _setup, reaches_tokenizer  # noqa: E402

LOUD = dict(decay="none")  # noise on every logit; the tests raise its scale to make sampled codes random


def _inputs(tr, n=64):
    return tr._step_inputs(np.arange(len(tr.split.train))[:n], tr.split.train)


def _loud(tr, scale=100.0):
    tr.joint.noise_scale = lambda: scale  # Gumbel noise far above every logit gap
    return tr


def test_deterministic_labels_read_the_epoch_table(tmp_path):
    tr = _loud(build("diger", tmp_path / "d", joint={"labels": "deterministic"}, **LOUD))
    input_ids, mask, labels, _, _, sid, _ = _inputs(tr)
    assert (sid.codes != sid.det_codes).any()  # the noise does re-draw codes ...
    assert (sid.train_codes == sid.det_codes).all()  # ... but the recommender reads the table (= det codes here)
    table_tokens = tr.joint.vocab.codes_to_tokens(tr.joint.table)
    targets = torch.from_numpy(tr.split.train.target[:64])
    assert torch.equal(labels.cpu(), table_tokens[targets])
    tr2 = _loud(build("diger", tmp_path / "s", **LOUD))  # default: the sampled codes
    _, _, labels2, _, _, sid2, _ = _inputs(tr2)
    assert not torch.equal(labels2.cpu(), tr2.joint.vocab.codes_to_tokens(tr2.joint.table)[targets])


def test_agreement_counts_follow_the_label_source(tmp_path):
    det = _loud(build("diger", tmp_path / "d", joint={"labels": "deterministic"}, **LOUD))
    a = _inputs(det)[-1]
    assert a[0] == a[1] and a[2] == a[3]  # table == current det codes before any step
    smp = _loud(build("diger", tmp_path / "s", **LOUD))
    b = _inputs(smp)[-1]
    assert b[0] < b[1] and b[2] < b[3]


def test_coupling_none_cuts_lgen_from_the_tokenizer(tmp_path):
    assert reaches_tokenizer(_setup("diger", tmp_path))
    tr = _setup("diger", tmp_path)
    tr.joint.joint = JointConfig(coupling="none")
    _, _, _, input_extra, dec_extra, sid, _ = _inputs(tr)
    assert input_extra is None and dec_extra is None and sid.extras is None
    table = tr.model.embed_weight()
    assert torch.equal(tr.joint.token_table(table), table)  # inference adds nothing either
    tr.joint.joint = JointConfig()
    assert not torch.equal(tr.joint.token_table(table), table)


def _tok_state(tr):
    rq = tr.joint.rqvae
    return [p.detach().clone() for p in rq.encoder.parameters()], rq.codebooks.detach().clone()


@pytest.mark.parametrize("which, enc_moves, last_moves, cb_moves", [
    ("all", True, True, True), ("codebooks", False, False, True), ("last_layer", False, True, True),
    ("none", False, False, False)])
def test_tokenizer_train_moves_only_the_chosen_parts(which, enc_moves, last_moves, cb_moves, tmp_path):
    tr = build("diger", tmp_path, epochs=1, joint={"tokenizer_train": which}, train={"tokenizer_lr": 1e-2})
    enc0, cb0 = _tok_state(tr)
    tr.train_epoch(1)
    enc1, cb1 = _tok_state(tr)
    moved = [not torch.equal(a, b) for a, b in zip(enc0, enc1)]
    assert all(moved[:-2]) == enc_moves and any(moved[:-2]) == enc_moves  # all but the last Linear (weight, bias)
    assert all(moved[-2:]) == last_moves
    assert (not torch.equal(cb0, cb1)) == cb_moves


def test_tokenizer_lr_zero_freezes_the_tokenizer(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer_lr"):
        TrainConfig(tokenizer_lr=-1e-6)
    res = build("diger", tmp_path, epochs=2, train={"tokenizer_lr": 0.0}).fit()
    assert all(r["drift_cum"] == 0.0 and r["tok_delta_encoder"] == 0.0 and r["tok_delta_codebooks"] == 0.0
               for r in res.history)


def test_frqud_per_item_noises_hot_items_only():
    torch.manual_seed(0)
    r, cb = torch.randn(40, 4), torch.randn(8, 4)
    rows = torch.arange(40) % 2 == 0
    g = torch.Generator().manual_seed(0)
    a = assign_level(r, cb, AssignConfig(), noise_scale=100.0, row_mask=rows, generator=g)
    clean = assign_level(r, cb, AssignConfig(noise="none"))
    assert torch.equal(a.codes[~rows], clean.codes[~rows])  # cold items: deterministic codes, clean soft probs
    torch.testing.assert_close(a.soft_probs[~rows], clean.soft_probs[~rows])
    assert (a.codes[rows] != clean.codes[rows]).any()
    with pytest.raises(ValueError, match="row_mask"):
        assign_level(r, cb, AssignConfig(), row_mask=rows[:5])


def test_frqud_per_item_uses_a_per_step_ema_of_level1_codes(tmp_path):
    tr = build("diger", tmp_path, decay="frqud", assign={"frqud_mode": "per_item", "frqud_momentum": 0.5})
    assert tr.joint.per_item and tr.joint.hot_masks() is None
    before = tr.joint.freq.freq.clone()
    _inputs(tr)
    assert not torch.equal(before, tr.joint.freq.freq)  # updated within the step, not at the epoch's end
    det = tr.joint.rqvae.deterministic_codes(tr.joint.item_emb)
    rows = tr.joint.hot_items(tr.joint.item_emb, None)  # folds every item in, then decides per item
    hot_codes = tr.joint.freq.hot_masks(tr.joint.assign.frqud_r)[0]
    assert hot_codes.any() and torch.equal(rows, hot_codes[det[:, 0]])
    assert rows.any() and (~rows).any()


def test_zero_w_starts_exactly_as_two_stage(tmp_path):
    tr = build("diger", tmp_path, joint={"proj_init": "zero", "labels": "deterministic"})
    assert all((p.weight == 0).all() for p in tr.joint.proj)
    input_ids, mask, labels, input_extra, dec_extra, _, _ = _inputs(tr)
    assert input_extra.abs().sum() == 0
    tr.model.eval()
    a = tr.model(input_ids, mask, labels, input_extra=input_extra, decoder_extra=dec_extra).loss
    b = tr.model(input_ids, mask, labels).loss  # Two-Stage's forward: the same tokens, no additions
    assert float(a.detach()) == float(b.detach())


def test_warmup_cosine_schedule():
    f = lr_lambda(TrainConfig(lr_schedule="warmup_cosine", warmup_steps=10), total_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(59) == pytest.approx(0.5, abs=0.02) and f(109) == pytest.approx(0.0, abs=1e-6)
    c = lr_lambda(TrainConfig(warmup_steps=10), total_steps=110)
    assert c(0) == pytest.approx(0.1) and c(109) == 1.0
    assert TrainConfig(lr_schedule="warmup_cosine").lr_schedule is LRSchedule.WARMUP_COSINE
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosin")


def test_warm_start_loads_the_recommender(tmp_path):
    first = build("two_stage", tmp_path / "a", epochs=1)
    first.fit()
    state = torch.load(tmp_path / "a" / "best.pt", weights_only=False)["model"]
    tr = build("diger", tmp_path / "b", init_state=state, joint={"proj_init": "zero"})
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_history_has_the_diagnostics(tmp_path):
    res = build("diger", tmp_path, epochs=2, decay="sdud", train={"tokenizer_lr": 1e-2}).fit()
    h = res.history
    for key in ("drift_inc_l0", "drift_cum_l1", "agreement_input", "agreement_label", "tok_delta_encoder",
                "tok_delta_codebooks", "logit_gap_l0", "sigma", "sigma_star", "max_conflict",
                "probe_loss_old_ids", "probe_loss_new_ids"):
        assert key in h[-1], key
    assert h[-1]["tok_delta_encoder"] > 0 and h[-1]["logit_gap_l0"] > 0
    assert h[-1]["sigma_star"] == pytest.approx(sigma_star(h[-1]["loss_gen"], 1.4))
    assert np.isnan(h[0]["probe_loss_old_ids"]) and h[-1]["probe_loss_old_ids"] > 0
    assert res.test_ranks is not None and len(res.test_ranks) == len(build("two_stage", tmp_path / "x").split.test)
    r10 = float(np.mean((res.test_ranks >= 0) & (res.test_ranks < 10)))
    assert r10 == pytest.approx(res.test["R@10"])


def test_sigma_star():
    assert sigma_star(4.0, 1.4) == pytest.approx(0.6) and sigma_star(1.0, 1.4) == 0.0


def test_minmax_sim_keeps_the_argmax_in_unit_range():
    torch.manual_seed(0)
    r, cb = torch.randn(20, 4), torch.randn(8, 4)
    a = assign_level(r, cb, AssignConfig(noise="none"))
    b = assign_level(r, cb, AssignConfig(noise="none", sim="minmax"))
    assert torch.equal(a.codes, b.codes)
    assert b.logits.min() >= -1 - 1e-5 and b.logits.max() <= 1 + 1e-5


def test_per_user_metrics_and_paired_bootstrap():
    rng = np.random.default_rng(0)
    top = rng.integers(0, 50, size=(400, 10))
    tgt = rng.integers(0, 50, size=400)
    ranks = M.target_ranks(top, tgt)
    ref = M.ranking_metrics(top, tgt)
    for k in ("R@5", "R@10", "N@5", "N@10"):
        assert M.per_user_metric(ranks, k).mean() == pytest.approx(ref[k])
    same = M.paired_bootstrap(ranks, ranks, "N@10", n_boot=200)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0
    better = np.where(ranks < 0, 0, ranks)  # every miss becomes a hit at rank 0
    b = M.paired_bootstrap(better, ranks, "R@10", n_boot=500)
    assert b["diff"] > 0 and b["lo"] > 0 and b["p_le_0"] == 0.0
    worse = M.paired_bootstrap(ranks, better, "R@10", n_boot=500)
    assert worse["hi"] < 0 and worse["p_le_0"] == 1.0
    with pytest.raises(ValueError, match="R@10"):
        M.per_user_metric(ranks, "HR10")


def test_paired_bootstrap_over_seeds_averages_each_user_first():
    rng = np.random.default_rng(1)
    runs = [M.target_ranks(rng.integers(0, 40, size=(300, 10)), rng.integers(0, 40, size=300)) for _ in range(4)]
    one = M.paired_bootstrap(runs[0], runs[2], "N@10", n_boot=300, seed=3)
    single = M.paired_bootstrap_seeds([runs[0]], [runs[2]], "N@10", n_boot=300, seed=3)
    assert single["diff"] == one["diff"] and single["lo"] == one["lo"] and single["hi"] == one["hi"]  # one seed = plain
    two = M.paired_bootstrap_seeds(runs[:2], runs[2:], "R@10", n_boot=300)
    per = [M.per_user_metric(r, "R@10").mean() for r in runs]
    assert two["a_seeds"] == pytest.approx(per[:2]) and two["b_seeds"] == pytest.approx(per[2:])
    assert two["diff"] == pytest.approx((per[0] + per[1]) / 2 - (per[2] + per[3]) / 2)
    assert two["lo"] <= two["diff"] <= two["hi"]
    with pytest.raises(ValueError, match="same non-empty user set"):
        M.paired_bootstrap_seeds([runs[0]], [runs[1][:10]])
    with pytest.raises(ValueError, match="at least one run"):
        M.paired_bootstrap_seeds([], [runs[1]])


def test_init_from_names_the_missing_run(tmp_path):
    from diger_lib.pipeline import finished_run_weights
    from diger_lib.records import write_json
    (tmp_path / "a_run" / "fp").mkdir(parents=True)
    write_json(tmp_path / "a_run" / "finished.json", {"fingerprint": "fp"})
    with pytest.raises(FileNotFoundError, match="finished runs here: a_run"):
        finished_run_weights(tmp_path, "b_run")


def test_ranks_file_roundtrip(tmp_path):
    from diger_lib.records import read_ranks, write_ranks
    r = np.array([-1, 0, 9, 3, -1])
    write_ranks(tmp_path / "r.txt.gz", r)
    assert np.array_equal(read_ranks(tmp_path / "r.txt.gz"), r)


@pytest.mark.parametrize("joint, train", [({"coupling": "none"}, {}), ({}, {"tokenizer_lr": 0.0}),
                                          ({"tokenizer_train": "none"}, {}),
                                          ({"coupling": "none", "tokenizer_train": "codebooks"}, {"tokenizer_lr": 1e-2})])
def test_switches_train_in_micro_batches(joint, train, tmp_path):
    """The study's rows train with several micro-batches per batch (the runs use 128 of 256): no extras (coupling
    none), extras without a tokenizer graph (frozen tokenizer) and the authors' combination."""
    tr = build("diger", tmp_path, epochs=1, joint=joint, train=dict(train, micro_batch_size=16))
    rec = tr.train_epoch(1)
    assert np.isfinite(rec["loss_gen"]) and rec["loss_gen"] > 0


def test_frozen_tokenizer_still_trains_w(tmp_path):
    tr = build("diger", tmp_path, epochs=1, train={"tokenizer_lr": 0.0, "micro_batch_size": 16})
    w0 = [p.weight.detach().clone() for p in tr.joint.proj]
    tr.train_epoch(1)
    assert all(not torch.equal(a, p.weight) for a, p in zip(w0, tr.joint.proj))


def test_cli_compare_pairs_runs_over_seeds_and_refuses_other_ids(tmp_path, capsys):
    from diger_lib import cli
    from diger_lib.records import write_json, write_ranks

    rng = np.random.default_rng(2)
    for name, digest in (("a1", "x"), ("a2", "x"), ("b1", "x"), ("c1", "y"), ("d1", None), ("floor", "")):
        d = tmp_path / f"04_train_recommender__{name}"
        d.mkdir()
        write_json(d / "metrics.json", {"tokenizer_codes_sha256": digest} if digest is not None else {})
        write_ranks(d / "test_ranks.txt.gz", rng.integers(-1, 10, size=200))
    assert cli.main(["compare", str(tmp_path), "a1,a2", "b1", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "A = a1, a2" in out and "R@10: A " in out and "N@10: A " in out and "test users 200" in out
    assert cli.main(["compare", str(tmp_path), "a1", "c1"]) == 1
    assert "different or unrecorded semantic IDs" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path), "a1", "c1", "--any-ids", "--n-boot", "200"]) == 0  # asked for
    out = capsys.readouterr().out
    assert "note: the runs used different" in out and "R@10: A " in out
    assert cli.main(["compare", str(tmp_path), "a1", "d1"]) == 1  # d1 recorded no IDs: not shown to be paired
    assert cli.main(["compare", str(tmp_path), "a1", "missing"]) == 1
    # a floor reads no IDs (it records ""): it pairs with any run; --overlap says which users each side hits
    assert cli.main(["compare", str(tmp_path), "a1", "floor", "--n-boot", "200", "--overlap", "10"]) == 0
    assert "hits at 10: A " in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path), "a1,a2", "floor", "--overlap", "10"]) == 1
    assert "one run with one run" in capsys.readouterr().err


def test_cli_compare_reads_peer_and_baseline_runs_and_other_profiles(tmp_path, capsys):
    """A cornac baseline (03b) or peer TIGER (04b) run is named by its whole folder name, a run of another profile as
    profile/name; they record no IDs of ours, so only --any-ids pairs them (over the same test users)."""
    from diger_lib import cli
    from diger_lib.records import write_json, write_ranks

    rng = np.random.default_rng(3)
    for folder, m in (("peer/04b_peer_tiger__Beauty__x", {}), ("base/03b_conventional_baselines__Beauty__mf__s1", {}),
                      ("ours/04_train_recommender__ts", {"tokenizer_codes_sha256": "x"})):
        (tmp_path / folder).mkdir(parents=True)
        write_json(tmp_path / folder / "metrics.json", m)
        write_ranks(tmp_path / folder / "test_ranks.txt.gz", rng.integers(-1, 10, size=100))
    peer = str(tmp_path / "peer")
    assert cli.main(["compare", peer, "04b_peer_tiger__Beauty__x", "ours/ts", "--n-boot", "100"]) == 1
    assert "different or unrecorded semantic IDs" in capsys.readouterr().err
    assert cli.main(["compare", peer, "04b_peer_tiger__Beauty__x", "ours/ts,base/03b_conventional_baselines__Beauty__mf__s1",
                     "--any-ids", "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "A = 04b_peer_tiger__Beauty__x" in out and "test users 100" in out
    assert cli.main(["compare", peer, "04b_peer_tiger__Beauty__y", "ours/ts", "--any-ids"]) == 1
    assert "04b_peer_tiger__Beauty__y" in capsys.readouterr().err


def test_hit_overlap_hand_computed():
    from diger_lib.metrics import hit_overlap

    a = np.array([0, 3, -1, 12, 9, -1])  # hits at 10: users 0, 1, 4
    b = np.array([5, -1, 2, 1, -1, -1])  # hits at 10: users 0, 2, 3
    o = hit_overlap(a, b, 10)
    assert (o.a, o.b, o.both, o.union) == pytest.approx((3 / 6, 3 / 6, 1 / 6, 5 / 6))
    assert o.a_on_b_hits == pytest.approx(1 / 3) and o.a_on_b_misses == pytest.approx(2 / 3)
    assert hit_overlap(a, b, 1).a == pytest.approx(1 / 6)  # only rank 0
    with pytest.raises(ValueError, match="same test users"):
        hit_overlap(a, b[:5])


@pytest.mark.parametrize("eval_ids", ["trained", "refreshed"])
def test_eval_ids_trained_reads_the_table_the_recommender_trained_on(tmp_path, monkeypatch, eval_ids):
    """eval_ids="trained": validation after epoch e and the final test read the table epoch e trained on (labels
    "deterministic"), not the tokenizer's IDs after the epoch; "refreshed" (the default) reads the new IDs."""
    from diger_lib import training as T

    trainer = build("diger", tmp_path, epochs=3, decay="frqud", train=dict(tokenizer_lr=3e-2),
                    joint=dict(labels="deterministic", eval_ids=eval_ids))
    seen, starts = [], []
    real_eval, real_epoch = T.evaluate, trainer.train_epoch

    def spy_eval(model, samples, item_ids, *a, **kw):
        seen.append(item_ids.clone())
        return real_eval(model, samples, item_ids, *a, **kw)

    def spy_epoch(epoch):
        starts.append(trainer.joint.table.clone())  # the table this epoch's labels come from
        return real_epoch(epoch)

    monkeypatch.setattr(T, "evaluate", spy_eval)
    monkeypatch.setattr(trainer, "train_epoch", spy_epoch)
    result = trainer.fit()
    assert len(seen) == 1 + 3 + 1 and len(starts) == 3  # epoch 0, epochs 1-3, test
    refreshed_after = [trainer.state["history"][e] for e in (1, 2, 3)]
    assert any(r["drift_inc"] > 0 for r in refreshed_after)  # the tokenizer moved: the two readings differ
    for e in (1, 2, 3):
        same = torch.equal(seen[e], starts[e - 1])
        assert same if eval_ids == "trained" else (same == (refreshed_after[e - 1]["drift_inc"] == 0))
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert torch.equal(seen[-1], best["ids"]) and np.array_equal(result.item_ids, best["ids"].numpy())
    if eval_ids == "trained" and result.best_epoch > 0:
        assert torch.equal(seen[-1], starts[result.best_epoch - 1])


def test_eval_ids_trained_needs_deterministic_labels():
    with pytest.raises(ConfigError, match="eval_ids='trained' needs labels='deterministic'"):
        JointConfig(labels="sampled", eval_ids="trained")
    with pytest.raises(ConfigError, match="eval_ids"):
        JointConfig(labels="deterministic", eval_ids="new")


# ---------------------------------------------------------------------------------------------------------
# coupling="embeddings": the authors' true-e2e reading (hard tokens forward, Gumbel-softmax backward)
# ---------------------------------------------------------------------------------------------------------
def _embeddings_setup(tmp_path, **joint):
    tr = _setup("diger", tmp_path)
    tr.joint.joint = JointConfig(coupling="embeddings", labels="deterministic", **joint)
    return tr


def _tok_grads(tr, paths=("history", "decoder", "labels"), micro=0, n=64):
    """L_gen alone through gen_backward, with the chosen gradient paths kept; (encoder grads, codebook grad)."""
    from diger_lib.training import gen_backward
    tr.joint.generator.manual_seed(0)  # the same Gumbel noise on every call
    input_ids, mask, labels, input_extra, dec_extra, sid, _ = _inputs(tr, n)
    tr.model.zero_grad(); tr.joint.zero_grad()
    keep = lambda t, name: t if name in paths else (None if t is None else t.detach())  # noqa: E731
    gen_backward(tr.model, micro, input_ids, mask, labels, keep(input_extra, "history"), keep(dec_extra, "decoder"),
                 label_soft=keep(sid.label_soft, "labels"))
    rq = tr.joint.rqvae
    return [None if p.grad is None else p.grad.clone() for p in rq.encoder.parameters()], \
        None if rq.codebooks.grad is None else rq.codebooks.grad.clone()


def _nonzero(g):
    return g is not None and bool(g.abs().sum() > 0)


def test_embeddings_coupling_keeps_two_stages_forward(tmp_path):
    """Value: the extras and soft labels are exactly 0, so the loss and logits are Two-Stage's on the same tokens."""
    tr = _embeddings_setup(tmp_path)
    input_ids, mask, labels, input_extra, dec_extra, sid, _ = _inputs(tr)
    assert torch.equal(input_extra, torch.zeros_like(input_extra)) and input_extra.requires_grad
    assert torch.equal(sid.label_soft, torch.zeros_like(sid.label_soft)) and sid.label_soft.requires_grad
    assert sid.label_soft.shape == (*labels.shape, tr.vocab.size)
    plain = tr.model(input_ids, mask, labels).loss
    coupled = tr.model(input_ids, mask, labels, input_extra=input_extra, decoder_extra=dec_extra).loss
    assert torch.equal(plain, coupled)
    assert tr.joint.recommender_parameters() == []  # no W_j
    table = tr.model.embed_weight()
    assert torch.equal(tr.joint.token_table(table), table)  # inference reads the plain table


@pytest.mark.parametrize("path", ["history", "decoder", "labels"])
def test_embeddings_coupling_each_path_alone_reaches_the_tokenizer(path, tmp_path):
    enc, cb = _tok_grads(_embeddings_setup(tmp_path), paths=(path,))
    assert _nonzero(cb) and any(_nonzero(g) for g in enc), path


def test_embeddings_coupling_cut_paths_reach_nothing(tmp_path):
    enc, cb = _tok_grads(_embeddings_setup(tmp_path), paths=())
    assert not _nonzero(cb) and not any(_nonzero(g) for g in enc)


def test_embeddings_label_path_is_the_soft_label_cross_entropy(tmp_path):
    """The labels' gradient on p is -log p_model / n_labels at the level's K tokens (d CE(p) / dp), checked against a
    direct computation; and micro-batching gives the same tokenizer gradient."""
    tr = _embeddings_setup(tmp_path)
    input_ids, mask, labels, _, _, sid, _ = _inputs(tr)
    leaf = sid.label_soft.detach().requires_grad_()
    from diger_lib.training import gen_backward
    gen_backward(tr.model, 0, input_ids, mask, labels, label_soft=leaf)
    with torch.no_grad():
        logp = torch.log_softmax(tr.model(input_ids, mask, labels).logits.float(), -1)
    n = int((labels != -100).sum())
    torch.testing.assert_close(leaf.grad, -logp / n)
    whole = _tok_grads(tr, micro=0)
    split = _tok_grads(tr, micro=16)
    torch.testing.assert_close(split[1], whole[1], rtol=1e-4, atol=1e-7)
    for a, b in zip(split[0], whole[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_embeddings_coupling_trains_end_to_end(tmp_path):
    tr = build("diger", tmp_path, epochs=1, joint={"coupling": "embeddings", "labels": "deterministic"},
               train={"tokenizer_lr": 1e-2, "micro_batch_size": 16})
    cb0 = tr.joint.rqvae.codebooks.detach().clone()
    tr.train_epoch(1)
    assert not torch.equal(cb0, tr.joint.rqvae.codebooks)  # L_gen (+ L_vq, L_recon) moved the codebooks


@pytest.mark.parametrize("own", [True, False])
def test_tokenizer_losses_switch_leaves_lgen_alone(own, tmp_path):
    """tokenizer_losses=False: the tokenizer's gradient is L_gen's alone; True adds L_vq + L_recon (section 4.3)."""
    tr = _embeddings_setup(tmp_path, tokenizer_losses=own)
    gen_enc, gen_cb = _tok_grads(tr)  # L_gen alone, every path
    tr.joint.generator.manual_seed(0)  # the same noise again
    idx = np.arange(len(tr.split.train))[:64]
    inputs = tr._step_inputs(idx, tr.split.train)
    sid = inputs[5]  # the tokenizer's own losses on these codes
    extra = torch.autograd.grad(sid.out.loss_vq + sid.out.loss_recon, tr.joint.rqvae.codebooks, retain_graph=True)[0]
    assert extra.abs().sum() > 0
    tr.model.zero_grad(); tr.joint.zero_grad()
    tr._batch_backward(idx, inputs)
    torch.testing.assert_close(tr.joint.rqvae.codebooks.grad, gen_cb + extra if own else gen_cb, rtol=1e-4, atol=1e-7)


def test_tokenizer_losses_off_needs_a_coupling():
    with pytest.raises(ConfigError, match="tokenizer_losses=False with coupling='none'"):
        JointConfig(coupling="none", tokenizer_losses=False)
    with pytest.raises(ConfigError, match="must be True or False"):
        JointConfig(tokenizer_losses="no")


def test_study_choice_first_epoch_is_two_stages(tmp_path):
    """The study's DIGER (profiles.DIGER_CHOICE: table labels, `embeddings` coupling) reads and predicts the epoch's
    deterministic IDs, and the noise only shapes the codebooks' gradient, so its first epoch trains the recommender
    exactly as Two-Stage does (measured in paper_cpu and the full-size pair, README), while its tokenizer learns.
    Each trainer is fitted right after it is built: fit() continues the global RNG stream its construction left."""
    from diger_lib.profiles import DIGER_CHOICE

    ts = build("two_stage", tmp_path / "ts", epochs=1)
    a = ts.fit().history[-1]
    dg = build("diger", tmp_path / "dg", epochs=1, decay="frqud",
               assign={k: DIGER_CHOICE[k] for k in ("frqud_mode", "sim")},
               joint={k: DIGER_CHOICE[k] for k in ("labels", "coupling", "tokenizer_train", "eval_ids")},
               train={"tokenizer_lr": 1e-2})  # loud, so the tokenizer visibly moves within the epoch
    b = dg.fit().history[-1]
    assert a["loss_gen"] == b["loss_gen"] and a["val_ndcg10"] == b["val_ndcg10"]
    assert all(torch.equal(p, q) for p, q in zip(ts.model.state_dict().values(), dg.model.state_dict().values()))
    assert b["tok_delta_codebooks"] > 0 and b["drift_cum"] > 0  # the IDs moved: the next epoch's table differs
