"""Tests of diger_lib.assignment: DRIL (Eq. 5-8), FrqUD (Eq. 10-13), SDUD (Eq. 9, appendix B)."""
import math

import pytest
import torch

from diger_lib.assignment import (
    GUMBEL_STD,
    FrequencyEMA,
    SDUDSigma,
    assign_level,
    gumbel_noise,
    tau_at_epoch,
)
from diger_lib.config import AssignConfig, Decay, Noise, Update




def _toy(b=32, k=8, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(k, d, generator=g)


def test_gumbel_noise_moments_and_finiteness():
    g = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.01  # Euler-Mascheroni constant
    assert abs(g.std().item() - GUMBEL_STD) < 0.01
    like = gumbel_noise(torch.zeros(3, 5, dtype=torch.float64))
    assert like.shape == (3, 5) and like.dtype == torch.float64


def test_logits_are_negative_squared_distances_and_argmax_is_nearest():
    r, e = _toy()
    a = assign_level(r, e, AssignConfig(noise=Noise.NONE))
    torch.testing.assert_close(a.logits, -torch.cdist(r, e).pow(2), rtol=1e-4, atol=1e-4)
    assert torch.equal(a.codes, torch.cdist(r, e).argmin(1))
    assert torch.equal(a.noisy_logits, a.logits)


@pytest.mark.parametrize("update", [Update.SOFT, Update.HARD])
def test_forward_value_is_exactly_the_selected_code(update):
    r, e = _toy()
    a = assign_level(r, e, AssignConfig(update=update), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.emb, e[a.codes])
    assert torch.equal(a.codes, a.noisy_logits.argmax(1))  # Eq. 7
    torch.testing.assert_close(a.soft_probs, torch.softmax(a.noisy_logits / 2.0, -1))  # Eq. 6, tau=2
    assert ((a.codes >= 0) & (a.codes < e.shape[0])).all()


def test_soft_update_reaches_every_row_hard_only_selected():
    r, e = _toy(b=6, k=8)
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    for update in (Update.SOFT, Update.HARD):
        rr, ee = r.clone().requires_grad_(), e.clone().requires_grad_()
        a = assign_level(rr, ee, AssignConfig(update=update), generator=torch.Generator().manual_seed(0))
        (a.emb * w).sum().backward()
        row_nonzero = ee.grad.abs().sum(1) > 0
        assert rr.grad.abs().sum() > 0
        if update is Update.SOFT:
            assert row_nonzero.all()
        else:
            selected = torch.zeros(8, dtype=torch.bool)
            selected[a.codes] = True
            assert torch.equal(row_nonzero, selected) and not selected.all()
            torch.testing.assert_close(rr.grad, w)  # straight-through to the residual


def test_noise_scale_is_detached_and_scales_noise():
    r, e = _toy()
    e.requires_grad_()
    sigma = torch.tensor(0.5, requires_grad=True)
    a = assign_level(r, e, AssignConfig(), noise_scale=sigma, generator=torch.Generator().manual_seed(0))
    a.emb.sum().backward()
    assert sigma.grad is None and e.grad is not None
    zero = assign_level(r, e, AssignConfig(), noise_scale=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(zero.noisy_logits, zero.logits)


def test_gaussian_noise_is_centred_with_gumbel_std():
    r, e = _toy(b=2000, k=64)
    a = assign_level(r, e, AssignConfig(noise=Noise.GAUSSIAN), noise_scale=2.0, generator=torch.Generator().manual_seed(0))
    noise = a.noisy_logits - a.logits
    assert abs(noise.mean().item()) < 0.02
    assert abs(noise.std().item() - 2.0 * GUMBEL_STD) < 0.03


def test_frqud_noise_only_on_hot_codes():
    r, e = _toy(b=64, k=8)
    hot = torch.tensor([True, False, True, False, False, False, True, False])
    a = assign_level(r, e, AssignConfig(), hot_mask=hot, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.noisy_logits[:, ~hot], a.logits[:, ~hot])  # Eq. 13, cold: exactly clean
    assert (a.noisy_logits[:, hot] != a.logits[:, hot]).all()
    cold = assign_level(r, e, AssignConfig(), noise_scale=10.0, hot_mask=torch.zeros(8, dtype=torch.bool),
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold.codes, cold.logits.argmax(1))
    with pytest.raises(ValueError, match="hot_mask"):
        assign_level(r, e, AssignConfig(), hot_mask=torch.zeros(7, dtype=torch.bool))


@pytest.mark.parametrize("l_gen", [0.5, 1.0, 4.0, 9.0])
def test_sdud_sigma_converges_to_stationary_point(l_gen):
    cfg = AssignConfig(sdud_lambda=1.4, sdud_sigma_init=1.0)
    sdud = SDUDSigma(cfg)
    opt = torch.optim.SGD(sdud.parameters(), lr=0.5)
    for _ in range(3000):
        opt.zero_grad()
        sdud.loss(torch.tensor(l_gen, requires_grad=True)).backward()
        opt.step()
        sdud.project_()
    expected = max(0.0, math.sqrt(l_gen) - 1.4)  # appendix B, Eq. 18
    assert abs(sdud.value - expected) < 1e-3
    assert sdud.value >= 0.0


def test_sdud_loss_formula_and_no_grad_to_lgen():
    sdud = SDUDSigma(AssignConfig(sdud_lambda=1.2, sdud_sigma_init=0.3))
    l_gen = torch.tensor(2.0, requires_grad=True)
    loss = sdud.loss(l_gen)
    assert loss.item() == pytest.approx(2.0 / (2 * 1.5**2) + math.log(1.5), rel=1e-6)
    loss.backward()
    assert l_gen.grad is None and sdud.sigma.grad is not None


def test_frequency_ema_hand_case():
    ema = FrequencyEMA(n_levels=2, codebook_size=4, beta=0.25)
    torch.testing.assert_close(ema.freq, torch.full((2, 4), 0.25))
    codes = torch.tensor([[0, 2], [0, 2], [1, 2], [3, 2]])
    f_hat = ema.update(codes)
    torch.testing.assert_close(f_hat, torch.tensor([[0.5, 0.25, 0.0, 0.25], [0.0, 0.0, 1.0, 0.0]]))
    expected = torch.tensor([[0.4375, 0.25, 0.0625, 0.25], [0.0625, 0.0625, 0.8125, 0.0625]])  # Eq. 10
    torch.testing.assert_close(ema.freq, expected)
    # Eq. 11-12: gamma = r / K
    assert ema.hot_masks(1.5).tolist() == [[True, False, False, False], [False, False, True, False]]
    assert ema.hot_masks(0.5).tolist() == [[True, True, False, True], [False, False, True, False]]
    assert ema.hot_counts(0.5) == [3, 1]
    clone = FrequencyEMA(2, 4, beta=0.9)
    clone.load_state_dict(ema.state_dict())
    assert torch.equal(clone.freq, ema.freq) and clone.beta == 0.25
    with pytest.raises(ValueError, match="codes must lie"):
        ema.update(torch.tensor([[0, 4]]))


def test_frequency_ema_from_config_uses_beta():
    ema = FrequencyEMA.from_config(AssignConfig(frqud_beta=0.5), n_levels=1, codebook_size=2)
    ema.update(torch.tensor([[0], [0]]))
    torch.testing.assert_close(ema.freq, torch.tensor([[0.75, 0.25]]))


def test_tau_at_epoch():
    assert tau_at_epoch(AssignConfig(tau=2.0), 50) == 2.0
    assert tau_at_epoch(AssignConfig(tau=2.0, decay=Decay.SDUD), 50) == 2.0
    cfg = AssignConfig(tau=2.0, decay=Decay.TAU_ANNEAL, tau_anneal_rate=0.3, tau_anneal_min=0.1)
    assert tau_at_epoch(cfg, 0) == 2.0
    assert tau_at_epoch(cfg, 2) == pytest.approx(2.0 * math.exp(-0.6))
    assert tau_at_epoch(cfg, 100) == 0.1
