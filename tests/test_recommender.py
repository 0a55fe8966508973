"""GenRecModel: equals HF T5 (the reference), hooks for joint training carry gradients, the cached decoder
equals teacher forcing, the cheap dropout drops at rate p."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from diger_lib.config import RecommenderConfig
from diger_lib.recommender import GenRecModel, RMSNorm, dropout, hf_t5_config
from diger_lib.vocab import SIDVocab

transformers = pytest.importorskip("transformers")

SMALL = RecommenderConfig(d_model=32, n_heads=4, d_kv=8, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
                          rel_buckets=8, rel_max_distance=16, tie_embeddings=False)
SMALL_TIED = dataclasses.replace(SMALL, tie_embeddings=True)
VOCAB = SIDVocab(n_tokens=4, codebook_size=8)


def batch(vocab: SIDVocab, B: int = 5, L: int = 24, seed: int = 0):
    """Right-padded histories of different lengths (the longest fills L) and random next-item labels."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([L, L // 2, 3, L - 5, 7][:B])
    mask = torch.arange(L)[None, :] < lengths[:, None]
    ids = torch.randint(2, vocab.size, (B, L), generator=g).masked_fill(~mask, 0)
    codes = torch.randint(0, vocab.codebook_size, (B, vocab.n_tokens), generator=g)
    return ids, mask, vocab.codes_to_tokens(codes)


def hf_pair(cfg: RecommenderConfig, vocab: SIDVocab, kernel: str = "auto", seed: int = 0):
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(hf_t5_config(cfg, vocab)).eval()
    if not cfg.tie_embeddings:
        # transformers 5 ties lm_head to the shared embedding whatever tie_word_embeddings says; untie it with
        # different values so a model that used the input embedding as output layer would fail this test
        hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.lm_head.weight))
    with torch.no_grad():  # non-trivial norms and position biases
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.uniform_(0.5, 1.5)
    return hf, GenRecModel.from_hf_t5(hf, vocab, kernel=kernel).eval()


@pytest.mark.parametrize("kernel", ["sdpa", "matmul"])
def test_matches_hf_t5_logits_and_loss(kernel):
    hf, model = hf_pair(SMALL, VOCAB, kernel)
    ids, mask, labels = batch(VOCAB)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long(), labels=labels)
        out = model(ids, mask, labels)
    assert out.logits.shape == ref.logits.shape == (5, 4, VOCAB.size)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-6)
    # the encoder alone, with the padded positions included (HF computes them too)
    with torch.no_grad():
        enc_ref = hf.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        torch.testing.assert_close(model.encode(ids, mask), enc_ref, atol=1e-5, rtol=1e-5)


def test_tied_output_matches_hf_t5_default():
    """T5's default (and LETTER's TIGER): lm_head is the input table and decoder outputs are scaled by d**-0.5."""
    hf, model = hf_pair(SMALL_TIED, VOCAB)
    assert model.lm_head.weight is model.embed.weight
    ids, mask, labels = batch(VOCAB)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long(), labels=labels)
        out = model(ids, mask, labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="rescale"):
        GenRecModel(SMALL, VOCAB).load_hf_t5_(hf)


def test_matches_hf_t5_at_paper_size():
    cfg = RecommenderConfig()  # 6+6 layers, d_model 128, 4 x 64 heads, d_ff 512, tied as T5
    vocab = SIDVocab(4, 256)
    hf, model = hf_pair(cfg, vocab)
    ids, mask, labels = batch(vocab, B=3, L=80, seed=1)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long(), labels=labels)
        out = model(ids, mask, labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-6)


def test_load_rejects_a_different_architecture():
    hf = transformers.T5ForConditionalGeneration(hf_t5_config(SMALL, VOCAB))
    other = RecommenderConfig(d_model=32, n_heads=4, d_kv=8, d_ff=64, n_encoder_layers=3, n_decoder_layers=2,
                              rel_buckets=8, rel_max_distance=16)
    with pytest.raises(ValueError, match="num_layers"):
        GenRecModel(other, VOCAB).load_hf_t5_(hf)


def test_training_mode_applies_dropout_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB)
    ids, mask, labels = batch(VOCAB)
    model.train()
    a, b = model(ids, mask, labels).logits, model(ids, mask, labels).logits
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(ids, mask, labels).logits, model(ids, mask, labels).logits, atol=0, rtol=0)


def test_cheap_dropout_rate_scale_and_gradient():
    torch.manual_seed(0)
    x = torch.ones(200_001, requires_grad=True)  # odd size: the two-per-draw split must still cover it
    y = dropout(x, 0.1, True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # 10 sigma of a Bernoulli(0.1) mean over 2e5 draws is 0.0067
    assert abs(y.mean().item() - 1.0) < 0.005  # inverted dropout keeps the expectation
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through the kept entries with the same scale
    assert dropout(x, 0.1, False) is x and dropout(x, 0.0, True) is x


def test_rms_norm_without_a_graph_is_f_rms_norm_bit_for_bit():
    """The no-grad path spells out the norm in place; it must give F.rms_norm's bits, or beam search would drift."""
    g = torch.Generator().manual_seed(0)
    for shape, scale in (((1280, 128), 1.0), ((3, 7, 32), 1e-3), ((5, 130), 50.0)):
        norm = RMSNorm(shape[-1])
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=g)
        x = torch.randn(shape, generator=g) * scale
        ref = torch.nn.functional.rms_norm(x, (shape[-1],), norm.weight, norm.eps)
        with torch.no_grad():
            assert torch.equal(norm(x), ref)
        assert norm(x.requires_grad_()).grad_fn is not None  # with a graph: F.rms_norm itself


def test_gradients_reach_the_joint_training_hooks():
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB).train()
    ids, mask, labels = batch(VOCAB)
    d = SMALL.d_model
    input_extra = (0.1 * torch.randn(*ids.shape, d)).requires_grad_()
    decoder_extra = (0.1 * torch.randn(*labels.shape, d)).requires_grad_()
    table = model.embed_weight().detach().clone().requires_grad_()
    out = model(ids, mask, labels, input_extra=input_extra, decoder_extra=decoder_extra, token_table=table)
    out.loss.backward()
    assert input_extra.grad is not None and input_extra.grad[mask].abs().sum() > 0
    # the last label's extra feeds no decoder input (it is shifted out), every other one does
    assert decoder_extra.grad[:, :-1].abs().sum(-1).min() > 0
    assert decoder_extra.grad[:, -1].abs().sum() == 0
    used = torch.unique(torch.cat([ids[mask], labels[:, :-1].flatten(), torch.tensor([0])]))
    assert table.grad[used].abs().sum(-1).min() > 0
    assert model.embed.weight.grad is None  # the table replaced the embedding
    assert model.lm_head.weight.grad.abs().sum() > 0  # lm_head is untouched by token_table


def test_zero_extras_and_identity_table_change_nothing():
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB).eval()
    ids, mask, labels = batch(VOCAB)
    d = SMALL.d_model
    with torch.no_grad():
        base = model(ids, mask, labels).logits
        same = model(ids, mask, labels, input_extra=torch.zeros(*ids.shape, d),
                     decoder_extra=torch.zeros(*labels.shape, d), token_table=model.embed_weight().clone())
        torch.testing.assert_close(same.logits, base, atol=0, rtol=0)
        other = model(ids, mask, labels, token_table=torch.randn_like(model.embed_weight()))
        assert (other.logits - base).abs().max() > 1e-2


def test_decoder_extra_is_causal():
    """decoder_extra[t] belongs to label token t, so it may only influence predictions after position t."""
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB).eval()
    ids, mask, labels = batch(VOCAB)
    T, d = labels.shape[1], SMALL.d_model
    with torch.no_grad():
        base = model(ids, mask, labels, decoder_extra=torch.zeros(*labels.shape, d)).logits
        for t in range(T):
            extra = torch.zeros(*labels.shape, d)
            extra[:, t] = torch.randn(labels.shape[0], d)
            logits = model(ids, mask, labels, decoder_extra=extra).logits
            torch.testing.assert_close(logits[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
            if t + 1 < T:
                assert (logits[:, t + 1:] - base[:, t + 1:]).abs().amax(-1).min() > 1e-4


def test_input_extra_respects_padding_and_changes_real_positions():
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB).eval()
    ids, mask, labels = batch(VOCAB)
    with torch.no_grad():
        base = model(ids, mask, labels).logits
        extra = torch.randn(*ids.shape, SMALL.d_model) * (~mask)[..., None]  # only on padding
        torch.testing.assert_close(model(ids, mask, labels, input_extra=extra).logits, base, atol=1e-5, rtol=1e-5)
        extra = torch.randn(*ids.shape, SMALL.d_model) * mask[..., None]
        assert (model(ids, mask, labels, input_extra=extra).logits - base).abs().amax((1, 2)).min() > 1e-3


@pytest.mark.parametrize("kernel", ["sdpa", "matmul"])
def test_cached_decoding_equals_teacher_forcing_with_beams(kernel):
    """Hypotheses branch from random parents each step; every row's cached logits must equal the
    teacher-forced logits of its own full prefix."""
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB, kernel=kernel).eval()
    ids, mask, _ = batch(VOCAB)
    B, nb, T, V = ids.shape[0], 3, VOCAB.n_tokens, VOCAB.size
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        enc = model.encode(ids, mask)
        cross = model.cross_kv(enc, mask)
        prefix = torch.zeros(B, 1, 1, dtype=torch.long)  # [B, hyps, t+1] decoder inputs so far (PAD start)
        cache = None
        for t in range(T):
            n = prefix.shape[1]
            out = model.decode_step(prefix[:, :, -1].flatten(), cross, cache)
            full = model.decode(prefix.flatten(0, 1), enc.repeat_interleave(n, 0), mask.repeat_interleave(n, 0))
            torch.testing.assert_close(out.logits, full[:, -1], atol=2e-5, rtol=1e-5)
            parent = torch.randint(0, n, (B, nb), generator=g)  # some parents die, some have several children
            new_tok = torch.randint(2, V, (B, nb, 1), generator=g)
            prefix = torch.cat([prefix.gather(1, parent[..., None].expand(B, nb, t + 1)), new_tok], 2)
            cache = out.cache.select(parent)


def test_decode_step_rejects_mismatched_rows():
    model = GenRecModel(SMALL, VOCAB).eval()
    ids, mask, _ = batch(VOCAB)
    with torch.no_grad():
        cross = model.cross_kv(model.encode(ids, mask), mask)
        with pytest.raises(ValueError, match="evenly"):
            model.decode_step(torch.zeros(7, dtype=torch.long), cross, None)


def test_bfloat16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    model = GenRecModel(SMALL, VOCAB).eval()
    ids, mask, labels = batch(VOCAB)
    with torch.no_grad():
        ref = model(ids, mask, labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(ids, mask, labels)
    assert torch.isfinite(out.logits).all()
    assert abs(out.loss.item() - ref.loss.item()) < 0.05 * ref.loss.item()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, mask, labels).loss
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
