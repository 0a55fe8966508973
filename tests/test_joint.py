"""The paper's gradient path, end to end: L_gen of the real recommender reaches the tokenizer (section 4)."""
import numpy as np
import pytest
import torch

from diger_lib import data as D
from diger_lib.config import AssignConfig, Method, RecommenderConfig, RQVAEConfig, TrainConfig
from diger_lib.joint import JointTokenizer, assign_config_for
from diger_lib.rqvae import RQVAE
from diger_lib.training import Trainer

TINY = RecommenderConfig(d_model=16, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0)


def _setup(method: str, tmp_path, detach: bool = False, K: int = 8, **assign):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seqs = {u: rng.integers(0, 40, size=8).tolist() for u in range(30)}
    split = D.split_leave_one_out(seqs, 5)
    X = torch.randn(40, 12)
    rq = RQVAE(12, RQVAEConfig(codebook_size=K, n_levels=2, code_dim=4, hidden_dims=(16,)))
    rq.kmeans_init_(X, iters=5, seed=0)
    if detach:  # a tokenizer whose codes are cut off from the graph, like the authors' public code
        orig = rq.tokenize

        def detached(*a, **k):
            out = orig(*a, **k)
            return out._replace(level_embs=out.level_embs.detach())
        rq.tokenize = detached
    cfg = TrainConfig(method=method, batch_size=64, epochs=1, beam_size=10)
    joint = JointTokenizer(rq, assign_config_for(cfg.method, AssignConfig(**assign)), X, TINY.d_model, seed=0)
    joint.refresh_ids()
    tr = Trainer(split, cfg, TINY, joint.vocab, joint=joint, ckpt_dir=tmp_path, run_config={}, progress=False)
    return tr


def _lgen_grads(tr, n: int = 64):
    """Backpropagate L_gen ALONE (no L_vq / L_recon) of one batch; return grads and the batch's codes."""
    idx = np.arange(len(tr.split.train))[:n]
    input_ids, mask, labels, input_extra, decoder_extra, sid, _ = tr._step_inputs(idx, tr.split.train)
    tr.model.zero_grad(); tr.joint.zero_grad()
    tr.model(input_ids, mask, labels, input_extra=input_extra, decoder_extra=decoder_extra).loss.backward()
    rq = tr.joint.rqvae
    enc = [p.grad for p in rq.encoder.parameters()]
    return enc, rq.codebooks.grad, sid.codes


def reaches_tokenizer(tr) -> bool:
    enc, cb, _ = _lgen_grads(tr)
    return all(g is not None and g.abs().sum() > 0 for g in enc) and cb is not None and cb.abs().sum() > 0


@pytest.mark.parametrize("method", ["diger", "ste"])
def test_lgen_reaches_encoder_and_codebooks(method, tmp_path):
    assert reaches_tokenizer(_setup(method, tmp_path))


@pytest.mark.parametrize("method", ["diger", "ste"])
def test_same_check_fails_on_detached_codes(method, tmp_path):
    assert not reaches_tokenizer(_setup(method, tmp_path, detach=True))


def test_soft_update_reaches_every_codebook_row(tmp_path):
    _, cb, _ = _lgen_grads(_setup("diger", tmp_path))
    assert (cb.abs().sum(-1) > 0).all()  # Eq. 8: every row of every level


def test_hard_update_reaches_only_selected_rows(tmp_path):
    for tr in (_setup("ste", tmp_path, K=32), _setup("diger", tmp_path, K=32, update="hard")):
        _, cb, codes = _lgen_grads(tr, n=2)  # a few items: most of the 32 rows stay unselected
        touched = cb.abs().sum(-1) > 0  # [m, K]
        selected = torch.zeros_like(touched)
        for j in range(codes.shape[1]):
            selected[j, codes[:, j].unique()] = True
        assert (touched == selected).all() and (~selected).any()


def test_inference_table_equals_per_item_extras(tmp_path):
    """Eval uses a lookup table (det codes); it must equal feeding each item's noise-free extras."""
    tr = _setup("diger", tmp_path)
    tr.model.eval()
    idx = np.arange(10)
    tr.joint.assign = AssignConfig(noise="none")
    input_ids, mask, labels, input_extra, decoder_extra, sid, _ = tr._step_inputs(idx, tr.split.train)
    assert (sid.codes == sid.det_codes).all()
    a = tr.model(input_ids, mask, labels, input_extra=input_extra, decoder_extra=decoder_extra).logits
    b = tr.model(input_ids, mask, labels, token_table=tr.joint.token_table(tr.model.embed_weight())).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_ste_config_is_argmax_hard():
    a = assign_config_for(Method.STE, AssignConfig(noise="gumbel", update="soft", decay="frqud"))
    assert (a.noise.value, a.update.value, a.decay.value) == ("none", "hard", "none")


def test_shared_ids_expand_to_every_member():
    from diger_lib.training import expand_shared_ids
    # items 0..4; items 1 and 3 share unique ID 1, item 4 has ID 2, item 0 ID 0, item 2 ID 3
    inverse = torch.tensor([0, 1, 3, 1, 2])
    top = torch.tensor([[1, 2, -1], [3, 0, 1]])
    out = expand_shared_ids(top, inverse, 3)
    assert out.tolist() == [[1, 3, 4], [2, 0, 1]]


def test_conflict_overflow_shares_instead_of_failing():
    from diger_lib.rqvae import add_conflict_codes
    codes = torch.zeros(5, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="shared by 5 items"):
        add_conflict_codes(codes, 3)
    assert add_conflict_codes(codes, 3, overflow="share")[:, -1].tolist() == [0, 1, 2, 2, 2]


def test_vq_loss_uses_deterministic_codes_by_default():
    """Section 4.3's standard RQ-VAE losses: with heavy noise the forward codes are random, the VQ terms are not."""
    from diger_lib.config import RQVAEConfig
    torch.manual_seed(0)
    rq = RQVAE(12, RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,)))
    X = torch.randn(50, 12)
    rq.kmeans_init_(X, iters=5, seed=0)
    g = torch.Generator().manual_seed(0)
    det = rq.tokenize(X, AssignConfig(), noise_scale=100.0, generator=g)
    clean = rq.tokenize(X, AssignConfig(noise="none"))
    assert (det.codes != det.det_codes).any()
    torch.testing.assert_close(det.loss_vq, clean.loss_vq)
    torch.testing.assert_close(det.loss_recon, clean.loss_recon)
    sampled = rq.tokenize(X, AssignConfig(vq_codes="sampled"), noise_scale=100.0, generator=torch.Generator().manual_seed(0))
    assert sampled.loss_vq > clean.loss_vq


def test_gaussian_similarity_keeps_the_argmax_and_sharpens_logits():
    from diger_lib.assignment import assign_level
    torch.manual_seed(0)
    r, cb = torch.randn(20, 4) * 0.1, torch.randn(8, 4) * 0.1
    a = assign_level(r, cb, AssignConfig(noise="none"))
    b = assign_level(r, cb, AssignConfig(noise="none", sim="gaussian"))
    assert (a.codes == b.codes).all()
    assert b.logits.std() > 10 * a.logits.std()  # small raw distances become likelihood-scale logits
