"""Training loop: runs end to end, is deterministic, resumes exactly after SIGKILL, fails clearly."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diger_lib.checkpoint import CheckpointError
from diger_lib.training import gen_backward

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import build, summary  # noqa: E402

HERE = Path(__file__).parent


@pytest.mark.parametrize("method", ["two_stage", "ste", "diger"])
def test_each_method_trains_and_reports(method, tmp_path):
    res = build(method, tmp_path, epochs=2).fit()
    assert set(res.test) == {"R@5", "R@10", "N@5", "N@10"}
    assert all(0.0 <= v <= 1.0 for v in res.test.values()) and res.test["R@10"] >= res.test["R@5"]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    assert len({tuple(r) for r in res.item_ids.tolist()}) == len(res.item_ids)  # IDs unique for the trie
    if method != "two_stage":
        epochs = [r["epoch"] for r in res.history]
        assert epochs == [0, 1, 2]
        for key in ("coverage_l0", "drift_inc", "drift_cum", "collision_rate"):
            assert all(0.0 <= r[key] <= 1.0 for r in res.history)
        assert 0.0 <= res.history[-1]["agreement"] <= 1.0
    if method == "ste":  # no noise: every training-time ID is the deterministic one
        assert all(r["agreement"] == 1.0 for r in res.history[1:])


def test_same_seed_same_numbers(tmp_path):
    a = summary(build("diger", tmp_path / "a", epochs=2).fit())
    b = summary(build("diger", tmp_path / "b", epochs=2).fit())
    assert a == b


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    ref = summary(build("diger", tmp_path / "ref").fit())
    ckpt, out = tmp_path / "killed", tmp_path / "out.json"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    proc = subprocess.Popen([sys.executable, str(HERE / "_tiny_run.py"), "diger", str(ckpt), str(out)], env=env)
    deadline = time.time() + 120
    while not (ckpt / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-training: after at least one checkpoint, before the end
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed; make the tiny run longer"
    saved_epoch = torch.load(ckpt / "last.pt", weights_only=False)["state"]["epoch"]
    assert 1 <= saved_epoch < 4
    resumed = build("diger", ckpt).fit()
    assert resumed.resumed_from == saved_epoch
    assert summary(resumed) == ref


def _batch_grads(trainer, micro: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Gradients of one training batch with ``micro_batch_size=micro`` (dropout off, same tokenizer noise)."""
    trainer.model.eval()  # no dropout, so the two passes see the same function
    gen = trainer.joint.generator.get_state() if trainer.joint is not None else None
    torch.manual_seed(0)
    idx = np.arange(40)
    input_ids, mask, labels, extra, dec_extra, sid, _ = trainer._step_inputs(idx, trainer.split.train)
    params = dict(trainer.model.named_parameters())
    if trainer.joint is not None:
        params.update({f"joint.{k}": v for k, v in trainer.joint.named_parameters()})
        trainer.joint.generator.set_state(gen)
    for p in params.values():
        p.grad = None
    loss = gen_backward(trainer.model, micro, input_ids, mask, labels, extra, dec_extra,
                        None if sid is None else sid.out.loss_vq + sid.out.loss_recon)
    return float(loss), {k: p.grad.clone() for k, p in params.items() if p.grad is not None}


@pytest.mark.parametrize("method", ["two_stage", "diger"])
def test_micro_batches_give_the_whole_batch_gradient(method, tmp_path):
    trainer = build(method, tmp_path)
    loss_full, full = _batch_grads(trainer, 0)
    loss_micro, micro = _batch_grads(trainer, 7)  # 40 samples in micro-batches of 7, the last one short
    assert loss_micro == pytest.approx(loss_full, rel=1e-5)
    assert full.keys() == micro.keys()
    for name in full:
        torch.testing.assert_close(micro[name], full[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    if method == "diger":  # L_gen reaches the tokenizer through the micro-batches too
        enc = [k for k in micro if k.startswith("joint.rqvae.encoder")]
        assert enc and any(micro[k].abs().sum() > 0 for k in enc)


def test_time_budget_stops_between_epochs_and_a_later_call_resumes(tmp_path):
    ref = build("diger", tmp_path / "ref").fit()
    assert ref.stop_reason == "max_epochs"
    # a budget shorter than one epoch: the first epoch runs (nothing to judge by yet), the second would overrun
    cut = build("diger", tmp_path / "cut", time_budget_minutes=1e-6).fit()
    assert cut.stop_reason == "time_budget" and [r["epoch"] for r in cut.history] == [0, 1]
    assert set(cut.test) == {"R@5", "R@10", "N@5", "N@10"}  # a budget-stopped run still reports its best checkpoint
    resumed = build("diger", tmp_path / "cut").fit()  # no budget: continues from epoch 1 to the end
    assert resumed.resumed_from == 1 and resumed.stop_reason == "max_epochs"
    assert summary(resumed) == summary(ref)


def test_early_stopping_is_reported(tmp_path):
    res = build("two_stage", tmp_path, epochs=30, lr=1e-9).fit()  # nothing improves after epoch 1
    assert res.stop_reason == "early_stopping" and len(res.history) < 30


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr = build("two_stage", tmp_path, epochs=3)
    tr.fit()  # 3 good epochs
    tr2 = build("two_stage", tmp_path, epochs=5)
    real = tr2.model.forward

    def poisoned(*a, **k):
        out = real(*a, **k)
        return out._replace(loss=out.loss * float("nan"))
    tr2.model.forward = poisoned
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 4"):
        tr2.fit()
    assert torch.load(tmp_path / "last.pt", weights_only=False)["state"]["epoch"] == 3


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path):
    build("two_stage", tmp_path, epochs=1).fit()
    with pytest.raises(CheckpointError, match="different configuration"):
        build("two_stage", tmp_path, epochs=1, lr=1e-2).fit()
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        build("two_stage", tmp_path, epochs=1).fit()


def test_samples_per_epoch_draws_fresh_subsets():
    import numpy as np
    from diger_lib import data as D
    from diger_lib.config import TrainConfig
    from diger_lib.training import epoch_batches
    sp = D.split_leave_one_out(D.load_interactions(HERE / "fixtures", "Tiny"), 20)
    cfg = TrainConfig(samples_per_epoch=300, batch_size=64)
    e1, e2 = (np.concatenate(epoch_batches(sp.train, cfg, e)) for e in (1, 2))
    assert len(e1) == len(set(e1.tolist())) == 300 and set(e1.tolist()) != set(e2.tolist())
    full = np.concatenate(epoch_batches(sp.train, TrainConfig(batch_size=64), 1))
    assert sorted(full.tolist()) == list(range(len(sp.train)))


@pytest.mark.parametrize("m, K, assign", [(2, 8, {}), (4, 4, {"noise": "gaussian", "decay": "tau_anneal"}),
                                          (3, 8, {"noise": "none"}), (3, 8, {"update": "hard"})])
def test_table4_switches_and_table5_axes_run(m, K, assign, tmp_path):
    """Every Table 4 switch and Table 5's K/m axes train and evaluate through the same joint loop."""
    from diger_lib import data as D
    from diger_lib.config import AssignConfig, RQVAEConfig, TrainConfig
    from diger_lib.joint import JointTokenizer
    from diger_lib.rqvae import RQVAE
    from diger_lib.training import Trainer
    from _tiny_run import FIXTURES, TINY
    torch.manual_seed(0)
    split = D.split_leave_one_out(D.load_interactions(FIXTURES, "Tiny"), 20)
    X = torch.randn(split.n_items, 12)
    rq = RQVAE(12, RQVAEConfig(codebook_size=K, n_levels=m, code_dim=4, hidden_dims=(16,)))
    rq.kmeans_init_(X, iters=3, seed=0)
    joint = JointTokenizer(rq, AssignConfig(**assign), X, TINY.d_model, seed=0)
    joint.refresh_ids()
    res = Trainer(split, TrainConfig(method="diger", epochs=1, batch_size=128, beam_size=10), TINY, joint.vocab,
                  joint=joint, ckpt_dir=tmp_path, run_config={}, progress=False, log=lambda s: None).fit()
    assert res.item_ids.shape == (split.n_items, m + 1) and res.usage.shape == (m, K)
    assert 0.0 <= res.test["R@10"] <= 1.0
