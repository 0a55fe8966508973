"""The differentiable bridge between tokenizer and recommender (DIGER section 4, Figure 1b).

At every training step the RQ-VAE tokenizer assigns codes to every item in the batch (history and
target); the recommender reads those codes as tokens, and each token's input embedding is

    table[token] + W_j @ ê_{v,j}

where ``table`` is the recommender's own (TIGER) token embedding and ``ê_{v,j}`` is the level-j codebook
vector chosen for item v. Its forward value is exactly the hard code's vector (Eq. 7); its gradient goes
through the Gumbel-softmax mixture to every codebook row and into the encoder (soft update, Eq. 8), or
only to the selected row plus straight-through to the encoder (hard update, STE). So L_gen reaches the
tokenizer. The 4th (conflict) code is not learned: it is recomputed from the deterministic IDs whenever
the IDs are refreshed (each epoch) so every item's full ID stays unique for the trie.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .assignment import FrequencyEMA, SDUDSigma, tau_at_epoch
from .config import AssignConfig, Decay, Method, Noise, Update
from .rqvae import RQVAE, TokenizeOut, add_conflict_codes
from .vocab import SIDVocab


def assign_config_for(method: Method, assign: AssignConfig) -> AssignConfig:
    """STE is fixed by definition (argmax, no noise, hard update, Fig. 3); DIGER takes the user's switches."""
    if method == Method.STE:
        return AssignConfig(noise=Noise.NONE, update=Update.HARD, decay=Decay.NONE, tau=assign.tau)
    return assign


class BatchSID(NamedTuple):
    tokens: torch.Tensor  # [U, m+1] token ids of the forward (sampled) IDs incl. conflict code
    extras: torch.Tensor  # [U, m+1, d_model] differentiable additions to the input embeddings
    codes: torch.Tensor  # [U, m] forward codes
    det_codes: torch.Tensor  # [U, m] deterministic codes (same tokenizer state)
    out: TokenizeOut


class JointTokenizer(nn.Module):
    def __init__(self, rqvae: RQVAE, assign: AssignConfig, item_emb: torch.Tensor, d_model: int, seed: int):
        super().__init__()
        self.rqvae = rqvae
        self.assign = assign
        m, K, D = rqvae.codebooks.shape
        self.n_levels, self.K = m, K
        self.vocab = SIDVocab(m + 1, K)
        self.proj = nn.ModuleList([nn.Linear(D, d_model, bias=False) for _ in range(m)])
        decay = assign.decay
        self.sigma = SDUDSigma(assign) if decay in (Decay.SDUD, Decay.SDUD_FRQUD) else None
        self.freq = FrequencyEMA(m, K, assign.frqud_beta) if decay in (Decay.FRQUD, Decay.SDUD_FRQUD) else None
        self.register_buffer("item_emb", item_emb.float(), persistent=False)
        self.register_buffer("conflict", torch.zeros(len(item_emb), dtype=torch.long))
        self.generator = torch.Generator(device=item_emb.device).manual_seed(seed)
        self.epoch = 0

    # -- ID bookkeeping ---------------------------------------------------------------------------
    @torch.no_grad()
    def refresh_ids(self) -> torch.Tensor:
        """Deterministic (argmax, noise-free) IDs of every item; recomputes the conflict codes."""
        det = self.rqvae.deterministic_codes(self.item_emb)
        full = add_conflict_codes(det, self.K, overflow="share")
        self.conflict.copy_(full[:, -1])
        return det

    def full_ids(self, det: torch.Tensor) -> torch.Tensor:
        return torch.cat([det, self.conflict[:, None]], dim=1)

    def set_epoch(self, epoch: int, det_codes: torch.Tensor | None = None) -> None:
        """Start-of-epoch update of the decay state (FrqUD hot sets use the EMA over epochs, Eq. 10)."""
        self.epoch = epoch
        if self.freq is not None and det_codes is not None:
            self.freq.update(det_codes)

    def hot_masks(self) -> torch.Tensor | None:
        return None if self.freq is None else self.freq.hot_masks(self.assign.frqud_r).to(self.item_emb.device)

    def noise_scale(self) -> float:
        return 1.0 if self.sigma is None else self.sigma.value

    # -- Forward --------------------------------------------------------------------------------------
    def batch_sid(self, items: torch.Tensor) -> BatchSID:
        """Tokenise ``items`` [U] (unique item ids) with the current assignment rule (section 4.1)."""
        out = self.rqvae.tokenize(self.item_emb[items], self.assign, noise_scale=self.noise_scale(),
                                  hot_masks=self.hot_masks(), tau=tau_at_epoch(self.assign, self.epoch), generator=self.generator)
        codes = out.codes
        full = torch.cat([codes, self.conflict[items, None]], dim=1)
        tokens = self.vocab.codes_to_tokens(full)
        extra = torch.stack([p(out.level_embs[:, j]) for j, p in enumerate(self.proj)], dim=1)  # [U, m, d]
        extras = torch.cat([extra, extra.new_zeros(len(items), 1, extra.shape[-1])], dim=1)
        return BatchSID(tokens, extras, codes, out.det_codes, out)

    @torch.no_grad()
    def token_table(self, table: torch.Tensor) -> torch.Tensor:
        """Inference embeddings: deterministic codes make each token's addition a function of the token,
        so ``table[level j, code c] + W_j e_{j,c}`` is a plain lookup table (no per-item work)."""
        eff = table.detach().clone()
        K = self.K
        for j, p in enumerate(self.proj):
            start = 2 + j * K
            eff[start:start + K] += p(self.rqvae.codebooks[j])
        return eff
