"""Tests of diger_lib.rqvae: RQ-VAE pretraining, k-means init, conflict codes, joint tokenisation."""
import pytest
import torch

from diger_lib.config import AssignConfig, Noise, RQVAEConfig, Update
from diger_lib.rqvae import RQVAE, TokenizeOut, add_conflict_codes, collision_rate, pretrain_rqvae

K, M, IN_DIM = 8, 2, 16




def _cfg(**kw):
    base = dict(codebook_size=K, n_levels=M, code_dim=4, hidden_dims=(32,), epochs=3, batch_size=32, kmeans_iters=10)
    base.update(kw)
    return RQVAEConfig(**base)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RQVAE(IN_DIM, _cfg(**kw))


def _clustered(n=256, n_clusters=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, IN_DIM, generator=g)
    return centres[torch.randint(n_clusters, (n,), generator=g)] + 0.1 * torch.randn(n, IN_DIM, generator=g)


@torch.no_grad()
def _quantisation_error(model, x):
    z = model.encode(x)
    codes = model.deterministic_codes(x)
    q = sum(model.codebooks[j][codes[:, j]] for j in range(model.n_levels))
    return (z - q).pow(2).sum(1).mean().item()


def test_codes_in_range_and_shapes():
    model, x = _model(), _clustered(64)
    out = model.tokenize(x, AssignConfig(), generator=torch.Generator().manual_seed(0))
    assert isinstance(out, TokenizeOut)
    for codes in (out.codes, out.det_codes, model.deterministic_codes(x, batch_size=10), model(x).codes):
        assert codes.shape == (64, M) and codes.dtype == torch.long
        assert ((codes >= 0) & (codes < K)).all()
    assert out.level_embs.shape == (64, M, 4) and out.soft_probs.shape == (64, M, K)
    torch.testing.assert_close(out.quantized, out.level_embs.sum(1))
    # default vq_codes="deterministic": L_recon reconstructs z from the nearest codes (section 4.3)
    q_det = sum(model.codebooks[j][out.det_codes[:, j]] for j in range(M))
    torch.testing.assert_close(out.loss_recon, ((q_det - out.z) ** 2).mean())
    for j in range(M):  # forward value of each level is exactly its codebook row (Eq. 7)
        assert torch.equal(out.level_embs[:, j], model.codebooks[j][out.codes[:, j]])


def test_add_conflict_codes_hand_case():
    codes = torch.tensor([[0, 1], [2, 3], [0, 1], [0, 1], [2, 3], [1, 1]])
    expected = torch.tensor([[0, 1, 0], [2, 3, 0], [0, 1, 1], [0, 1, 2], [2, 3, 1], [1, 1, 0]])
    assert torch.equal(add_conflict_codes(codes, K=4), expected)
    assert collision_rate(codes) == pytest.approx(0.5)
    assert collision_rate(expected) == 0.0


def test_add_conflict_codes_random_unique_and_ordered():
    codes = torch.randint(0, 6, (500, 2), generator=torch.Generator().manual_seed(0))
    full = add_conflict_codes(codes, K=64)
    assert torch.equal(full[:, :2], codes)
    assert torch.unique(full, dim=0).shape[0] == 500
    for prefix in torch.unique(codes, dim=0)[:5]:  # 0, 1, 2, ... in ascending item order
        rows = (codes == prefix).all(1).nonzero().squeeze(1)
        assert full[rows, 2].tolist() == list(range(rows.numel()))


def test_add_conflict_codes_rejects_oversized_group():
    codes = torch.tensor([[1, 2]] * 5 + [[0, 0]])
    with pytest.raises(ValueError, match=r"prefix \[1, 2\] is shared by 5 items"):
        add_conflict_codes(codes, K=4)


def test_kmeans_init_beats_random_init():
    x = _clustered()
    random_model = _model()
    err_random = _quantisation_error(random_model, x)
    # random-sample init: every codebook row a random encoded point / residual
    sample_model = _model()
    with torch.no_grad():
        residual = sample_model.encode(x)
        for j in range(M):
            pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(j))[:K]
            sample_model.codebooks[j].copy_(residual[pick])
            residual = residual - sample_model.codebooks[j][torch.cdist(residual, sample_model.codebooks[j]).argmin(1)]
    err_sample = _quantisation_error(sample_model, x)
    km_model = _model()
    km_model.kmeans_init_(x, iters=20, seed=0)
    err_km = _quantisation_error(km_model, x)
    assert err_km < 0.5 * err_random and err_km < err_sample
    again = _model()
    again.kmeans_init_(x, iters=20, seed=0)
    assert torch.equal(again.codebooks, km_model.codebooks)  # deterministic given seed


def test_kmeans_init_with_fewer_distinct_points_than_codes():
    x = _clustered(n=30, n_clusters=3)[:3].repeat(10, 1)  # 3 distinct items, K = 8
    model = _model()
    model.kmeans_init_(x, iters=5, seed=1)
    assert torch.isfinite(model.codebooks).all()
    assert torch.unique(model.codebooks[0], dim=0).shape[0] == K  # jitter keeps the rows distinct
    assert _quantisation_error(model, x) < 1e-4  # each distinct point has its own first-level code


def test_pretraining_lowers_loss_and_reports_each_epoch():
    x = _clustered()
    model = _model(epochs=15, batch_size=16, lr=3e-3)
    seen = []
    hist = pretrain_rqvae(model, x, model.cfg, seed=0, progress=False, on_epoch=seen.append)
    assert [h["epoch"] for h in hist] == list(range(1, 16)) and seen == hist
    assert set(hist[0]) == {"epoch", "loss", "loss_recon", "loss_vq", "collision_rate"}
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert hist[-1]["loss_recon"] < 0.5 * hist[0]["loss_recon"]
    assert 0.0 <= hist[-1]["collision_rate"] < 1.0


def test_pretraining_rejects_nan_input_and_nan_loss():
    x = _clustered(64)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        pretrain_rqvae(_model(), bad, _cfg(), seed=0, progress=False)
    model = _model()
    with torch.no_grad():
        model.decoder[-1].bias[0] = float("nan")  # encoder/k-means fine, reconstruction NaN
    with pytest.raises(FloatingPointError, match="epoch 1 loss is nan"):
        pretrain_rqvae(model, x, model.cfg, seed=0, progress=False)


def _grads_follow_update(model, x, update: Update) -> bool:
    """Toy downstream loss L = sum(level_embs * W) standing in for L_gen; check where gradients land."""
    model.zero_grad(set_to_none=True)
    out = model.tokenize(x, AssignConfig(update=update), generator=torch.Generator().manual_seed(0))
    w = torch.randn(out.level_embs.shape, generator=torch.Generator().manual_seed(1))
    loss = (out.level_embs * w).sum()
    if not loss.requires_grad:
        return False
    loss.backward()
    enc = [p.grad for p in model.encoder.parameters()]
    if any(g is None for g in enc) or sum(g.abs().sum() for g in enc) == 0 or model.codebooks.grad is None:
        return False
    row_nonzero = model.codebooks.grad.abs().sum(-1) > 0  # [m, K]
    if update is Update.SOFT:
        return bool(row_nonzero.all())
    selected = torch.zeros_like(row_nonzero)
    for j in range(model.n_levels):
        selected[j, out.codes[:, j]] = True
    return bool(torch.equal(row_nonzero, selected)) and not bool(selected.all())


class _DetachedRQVAE(RQVAE):
    def tokenize(self, *args, **kwargs):
        out = super().tokenize(*args, **kwargs)
        return out._replace(level_embs=out.level_embs.detach())


@pytest.mark.parametrize("update", [Update.SOFT, Update.HARD])
def test_gradients_reach_encoder_and_codebook(update):
    x = _clustered(12)
    model = _model()
    model.kmeans_init_(x, iters=5, seed=0)
    assert _grads_follow_update(model, x, update)
    torch.manual_seed(0)
    detached = _DetachedRQVAE(IN_DIM, _cfg())
    detached.load_state_dict(model.state_dict())
    assert not _grads_follow_update(detached, x, update)


def test_noise_free_sharp_tokenize_equals_argmax():
    x = 3.0 * torch.randn(64, IN_DIM, generator=torch.Generator().manual_seed(5))
    model = _model()
    model.kmeans_init_(x, iters=10, seed=0)
    out = model.tokenize(x, AssignConfig(noise=Noise.NONE), tau=1e-4)
    with torch.no_grad():  # independent nearest-code chain
        residual, ref = model.encode(x), []
        for j in range(M):
            c = torch.cdist(residual, model.codebooks[j]).argmin(1)
            residual = residual - model.codebooks[j][c]
            ref.append(c)
    ref = torch.stack(ref, 1)
    assert torch.equal(out.codes, ref) and torch.equal(out.det_codes, ref)
    assert torch.equal(model.deterministic_codes(x), ref)
    one_hot = torch.nn.functional.one_hot(ref, K).float()
    torch.testing.assert_close(out.soft_probs, one_hot, atol=1e-3, rtol=0)


def test_frqud_masks_in_tokenize():
    x = _clustered(128)
    model = _model()
    model.kmeans_init_(x, iters=10, seed=0)
    cold = torch.zeros(M, K, dtype=torch.bool)
    out = model.tokenize(x, AssignConfig(), noise_scale=50.0, hot_masks=cold, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.codes, out.det_codes)
    hot = model.tokenize(x, AssignConfig(), noise_scale=50.0, hot_masks=~cold, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(hot.codes, hot.det_codes)  # the noise is real when codes are hot
    with pytest.raises(ValueError, match="hot_masks"):
        model.tokenize(x, AssignConfig(), hot_masks=cold[:, :3])


def test_pretraining_is_bit_reproducible_with_two_threads():
    """Same seed, same tokenizer: with 2 threads a parallel accumulation in the backward made two runs differ (every
    semantic ID downstream then changed from run to run); pretrain_rqvae runs under deterministic algorithms."""
    x = torch.randn(3000, 384, generator=torch.Generator().manual_seed(0))
    cfg = RQVAEConfig(codebook_size=256, n_levels=3, code_dim=32, hidden_dims=(128,), epochs=2, batch_size=1024,
                      kmeans_iters=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        params = []
        for _ in range(3):
            torch.manual_seed(1)
            model = RQVAE(384, cfg)
            pretrain_rqvae(model, x, cfg, seed=1, progress=False)
            params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(params[0], p) for p in params[1:])
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored afterwards
