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
from .config import (AssignConfig, Coupling, Decay, FrqudMode, JointConfig, Labels, Method, Noise, ProjInit,
                     TokenizerTrain, Update)
from .rqvae import RQVAE, TokenizeOut, add_conflict_codes
from .vocab import SIDVocab


def assign_config_for(method: Method, assign: AssignConfig) -> AssignConfig:
    """STE is fixed by definition (argmax, no noise, hard update, Fig. 3), UniGRec by its own (no noise, soft);
    DIGER takes the user's switches."""
    if method == Method.STE:
        return AssignConfig(noise=Noise.NONE, update=Update.HARD, decay=Decay.NONE, tau=assign.tau)
    if method == Method.UNIGREC:  # soft identifiers without noise (UniGRec Eq. 14); its tau lives in unigrec.py
        return AssignConfig(noise=Noise.NONE, update=Update.SOFT, decay=Decay.NONE)
    return assign


def tokenizer_params(rqvae: nn.Module, which: TokenizerTrain, lr: float) -> list[nn.Parameter]:
    """The tokenizer parameters the tokenizer optimiser moves; the others are frozen (requires_grad False).
    The decoder is not used in joint training (section 4.3) and never trains."""
    if lr == 0 or which is TokenizerTrain.NONE:
        chosen = []
    elif which is TokenizerTrain.ALL:
        chosen = list(rqvae.encoder.parameters()) + [rqvae.codebooks]
    elif which is TokenizerTrain.CODEBOOKS:
        chosen = [rqvae.codebooks]
    else:  # LAST_LAYER: the encoder's output Linear + codebooks
        last = [m for m in rqvae.encoder if isinstance(m, nn.Linear)][-1]
        chosen = list(last.parameters()) + [rqvae.codebooks]
    ids = {id(p) for p in chosen}
    for p in rqvae.parameters():
        p.requires_grad_(id(p) in ids)
    return chosen


def soft_token_embeddings(probs: torch.Tensor, table: torch.Tensor, vocab: SIDVocab) -> torch.Tensor:
    """Each level's K probabilities times that level's block of the recommender's token table (UniGRec Eq. 15):
    [B, m, K] -> [B, m, d]; a one-hot row gives the plain lookup."""
    K = vocab.codebook_size
    return torch.stack([probs[:, j] @ table[vocab.level_offset(j):vocab.level_offset(j) + K]
                        for j in range(probs.shape[1])], 1)


class BatchSID(NamedTuple):
    tokens: torch.Tensor  # [U, m+1] token ids the recommender reads and predicts (sampled IDs or the epoch table)
    extras: torch.Tensor | None  # [U, m+1, d_model] differentiable additions to the input embeddings (None: no coupling)
    codes: torch.Tensor  # [U, m] forward (sampled) codes
    det_codes: torch.Tensor  # [U, m] deterministic codes (same tokenizer state)
    train_codes: torch.Tensor  # [U, m] the codes behind ``tokens``
    out: TokenizeOut
    # coupling="embeddings": p - stopgrad(p) of the soft probabilities [U, m, K] (value 0): the labels' path (Eq. 8)
    label_soft: torch.Tensor | None = None


class JointTokenizer(nn.Module):
    decoder_extras = True  # the target's additions also enter the decoder inputs (UniGRec: history only)

    def __init__(self, rqvae: RQVAE, assign: AssignConfig, item_emb: torch.Tensor, d_model: int, seed: int,
                 joint: JointConfig | None = None):
        super().__init__()
        self.rqvae = rqvae
        self.assign = assign
        self.joint = joint or JointConfig()
        m, K, D = rqvae.codebooks.shape
        self.n_levels, self.K = m, K
        self.vocab = SIDVocab(m + 1, K)
        self.proj = nn.ModuleList([nn.Linear(D, d_model, bias=False) for _ in range(m)])
        if self.joint.proj_init is ProjInit.ZERO:  # W = 0: the first step is exactly Two-Stage's
            for p in self.proj:
                nn.init.zeros_(p.weight)
        decay = assign.decay
        self.sigma = SDUDSigma(assign) if decay in (Decay.SDUD, Decay.SDUD_FRQUD) else None
        self.per_item = decay in (Decay.FRQUD, Decay.SDUD_FRQUD) and assign.frqud_mode is FrqudMode.PER_ITEM
        beta = assign.frqud_momentum if self.per_item else assign.frqud_beta  # per step (authors) | per epoch (Eq. 10)
        self.freq = FrequencyEMA(m, K, beta) if decay in (Decay.FRQUD, Decay.SDUD_FRQUD) else None
        self.register_buffer("item_emb", item_emb.float(), persistent=False)
        self.register_buffer("conflict", torch.zeros(len(item_emb), dtype=torch.long))
        self.register_buffer("table", torch.zeros(len(item_emb), m + 1, dtype=torch.long))  # IDs at the last refresh
        self.generator = torch.Generator(device=item_emb.device).manual_seed(seed)
        self.epoch = 0

    # -- ID bookkeeping ---------------------------------------------------------------------------
    @torch.no_grad()
    def refresh_ids(self) -> torch.Tensor:
        """Deterministic (argmax, noise-free) IDs of every item; recomputes the conflict codes."""
        det = self.rqvae.deterministic_codes(self.item_emb)
        full = add_conflict_codes(det, self.K, overflow="share")
        self.conflict.copy_(full[:, -1])
        self.table.copy_(full)  # labels="deterministic" reads this table until the next refresh
        return det

    def full_ids(self, det: torch.Tensor) -> torch.Tensor:
        return torch.cat([det, self.conflict[:, None]], dim=1)

    def set_epoch(self, epoch: int, det_codes: torch.Tensor | None = None) -> None:
        """Start-of-epoch update of the decay state (FrqUD hot sets use the EMA over epochs, Eq. 10)."""
        self.epoch = epoch
        if self.freq is not None and det_codes is not None and not self.per_item:
            self.freq.update(det_codes)

    def hot_masks(self) -> torch.Tensor | None:
        if self.freq is None or self.per_item:
            return None
        return self.freq.hot_masks(self.assign.frqud_r).to(self.item_emb.device)

    @torch.no_grad()
    def hot_items(self, x: torch.Tensor, count: torch.Tensor | None) -> torch.Tensor:
        """FrqUD per item (the authors' code): fold the level codes of the counted items (the batch's
        targets) into the per-step EMA, then mark the items whose level-1 deterministic code is hot."""
        det = self.rqvae.deterministic_codes(x)
        self.freq.update(det if count is None else det[count])
        hot = self.freq.hot_masks(self.assign.frqud_r)[0].to(det.device)
        return hot[det[:, 0]]

    def noise_scale(self) -> float:
        return 1.0 if self.sigma is None else self.sigma.value

    # -- What trains ----------------------------------------------------------------------------------
    def recommender_parameters(self) -> list[nn.Parameter]:
        """Parameters the recommender's optimiser moves besides the model's: the projections W_j (which only the
        ``gradient`` and ``none`` couplings hold in the optimiser; ``embeddings`` reads no W_j e)."""
        return [] if self.joint.coupling is Coupling.EMBEDDINGS else list(self.proj.parameters())

    def tokenizer_parameters(self, lr: float) -> list[nn.Parameter]:
        """Parameters the tokenizer's optimiser moves (the others are frozen)."""
        return tokenizer_params(self.rqvae, self.joint.tokenizer_train, lr)

    def own_loss(self, sid: "BatchSID") -> torch.Tensor | None:
        """L_vq + L_recon to send back through the tokenizer with L_gen (section 4.3); None when no tokenizer
        parameter trains or ``tokenizer_losses`` is off."""
        loss = sid.out.loss_vq + sid.out.loss_recon
        return loss if loss.requires_grad and self.joint.tokenizer_losses else None

    # -- Forward --------------------------------------------------------------------------------------
    def batch_sid(self, items: torch.Tensor, count: torch.Tensor | None = None,
                  embed_table: torch.Tensor | None = None) -> BatchSID:
        """Tokenise ``items`` [U] (unique item ids) with the current assignment rule (section 4.1). ``count``
        [U] bool marks the items FrqUD per item counts (the batch's targets; None = all). ``embed_table`` (the
        recommender's token table) is not needed here: UniGRec's soft identifiers read it."""
        x = self.item_emb[items]
        rows = self.hot_items(x, count) if self.per_item and self.training else None
        out = self.rqvae.tokenize(x, self.assign, noise_scale=self.noise_scale(), hot_masks=self.hot_masks(),
                                  row_mask=rows, tau=tau_at_epoch(self.assign, self.epoch), generator=self.generator)
        if self.joint.labels is Labels.DETERMINISTIC:  # the authors' trainer: the epoch's deterministic table
            full = self.table[items]
        else:  # the step's sampled codes; the conflict code from the last refresh
            full = torch.cat([out.codes, self.conflict[items, None]], dim=1)
        tokens = self.vocab.codes_to_tokens(full)
        extra = label_soft = None  # [U, m, d] additions to the m code tokens' embeddings (the conflict token's: 0)
        if self.joint.coupling is Coupling.GRADIENT:
            extra = torch.stack([p(out.level_embs[:, j]) for j, p in enumerate(self.proj)], dim=1)
        elif self.joint.coupling is Coupling.EMBEDDINGS:
            # Eq. 7-8 as the authors' true-e2e code does it: the token the recommender reads is the hard one (its
            # embedding row, exactly Two-Stage's forward); the gradient reaches the assignment through the
            # Gumbel-softmax probabilities: d/dp of (p @ E_j) on inputs and decoder inputs, and of -p . log p_model
            # on the labels (training.gen_backward). p - stopgrad(p) carries that gradient with value 0.
            if embed_table is None:
                raise ValueError("coupling='embeddings' needs the recommender's token table (embed_table)")
            label_soft = out.soft_probs - out.soft_probs.detach()
            extra = soft_token_embeddings(label_soft, embed_table, self.vocab)
        extras = None if extra is None else torch.cat([extra, extra.new_zeros(len(items), 1, extra.shape[-1])], 1)
        return BatchSID(tokens, extras, out.codes, out.det_codes, full[:, :-1], out, label_soft)

    @torch.no_grad()
    def token_table(self, table: torch.Tensor) -> torch.Tensor:
        """Inference embeddings: deterministic codes make each token's addition a function of the token,
        so ``table[level j, code c] + W_j e_{j,c}`` is a plain lookup table (no per-item work)."""
        eff = table.detach().clone()
        if self.joint.coupling is not Coupling.GRADIENT:  # the recommender never read W e in training
            return eff
        K, vocab = self.K, self.vocab
        for j, p in enumerate(self.proj):
            start = vocab.level_offset(j)
            eff[start:start + K] += p(self.rqvae.codebooks[j])
        return eff
