"""UniGRec (Li et al., arXiv 2601.17438) on this package's tokenizer, recommender, beam search and metrics.

The recommender reads each history item as *soft identifiers*: per level the assignment probabilities
p_l(k) = softmax(-||r_{l-1} - e_l^k||^2 / tau) (Eq. 14) weight the recommender's own token embeddings of that level
(Eq. 15), so the recommendation loss reaches the tokenizer's encoder and codebooks. Inference, validation and the
decoder's labels use the hard (nearest-code) IDs, as for every other method. Training follows Algorithm 1:

* stage 1 (:func:`pretrain_stage1`): only the tokenizer trains, on L_Recon + lambda_CU L_CU (Eq. 21) through the
  soft identifiers, with tau annealed linearly from tau_max to tau_min (Eq. 16); no L_Quant (section 3.5.1);
* stage 2 (:class:`UniGRecTrainer`): tau fixed at tau_min, L_Joint = L_Rec + lambda_Recon L_Recon
  + lambda_CD^T L_CD^T + lambda_CD^R L_CD^R (Eq. 22) updates recommender and tokenizer together.

L_CU (Eq. 17) is the negative entropy of the batch-averaged assignments; L_CD^T (Eq. 18) aligns the assignment
distributions of the projected mean-pooled encoder output and of the projected teacher embedding of the target;
L_CD^R (Eq. 19-20) is a symmetric in-batch InfoNCE between the projected first decoder state and the teacher
embedding. Which components run is ``UniGRecConfig.parts`` (Table 3's M0-M6). Choices where the paper is silent
are in the README ("UniGRec") and cited at the lines that make them.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .assignment import neg_sq_dist
from .checkpoint import atomic_torch_save, fingerprint
from .config import AssignConfig, JointConfig, Labels, Method, UniGRecConfig, UniGRecPart, UniGRecVariant
from .joint import BatchSID, JointTokenizer, assign_config_for, soft_token_embeddings  # noqa: F401 (Eq. 15)
from .metrics import collision_rate
from .progress import progress_bar
from .records import read_json, write_json
from .rqvae import RQVAE, TokenizeOut
from .runtime import autocast
from .training import StepLoss, Trainer

# What UniGRec fixes of the joint-training switches (recorded in the run's config): no noise, soft probabilities;
# labels and the history's hard tokens come from the IDs refreshed every epoch (the authors' train.py rebuilds
# its item -> code table after every epoch); the gradient reaches the tokenizer (through the soft identifiers).
ASSIGN = assign_config_for(Method.UNIGREC, AssignConfig())
JOINT = JointConfig(labels=Labels.DETERMINISTIC)
CU_EPS = 1e-10  # inside the log of Eq. 17 (the authors' SoftVectorQuantizer)
PRE_GRAD_CLIP = 1.0  # stage 1 clips the tokenizer's gradient norm at 1 (the authors' rqvae/trainer.py)
# metrics.json's label of each variant: the row names of Table 3 (resources/paper_tables.json, unigrec)
TABLE3_ROWS = {UniGRecVariant.M0: "M0: TIGER", UniGRecVariant.M1: "M1: + Soft Identifier",
               UniGRecVariant.M2: "M2: + Joint Training", UniGRecVariant.M3: "M3: + L_CU",
               UniGRecVariant.M4: "M4: + L_CD^T", UniGRecVariant.M5: "M5: + L_CD^R",
               UniGRecVariant.M6: "M6: UniGRec (Full)"}


# ----------------------------------------------------------------------------------------------------------------
# The pieces of section 3, as functions
# ----------------------------------------------------------------------------------------------------------------
def anneal_tau(cfg: UniGRecConfig, step: int, total_steps: int) -> float:
    """Eq. 16: tau_max - step / total_step (tau_max - tau_min) over stage 1, tau_min from then on."""
    if step >= total_steps:
        return cfg.tau_min
    return cfg.tau_max - max(step, 0) / total_steps * (cfg.tau_max - cfg.tau_min)


class SoftIDs(NamedTuple):
    probs: Tensor  # [B, m, K] assignment probabilities p_l(k) (Eq. 14)
    level_embs: Tensor  # [B, m, D] sum_k p_l(k) e_l^k
    quantized: Tensor  # [B, D] sum over levels (the decoder's input, Eq. 5 with soft assignments)
    codes: Tensor  # [B, m] most probable code per level


def soft_assign(z: Tensor, codebooks: Tensor, tau: float) -> SoftIDs:
    """Eq. 14 at every level; the next level quantises the residual left by the probability-weighted codeword
    (the soft version of Eq. 4, as the authors' ``forward_soft``). As tau -> 0 this is the hard RQ chain."""
    if tau <= 0:
        raise ValueError(f"tau={tau} must be > 0 (Eq. 14)")
    residual, probs, embs = z, [], []
    for codebook in codebooks:
        p = F.softmax(neg_sq_dist(residual, codebook) / tau, dim=-1)
        e = p @ codebook
        residual = residual - e
        probs.append(p)
        embs.append(e)
    level_embs = torch.stack(embs, 1)
    probs_t = torch.stack(probs, 1)
    return SoftIDs(probs_t, level_embs, level_embs.sum(1), probs_t.argmax(-1))


def codeword_uniformity(probs: Tensor) -> Tensor:
    """Eq. 17: sum_l sum_k p_bar_l(k) log p_bar_l(k) with p_bar the batch-averaged assignment [B, m, K] -> scalar.
    Minimal (-m log K) when every level's average is uniform, 0 when one code takes all the mass. At small tau a code
    nobody in the batch uses has p_bar = 0 exactly, where d(p log p)/dp = -inf turns the softmax's gradient into NaN;
    log(p_bar + CU_EPS) keeps it finite (the authors' code adds the same 1e-10)."""
    p_bar = probs.mean(0)
    return (p_bar * torch.log(p_bar + CU_EPS)).sum()


def assignment_log_probs(z: Tensor, codebooks: Tensor, tau: float) -> Tensor:
    """Log assignment distributions [B, m, K] of latents ``z`` (Eq. 14 at temperature ``tau``) along the
    nearest-code residual chain, as the authors' ``_get_code_logits`` walks it (at stage 2's tau_min the soft
    residuals equal these)."""
    residual, out = z, []
    for codebook in codebooks:
        logits = neg_sq_dist(residual, codebook)
        out.append(F.log_softmax(logits / tau, dim=-1))
        residual = residual - codebook[logits.detach().argmax(-1)]
    return torch.stack(out, 1)


def symmetric_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Eq. 18: sum over levels of KL(P || Q) + KL(Q || P), averaged over the rows. [B, m, K] log-probabilities."""
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum((1, 2)).mean()


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Eq. 19 with cosine similarity: row i of ``a`` should pick row i of ``b`` among all rows. Averaged over the
    rows (the authors' code: ``F.cross_entropy``) where Eq. 19 sums, so its weight does not scale with the batch."""
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / tau
    return F.cross_entropy(sim, torch.arange(len(a), device=a.device))


def symmetric_info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Eq. 20: L_InfoNCE(A, B) + L_InfoNCE(B, A)."""
    return info_nce(a, b, tau) + info_nce(b, a, tau)


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Average pooling of H^Enc [B, L, d] over the real (unpadded) tokens ``mask`` [B, L] (section 3.4.1)."""
    w = mask.to(states.dtype)[..., None]
    return (states * w).sum(1) / w.sum(1).clamp(min=1)


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: tokenizer pretraining with soft identifiers (Algorithm 1, lines 2-10)
# ----------------------------------------------------------------------------------------------------------------
def _soft_recon(rqvae: RQVAE, x: Tensor, tau: float) -> tuple[Tensor, SoftIDs]:
    """L_Recon of Eq. 7 through the soft identifiers: the decoder reads sum_l sum_k p_l(k) e_l^k."""
    soft = soft_assign(rqvae.encode(x), rqvae.codebooks, tau)
    return F.mse_loss(rqvae.decoder(soft.quantized), rqvae.normalize(x)), soft


@torch.no_grad()
def max_probs(rqvae: RQVAE, x: Tensor, tau: float) -> list[float]:
    """Mean over items of each level's largest assignment probability at ``tau``: 1 = hard identifiers."""
    training = rqvae.training
    rqvae.eval()
    p = torch.cat([soft_assign(rqvae.encode(x[i:i + 4096]), rqvae.codebooks, tau).probs.amax(-1)
                   for i in range(0, len(x), 4096)])
    rqvae.train(training)
    return [float(v) for v in p.mean(0)]


def pretrain_stage1(rqvae: RQVAE, x: Tensor, cfg: UniGRecConfig, *, seed: int, progress: bool = True) -> list[dict]:
    """Stage 1 (section 3.5.1) on ``rqvae`` in place: only the tokenizer trains (encoder, codebooks, decoder), on
    L_Pre = L_Recon + lambda_CU L_CU (Eq. 21; L_CU only when the variant has it) with tau updated every step (Eq. 16,
    Algorithm 1 line 5). AdamW (lr ``pre_lr``, the tokenizer's own weight decay), batches of ``pre_batch_size``
    items. Returns one record per epoch (tau at its end, losses, collision rate of the hard IDs, max probabilities)."""
    use_cu = cfg.has(UniGRecPart.CU)
    params = [p for p in rqvae.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.pre_lr, weight_decay=rqvae.cfg.weight_decay)
    g = torch.Generator().manual_seed(int(seed))
    per_epoch = math.ceil(len(x) / cfg.pre_batch_size)
    total, step, history = cfg.pre_epochs * per_epoch, 0, []
    bar = progress_bar(range(1, cfg.pre_epochs + 1), desc="UniGRec stage 1", disable=not progress, unit="epoch")
    for epoch in bar:
        rqvae.train()
        sums = {"loss": 0.0, "loss_recon": 0.0, "loss_cu": 0.0}
        for idx in torch.randperm(len(x), generator=g).split(cfg.pre_batch_size):
            tau = anneal_tau(cfg, step, total)
            recon, soft = _soft_recon(rqvae, x[idx.to(x.device)], tau)
            cu = codeword_uniformity(soft.probs)
            loss = recon + cfg.lambda_cu * cu if use_cu else recon
            if not torch.isfinite(loss):
                raise FloatingPointError(f"UniGRec stage 1: loss {loss.item()} at epoch {epoch} (tau {tau:g}); "
                                         "lower unigrec_pre_lr or raise unigrec_tau_min")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, PRE_GRAD_CLIP)
            opt.step()
            step += 1
            for key, value in (("loss", loss), ("loss_recon", recon), ("loss_cu", cu)):
                sums[key] += value.item() * len(idx) / len(x)
        tau = anneal_tau(cfg, step, total)
        rec = {"epoch": epoch, "tau": tau, **sums, "collision_rate": collision_rate(rqvae.deterministic_codes(x))}
        rec.update({f"max_prob_l{j}": v for j, v in enumerate(max_probs(rqvae, x, tau))})
        history.append(rec)
        bar.set_postfix(recon=f"{rec['loss_recon']:.4f}", coll=f"{rec['collision_rate']:.3f}", refresh=False)
    return history


def _state_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_stage1(rqvae: RQVAE, x: Tensor, cfg: UniGRecConfig, *, seed: int, cache_dir: Path | str | None = None,
           progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Run stage 1 on ``rqvae`` in place, or load its result from ``cache_dir/<key>/`` when this tokenizer (its
    weights before stage 1) already went through the same stage 1. The variants that share a stage 1 (M1-M2;
    M3-M6) then pretrain once."""
    if cfg.pre_epochs == 0:
        return []
    key = fingerprint({"tokenizer": _state_hash(rqvae), "seed": seed, "cu": cfg.has(UniGRecPart.CU),
                       **{k: getattr(cfg, k) for k in ("tau_max", "tau_min", "pre_epochs", "pre_batch_size", "pre_lr",
                                                       "lambda_cu")}})
    folder = None if cache_dir is None else Path(cache_dir) / key
    if folder is not None and (folder / "rqvae.pt").is_file():
        rqvae.load_state_dict(torch.load(folder / "rqvae.pt", map_location="cpu"))
        log(f"UniGRec stage 1: reusing the pretrained tokenizer {key} (same tokenizer and stage-1 settings)")
        return read_json(folder / "history.json")
    t0 = time.time()
    history = pretrain_stage1(rqvae, x, cfg, seed=seed, progress=progress)
    log(f"UniGRec stage 1: {cfg.pre_epochs} epochs in {time.time() - t0:.0f} s, tau {cfg.tau_max:g} -> "
        f"{cfg.tau_min:g}, collision rate {history[-1]['collision_rate']:.4f}")
    if folder is not None:
        write_json(folder / "history.json", history)
        atomic_torch_save(rqvae.state_dict(), folder / "rqvae.pt")  # written last: its presence means complete
    return history


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: the tokenizer side of the training step
# ----------------------------------------------------------------------------------------------------------------
class UniGRecTokenizer(JointTokenizer):
    """The joint-training bridge with soft identifiers: every step the batch's items are tokenised at tau_min; the
    history reads Eq. 15's mixture of the recommender's token embeddings (the decoder reads hard tokens, as the
    authors' ``SoftT5`` does); the conflict (4th) token of each ID stays hard. Holds the distillation projections
    and the teacher's item embeddings."""

    decoder_extras = False

    def __init__(self, rqvae: RQVAE, item_emb: Tensor, cfg: UniGRecConfig, d_model: int, seed: int,
                 teacher: Tensor | None = None):
        super().__init__(rqvae, ASSIGN, item_emb, d_model, seed, joint=JOINT)
        self.proj = nn.ModuleList()  # DIGER's W_j are not part of UniGRec
        self.cfg, self.tau = cfg, cfg.tau_min  # stage 2 keeps tau at tau_min (Algorithm 1, line 12)
        cd = (cfg.has(UniGRecPart.CDT), cfg.has(UniGRecPart.CDR))
        if any(cd):
            if teacher is None:
                raise ValueError("UniGRec's collaborative distillation (parts cdt/cdr) needs the teacher's item "
                                 "embeddings; variants M0-M3 need none")
            if teacher.shape[0] != len(item_emb):
                raise ValueError(f"teacher has {teacher.shape[0]} rows, the catalogue {len(item_emb)} items")
            self.register_buffer("teacher", teacher.float(), persistent=False)
        d_t = teacher.shape[1] if teacher is not None else 0
        # section 3.4.1: linear layers into the tokenizer's input (its standardised input space: the encoder MLP reads
        # them directly); section 3.4.2: decoder state -> teacher dimension
        self.cd_enc = nn.Linear(d_model, rqvae.in_dim) if cd[0] else None
        self.cd_tea = nn.Linear(d_t, rqvae.in_dim) if cd[0] else None
        self.cd_dec = nn.Linear(d_model, d_t) if cd[1] else None

    @property
    def trains_tokenizer(self) -> bool:
        return self.cfg.has(UniGRecPart.JOINT) and any(p.requires_grad for p in self.rqvae.parameters())

    def recommender_parameters(self) -> list[nn.Parameter]:
        """The distillation projections train with the recommender (the paper names no optimiser for them)."""
        return [p for m in (self.cd_enc, self.cd_tea, self.cd_dec) if m is not None for p in m.parameters()]

    def tokenizer_parameters(self, lr: float) -> list[nn.Parameter]:
        """Encoder, codebooks and decoder (L_Recon needs it) when the variant trains jointly, else none (frozen)."""
        chosen = list(self.rqvae.parameters()) if self.cfg.has(UniGRecPart.JOINT) and lr > 0 else []
        for p in self.rqvae.parameters():
            p.requires_grad_(bool(chosen))
        return chosen

    def batch_sid(self, items: Tensor, count: Tensor | None = None, embed_table: Tensor | None = None) -> BatchSID:
        """Soft identifiers of ``items`` [U]. ``extras`` [U, m+1, d] turn the hard token's embedding into Eq. 15's
        mixture (mixture - hard row: the model adds the hard row back, so value and gradient are the mixture's)."""
        if embed_table is None:
            raise ValueError("UniGRec's soft identifiers need the recommender's token table (embed_table)")
        x = self.item_emb[items]
        z = self.rqvae.encode(x)
        soft = soft_assign(z, self.rqvae.codebooks, self.tau)
        full = self.table[items]  # hard IDs of the last refresh: the labels and the history's hard tokens
        tokens = self.vocab.codes_to_tokens(full)
        m = self.n_levels
        mix = soft_token_embeddings(soft.probs, embed_table, self.vocab) - F.embedding(tokens[:, :m], embed_table)
        extras = torch.cat([mix, mix.new_zeros(len(items), 1, mix.shape[-1])], 1)
        recon = F.mse_loss(self.rqvae.decoder(soft.quantized), self.rqvae.normalize(x))  # L_Recon (Eq. 7)
        out = TokenizeOut(z, soft.codes, self.rqvae._argmax_chain(z.detach()), soft.level_embs, soft.quantized,
                          soft.probs, z.new_zeros(()), recon)
        return BatchSID(tokens, extras, soft.codes, out.det_codes, full[:, :-1], out)

    @torch.no_grad()
    def token_table(self, table: Tensor) -> Tensor:
        """Inference reads hard IDs: the plain token table."""
        return table.detach().clone()

    def cd_tokenizer_loss(self, h_enc: Tensor, targets: Tensor) -> Tensor:
        """Eq. 18 for pooled encoder states [B, d] and target items [B]: both projected into the tokenizer's input,
        encoded, and their assignment distributions (temperature ``cdt_tau``) aligned by a symmetric KL."""
        rq, tau = self.rqvae, self.cfg.cdt_tau
        log_p = assignment_log_probs(rq.encoder(self.cd_enc(h_enc)), rq.codebooks, tau)
        log_q = assignment_log_probs(rq.encoder(self.cd_tea(self.teacher[targets])), rq.codebooks, tau)
        return symmetric_kl(log_p, log_q)

    def cd_recommender_loss(self, h_dec: Tensor, targets: Tensor) -> Tensor:
        """Eq. 20 for first decoder states [B, d] (projected to the teacher's size) and target items [B]."""
        return symmetric_info_nce(self.cd_dec(h_dec), self.teacher[targets], self.cfg.infonce_tau)


class UniGRecTrainer(Trainer):
    """Stage 2 of Algorithm 1 in the package's training loop (validation, early stopping, checkpoints, per-epoch
    diagnostics unchanged). One forward and backward per batch: the in-batch InfoNCE of L_CD^R needs the whole
    batch, so ``micro_batch_size`` does not apply."""

    joint: UniGRecTokenizer
    stage1_history: list[dict]  # stage 1's per-epoch record (set by pipeline.make_trainer)

    def _batch_backward(self, idx: np.ndarray, inputs: tuple) -> StepLoss:
        """Eq. 22 for one batch; the distillation terms on the batch's distinct targets (the authors' code
        de-duplicates them, so no item is its own in-batch negative)."""
        input_ids, mask, labels, input_extra, _, sid, _ = inputs
        j, cfg = self.joint, self.joint.cfg
        with autocast(self.amp_dtype, self.device):  # the recommender only; the distillation losses stay fp32
            s = self.model.forward_states(input_ids, mask, labels, input_extra=input_extra)
        loss, parts = s.loss, {}
        if j.trains_tokenizer:
            loss = loss + cfg.lambda_recon * sid.out.loss_recon
        targets = self.split.train.target[idx]
        first = torch.from_numpy(np.unique(targets, return_index=True)[1]).to(self.device)
        targets = torch.from_numpy(targets).to(self.device)[first]
        if cfg.has(UniGRecPart.CDT):
            cdt = j.cd_tokenizer_loss(masked_mean(s.enc, mask)[first], targets)
            loss, parts["loss_cdt"] = loss + cfg.lambda_cdt * cdt, cdt.item()
        if cfg.has(UniGRecPart.CDR):
            cdr = j.cd_recommender_loss(s.dec[:, 0][first], targets)  # first-token pooling of H^Dec
            loss, parts["loss_cdr"] = loss + cfg.lambda_cdr * cdr, cdr.item()
        loss.backward()
        return StepLoss(loss.detach(), s.loss.detach(), parts)

    def dynamics(self, det: Tensor, train_rec: dict[str, float] | None = None) -> dict[str, float]:
        """The joint-training record plus stage 2's tau and how hard the soft identifiers are."""
        rec = super().dynamics(det, train_rec)
        rec["tau"] = self.joint.tau
        for j, v in enumerate(max_probs(self.joint.rqvae, self.joint.item_emb, self.joint.tau)):
            rec[f"max_prob_l{j}"] = v
        return rec
