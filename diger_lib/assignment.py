"""How one quantisation level picks a code during joint training (DIGER sections 4.1-4.2).

* DRIL (Eq. 5-8): similarity logits, Gumbel(0, 1) noise, Gumbel-softmax probabilities, a hard
  argmax code for the forward pass and a soft (probability-weighted) embedding for the backward pass.
* STE / hard update (Fig. 3): the forward code's vector with a straight-through gradient.
* Uncertainty decay: SDUD (Eq. 9, learned noise scale sigma, appendix B) and FrqUD (Eq. 10-13,
  noise only on "hot" codes whose EMA usage frequency exceeds r/K).
* Temperature annealing (Table 4 "-w Gumbel tau annealing") as the non-UD alternative.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AssignConfig, Decay, Noise, Sim, Update

GUMBEL_STD = math.pi / math.sqrt(6.0)  # std of Gumbel(0, 1); Gaussian noise is matched to it


def gumbel_noise(shape_or_tensor: Sequence[int] | torch.Size | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel(0, 1) samples -log(-log U); a tensor argument gives shape, dtype and device."""
    if isinstance(shape_or_tensor, Tensor):
        shape, dtype, device = shape_or_tensor.shape, shape_or_tensor.dtype, shape_or_tensor.device
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
    else:
        shape, dtype, device = tuple(shape_or_tensor), torch.get_default_dtype(), None
        if generator is not None:
            device = generator.device
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    finfo = torch.finfo(dtype)
    u = u.clamp(min=finfo.tiny, max=1.0 - finfo.eps)  # keep both logs finite
    return -torch.log(-torch.log(u))


class LevelAssignment(NamedTuple):
    codes: Tensor  # [B] long, code used in the forward pass (Eq. 7)
    emb: Tensor  # [B, D] e-hat: value codebook[codes]; gradient per Update mode
    soft_probs: Tensor  # [B, K] y-tilde (Eq. 6 / Eq. 13)
    logits: Tensor  # [B, K] clean similarity logits l (Eq. 5)
    noisy_logits: Tensor  # [B, K] l + g (g = 0 on cold codes under FrqUD)


def neg_sq_dist(residual: Tensor, codebook: Tensor) -> Tensor:
    """Eq. 5 with sim = -||r - e||^2, so the noise-free argmax is RQ-VAE's nearest code. [B, K]."""
    r2 = residual.pow(2).sum(-1, keepdim=True)
    e2 = codebook.pow(2).sum(-1)
    return -(r2 - 2.0 * residual @ codebook.t() + e2)


def scaled_logits(residual: Tensor, codebook: Tensor, sim: Sim = Sim.DISTANCE) -> Tensor:
    """Eq. 5 logits [B, K] at the chosen scale (the paper does not give one; README note 5). Every scale is a
    positive multiple of -||r - e||^2 (plus a constant), so the noise-free argmax is always the nearest code."""
    logits = neg_sq_dist(residual, codebook)
    if sim is Sim.GAUSSIAN:  # log-likelihood under the quantiser's own per-dimension error (detached scale)
        s2 = (-logits.detach()).min(dim=-1).values.mean().clamp(min=1e-12) / residual.shape[1]
        logits = logits / (2 * s2)
    elif sim is Sim.MINMAX:  # the authors' code: distances min-max rescaled to [-1, 1] over the batch, logits = -d
        d = -logits.detach()
        mid = (d.max() + d.min()) / 2
        amp = (d.max() - mid).clamp(min=1e-5)
        logits = (logits + mid) / amp
    return logits


def _noise(logits: Tensor, cfg: AssignConfig, noise_scale: float | Tensor, generator: torch.Generator | None) -> Tensor | None:
    if cfg.noise is Noise.NONE:
        return None
    if isinstance(noise_scale, Tensor):
        noise_scale = noise_scale.detach().to(logits.device, logits.dtype)  # only L_sigma trains sigma
    if cfg.noise is Noise.GUMBEL:
        g = gumbel_noise(logits, generator=generator)  # Eq. 6, g ~ Gumbel(0, 1)
    else:  # Table 4 "-w Gaussian Noise": zero mean, same std as Gumbel(0, 1)
        g = torch.randn(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device) * GUMBEL_STD
    return g * noise_scale


def assign_level(
    residual: Tensor,
    codebook: Tensor,
    cfg: AssignConfig,
    *,
    noise_scale: float | Tensor = 1.0,
    hot_mask: Tensor | None = None,
    row_mask: Tensor | None = None,
    tau: float | None = None,
    generator: torch.Generator | None = None,
) -> LevelAssignment:
    """Pick one code per row of ``residual`` [B, D] from ``codebook`` [K, D] (Eq. 5-8, 13)."""
    if residual.dim() != 2 or codebook.dim() != 2 or residual.shape[1] != codebook.shape[1]:
        raise ValueError(f"residual {tuple(residual.shape)} and codebook {tuple(codebook.shape)} must be [B, D] and [K, D]")
    tau = cfg.tau if tau is None else float(tau)
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0")
    logits = scaled_logits(residual, codebook, cfg.sim)  # Eq. 5
    noise = _noise(logits, cfg, noise_scale, generator)
    if noise is not None and hot_mask is not None:  # Eq. 13: noise only on hot codes, cold codes keep clean logits
        if hot_mask.shape != (codebook.shape[0],) or hot_mask.dtype != torch.bool:
            raise ValueError(f"hot_mask must be a bool tensor of shape ({codebook.shape[0]},), got {hot_mask.dtype} {tuple(hot_mask.shape)}")
        noise = torch.where(hot_mask.to(logits.device)[None, :], noise, torch.zeros_like(noise))
    if noise is not None and row_mask is not None:  # FrqUD per item (authors' code): noise on hot items' rows only
        if row_mask.shape != (residual.shape[0],) or row_mask.dtype != torch.bool:
            raise ValueError(f"row_mask must be a bool tensor of shape ({residual.shape[0]},), got {row_mask.dtype} {tuple(row_mask.shape)}")
        noise = torch.where(row_mask.to(logits.device)[:, None], noise, torch.zeros_like(noise))
    noisy = logits if noise is None else logits + noise
    soft = F.softmax(noisy / tau, dim=-1)  # Eq. 6
    codes = noisy.argmax(dim=-1)  # Eq. 7
    hard = codebook[codes]
    if cfg.update is Update.SOFT:
        # Eq. 8: e~ = y~ @ E. Value: exactly E[codes]; gradient: that of e~ alone (to every row as a
        # weight and through y~ to the logits). Same as e~ + sg(E[c] - e~), but exact in floating point.
        soft_emb = soft @ codebook
        emb = hard.detach() + (soft_emb - soft_emb.detach())
    else:  # hard update / STE (Fig. 3): selected rows, plus straight-through to the residual
        emb = hard + (residual - residual.detach())
    return LevelAssignment(codes, emb, soft, logits, noisy)


class SDUDSigma(nn.Module):
    """Learned Gumbel scale sigma of SDUD (Eq. 9); stationary point max(0, sqrt(L_gen) - lambda) (Eq. 18)."""

    def __init__(self, cfg: AssignConfig) -> None:
        super().__init__()
        self.lam = float(cfg.sdud_lambda)
        self.sigma = nn.Parameter(torch.tensor(float(cfg.sdud_sigma_init)))

    def loss(self, l_gen: Tensor | float) -> Tensor:
        """Eq. 9: L_gen / (2 (sigma + lambda)^2) + log(sigma + lambda); L_gen is a constant here."""
        l_gen = torch.as_tensor(l_gen, dtype=self.sigma.dtype, device=self.sigma.device).detach()
        s = self.sigma + self.lam
        return l_gen / (2.0 * s * s) + torch.log(s)

    @torch.no_grad()
    def project_(self) -> None:
        """Enforce sigma >= 0 (appendix B); call after every optimizer step."""
        self.sigma.clamp_(min=0.0)

    @property
    def value(self) -> float:
        return float(self.sigma.detach())


class FrequencyEMA:
    """EMA code-usage frequencies per level (Eq. 10) and the hot-code sets of Eq. 11-12."""

    def __init__(self, n_levels: int, codebook_size: int, beta: float) -> None:
        if n_levels < 1 or codebook_size < 2:
            raise ValueError(f"need n_levels >= 1 and codebook_size >= 2, got {n_levels}, {codebook_size}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta={beta} must be in [0, 1) (Eq. 10)")
        self.n_levels, self.codebook_size, self.beta = int(n_levels), int(codebook_size), float(beta)
        self.freq = torch.full((self.n_levels, self.codebook_size), 1.0 / self.codebook_size)  # uniform start

    @classmethod
    def from_config(cls, cfg: AssignConfig, n_levels: int, codebook_size: int) -> "FrequencyEMA":
        return cls(n_levels, codebook_size, cfg.frqud_beta)

    @torch.no_grad()
    def update(self, codes: Tensor) -> Tensor:
        """Fold codes [N, m] of one epoch into f (Eq. 10); returns the raw frequencies f-hat [m, K]."""
        if codes.dim() != 2 or codes.shape[1] != self.n_levels or codes.shape[0] == 0:
            raise ValueError(f"codes must be [N>0, {self.n_levels}], got {tuple(codes.shape)}")
        codes = codes.detach().to("cpu", torch.long)
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got range [{int(codes.min())}, {int(codes.max())}]")
        counts = torch.stack([torch.bincount(codes[:, j], minlength=self.codebook_size) for j in range(self.n_levels)])
        f_hat = counts.to(self.freq.dtype) / codes.shape[0]  # sums to 1 per level
        self.freq = self.beta * self.freq + (1.0 - self.beta) * f_hat  # Eq. 10
        return f_hat

    def hot_masks(self, r: float) -> Tensor:
        """[m, K] bool: f_i > gamma = r / K (Eq. 11-12)."""
        if r <= 0:
            raise ValueError(f"threshold ratio r={r} must be > 0 (Eq. 11)")
        return self.freq > r / self.codebook_size

    def hot_counts(self, r: float) -> list[int]:
        return [int(n) for n in self.hot_masks(r).sum(dim=1)]

    def state_dict(self) -> dict[str, Tensor]:
        return {"freq": self.freq.clone(), "beta": torch.tensor(self.beta)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        freq = torch.as_tensor(state["freq"], dtype=torch.float32).cpu()
        if freq.shape != self.freq.shape:
            raise ValueError(f"FrequencyEMA state has shape {tuple(freq.shape)}, expected {tuple(self.freq.shape)}")
        self.freq = freq.clone()
        if "beta" in state:
            self.beta = float(state["beta"])


def tau_at_epoch(cfg: AssignConfig, epoch: int) -> float:
    """Gumbel temperature of an epoch: fixed (section 4.2 footnote) unless Decay.TAU_ANNEAL."""
    if cfg.decay is not Decay.TAU_ANNEAL:
        return float(cfg.tau)
    return max(cfg.tau_anneal_min, cfg.tau * math.exp(-cfg.tau_anneal_rate * epoch))
