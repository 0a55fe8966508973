"""Training loops: Two-Stage (frozen IDs) and joint (STE / DIGER), early stopping, checkpoint-resume.

One loop serves every method. Two-Stage reads a fixed item -> token table; the joint methods ask the
:class:`~diger_lib.joint.JointTokenizer` for every batch's items at every step, so L_gen + L_vq + L_recon (section
4.3) updates the recommender and the tokenizer, with separate learning rates (section 5). Every epoch ends with a
validation pass (deterministic IDs, trie rebuilt from them), an atomic checkpoint of everything needed to continue
exactly, and, for joint methods, the SID-dynamics record of section 8.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import diagnostics as DG
from . import metrics as M
from .checkpoint import atomic_torch_save, fingerprint, load_checkpoint
from .config import EvalIDs, LRSchedule, RecommenderConfig, TrainConfig
from .data import Samples, Split, bucket_batches, make_batch
from .evaluation import evaluate, expand_shared_ids, top_items  # noqa: F401 (their old home)
from .joint import JointTokenizer, tokenizer_params  # noqa: F401 (tokenizer_params: the old home)
from .paths import display_path
from .progress import progress_bar
from .recommender import GenRecModel
from .runtime import autocast, autocast_dtype, resolve_device, rng_state, seed_everything, set_rng_state
from .vocab import SIDVocab


class StepLoss(NamedTuple):
    loss: torch.Tensor  # the batch's loss as the epoch reports it (detached)
    gen: torch.Tensor  # L_gen (Eq. 4), detached
    parts: dict[str, float]  # further loss terms averaged into the epoch's record (none for DIGER's methods)


@dataclass
class TrainResult:
    history: list[dict[str, Any]]  # one record per epoch (epoch 0 = before training, joint methods)
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    item_ids: np.ndarray  # [N, n_tokens] IDs used at the best checkpoint (deterministic + conflict code)
    usage: np.ndarray | None  # [m, K] code counts at the best checkpoint (joint methods)
    wall_seconds: float
    resumed_from: int | None = None
    stop_reason: str = "max_epochs"  # "early_stopping" | "max_epochs" | "time_budget"
    test_ranks: np.ndarray | None = None  # [n_test] 0-based target rank per test user, -1 = not in the top k
    extra: dict[str, Any] = field(default_factory=dict)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch``'s sample draw and batch order (the run's ``seed`` and the epoch number)."""
    return seed * 1000 + epoch


def epoch_subset(n_samples: int, samples_per_epoch: int, seed: int, epoch: int) -> np.ndarray | None:
    """The training samples of ``epoch`` (sorted indices): a fresh seeded subset of ``samples_per_epoch``, or None for
    all of them. The peer TIGER (``peer_tiger.py``) draws its epochs here too, so both see the same samples."""
    if not samples_per_epoch or samples_per_epoch >= n_samples:
        return None
    rng = np.random.default_rng(epoch_seed(seed, epoch))
    return np.sort(rng.choice(n_samples, samples_per_epoch, replace=False))


def epoch_batches(samples: Samples, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    """This epoch's batches: all training samples, or a fresh seeded subset of ``samples_per_epoch``
    (a shorter 'epoch' so IDs are refreshed, validated and checkpointed more often on a slow machine)."""
    seed = epoch_seed(cfg.seed, epoch)
    subset = epoch_subset(len(samples), cfg.samples_per_epoch, cfg.seed, epoch)
    if subset is None:
        return bucket_batches(samples.length, cfg.batch_size, shuffle=True, seed=seed)
    return [subset[b] for b in bucket_batches(samples.length[subset], cfg.batch_size, shuffle=True, seed=seed)]


def gen_backward(model: GenRecModel, micro_batch_size: int, input_ids: torch.Tensor, mask: torch.Tensor,
                 labels: torch.Tensor, input_extra: torch.Tensor | None = None,
                 decoder_extra: torch.Tensor | None = None, sid_loss: torch.Tensor | None = None, *,
                 n_labels: int | None = None, label_soft: torch.Tensor | None = None,
                 amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Backpropagate L_gen (Eq. 4) of one batch, in micro-batches of ``micro_batch_size`` samples (0 = all).

    A speed measure only (activations of ~128 sequences stay in the CPU's cache; 256 do not): each
    micro-batch's mean loss is weighted by its share of the batch's label tokens, so the accumulated
    gradient is the full batch's. For joint methods the micro-batches read detached copies of the
    tokenizer's outputs (``input_extra``, ``decoder_extra``); their gradients are gathered there and then
    sent through the tokenizer in one backward pass together with ``sid_loss`` (L_vq + L_recon), so every
    gradient path of the unsplit step is kept (tests/test_training.py checks equal gradients). ``n_labels`` is
    the label-token count of the whole step when this batch is one rank's share of it (``parallel.py``; default:
    this batch's). ``label_soft`` [B, T, V] (coupling "embeddings", value 0) adds -label_soft . log p_model per label
    token: L_gen's cross-entropy against the soft labels p of Eq. 6, whose forward is the hard label's (the authors'
    true-e2e code), so the labels' gradient reaches the tokenizer too. Only the model's forward passes run under
    ``amp_dtype``'s autocast (``runtime.autocast_dtype``). Returns this batch's share of L_gen (detached)."""
    B, m = input_ids.shape[0], micro_batch_size or input_ids.shape[0]

    def leaf(t: torch.Tensor | None) -> torch.Tensor | None:  # cut the shared graph; its gradient is gathered
        return t.detach().requires_grad_() if t is not None and t.requires_grad else t

    leaf_in, leaf_dec, leaf_lab = leaf(input_extra), leaf(decoder_extra), leaf(label_soft)
    n_labels = int((labels != -100).sum()) if n_labels is None else n_labels
    total = torch.zeros((), device=input_ids.device)
    for s in range(0, B, m):
        sl = slice(s, s + m)
        with autocast(amp_dtype, input_ids.device):
            out = model(input_ids[sl], mask[sl], labels[sl],
                        input_extra=None if leaf_in is None else leaf_in[sl],
                        decoder_extra=None if leaf_dec is None else leaf_dec[sl])
        part = out.loss * (int((labels[sl] != -100).sum()) / max(n_labels, 1))
        if leaf_lab is not None:  # value 0; its gradient -log p_model / n_labels reaches the soft labels
            part = part - (leaf_lab[sl] * F.log_softmax(out.logits.float(), -1)).sum() / max(n_labels, 1)
        part.backward()
        total += part.detach()
    pairs = [(t, lf.grad) for t, lf in ((input_extra, leaf_in), (decoder_extra, leaf_dec), (label_soft, leaf_lab))
             if t is not None and t.requires_grad and lf.grad is not None]
    if sid_loss is not None:  # L_vq + L_recon (None when no tokenizer parameter trains)
        pairs.append((sid_loss, torch.ones_like(sid_loss)))
    if pairs:  # one backward through W_j and the tokenizer for the whole batch
        torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    return total


def label_layout(soft: torch.Tensor, vocab: SIDVocab) -> torch.Tensor:
    """[B, m, K] per-level soft labels -> [B, m+1, V]: level j's K entries at its token block, 0 elsewhere and at
    the conflict code (a hard label)."""
    B, m, K = soft.shape
    out = soft.new_zeros(B, vocab.n_tokens, vocab.size)
    for j in range(m):
        out[:, j, vocab.level_offset(j):vocab.level_offset(j) + K] = soft[:, j]
    return out


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per optimiser step: linear warm-up over ``warmup_steps``, then constant or a cosine
    decay to 0 at ``total_steps`` (the authors' config: 500 warm-up steps, then cosine)."""
    warm = max(cfg.warmup_steps, 1)
    total = max(total_steps, warm + 1)

    def factor(step: int) -> float:
        if step + 1 < warm:
            return (step + 1) / warm
        if cfg.lr_schedule is LRSchedule.CONSTANT:
            return 1.0
        done = min(1.0, (step + 1 - warm) / (total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return factor


# ----------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------
class Trainer:
    """Builds the optimisers and runs epochs with early stopping on validation NDCG@10."""

    def __init__(self, split: Split, cfg: TrainConfig, model_cfg: RecommenderConfig, vocab: SIDVocab, *,
                 item_ids: torch.Tensor | None = None, joint: JointTokenizer | None = None,
                 ckpt_dir: Path | str, run_config: dict[str, Any], progress: bool = True,
                 log: Callable[[str], None] = print, init_state: dict[str, torch.Tensor] | None = None):
        if (joint is None) == (item_ids is None):
            raise ValueError("give exactly one of item_ids (two-stage) or joint (ste/diger)")
        self.split, self.cfg, self.vocab, self.progress, self.log = split, cfg, vocab, progress, log
        self.device = resolve_device(cfg.device)
        self.amp_dtype = autocast_dtype(cfg.amp, self.device, log)  # None on CPU: fp32, results unchanged
        seed_everything(cfg.seed)
        self.model = GenRecModel(model_cfg, vocab).to(self.device)
        self.joint = joint.to(self.device) if joint is not None else None
        self.item_ids = item_ids.to(self.device) if item_ids is not None else None
        # two-stage: the item -> token table, on the CPU where make_batch builds batches
        self.item_tokens = vocab.codes_to_tokens(item_ids.long()).cpu() if item_ids is not None else None
        if init_state is not None:  # warm start (e.g. from a Two-Stage run): recommender weights only
            self.model.load_state_dict(init_state)
        rec_params = list(self.model.parameters())
        total_steps = cfg.epochs * len(epoch_batches(split.train, cfg, 1))
        self.tok_sched = None
        if self.joint is not None:
            rec_params += self.joint.recommender_parameters()  # W_j (DIGER) is part of the recommender
            tok = self.joint.tokenizer_parameters(cfg.tokenizer_lr)
            self.tok_opt = torch.optim.AdamW(tok, lr=cfg.tokenizer_lr, weight_decay=cfg.weight_decay) if tok else None
            if self.tok_opt is not None:
                self.tok_sched = torch.optim.lr_scheduler.LambdaLR(self.tok_opt, lr_lambda(cfg, total_steps))
            self.sigma_opt = (torch.optim.SGD(self.joint.sigma.parameters(), lr=self.joint.assign.sdud_lr)
                              if self.joint.sigma is not None else None)
            self.tracker = DG.ParamTracker(self.joint.rqvae)
            self.probe = DG.probe_indices(split.train, cfg.seed)
        self.opt = torch.optim.AdamW(rec_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg, total_steps))
        self.ckpt_dir = Path(ckpt_dir)
        self.fingerprint = fingerprint(run_config)
        self.state: dict[str, Any] = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
                                      "wall": 0.0}
        self.init_det: torch.Tensor | None = None
        self.prev_det: torch.Tensor | None = None
        self.prev_full: torch.Tensor | None = None  # last refresh's full IDs (for the churn probe)

    # -- checkpoints ------------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        p = {"fingerprint": self.fingerprint, "state": self.state, "model": self.model.state_dict(),
             "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "rng": rng_state()}
        if self.joint is not None:
            p["joint"] = self.joint.state_dict()
            if self.tok_opt is not None:
                p["tok_opt"], p["tok_sched"] = self.tok_opt.state_dict(), self.tok_sched.state_dict()
            p["gen"] = self.joint.generator.get_state()
            p["init_det"], p["prev_det"], p["prev_full"] = self.init_det, self.prev_det, self.prev_full
            p["tracker"] = self.tracker.last
            if self.sigma_opt is not None:
                p["sigma_opt"] = self.sigma_opt.state_dict()
            if self.joint.freq is not None:
                p["freq"] = self.joint.freq.state_dict()
        return p

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.sched.load_state_dict(ckpt["sched"])
        self.state = ckpt["state"]
        if self.joint is not None:
            self.joint.load_state_dict(ckpt["joint"])
            if self.tok_opt is not None:
                self.tok_opt.load_state_dict(ckpt["tok_opt"])
                self.tok_sched.load_state_dict(ckpt["tok_sched"])
            self.joint.generator.set_state(ckpt["gen"])
            self.init_det, self.prev_det = ckpt["init_det"].to(self.device), ckpt["prev_det"].to(self.device)
            self.prev_full = ckpt["prev_full"].to(self.device)
            self.tracker.last = ckpt["tracker"]
            if self.sigma_opt is not None:
                self.sigma_opt.load_state_dict(ckpt["sigma_opt"])
            if self.joint.freq is not None:
                self.joint.freq.load_state_dict(ckpt["freq"])
        set_rng_state(ckpt["rng"])

    def try_resume(self) -> int | None:
        last = self.ckpt_dir / "last.pt"
        if not last.exists():
            return None
        self._restore(load_checkpoint(last, self.fingerprint))
        self.log(f"resumed from {display_path(last)} after epoch {self.state['epoch']}")
        return int(self.state["epoch"])

    # -- one epoch ----------------------------------------------------------------------------------------
    def current_ids(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(full IDs [N, n_tokens], deterministic m-level codes or None) used for validation now."""
        if self.joint is None:
            return self.item_ids, None
        det = self.joint.refresh_ids()
        return self.joint.full_ids(det), det

    def _step_inputs(self, batch_idx: np.ndarray, samples: Samples):
        if self.joint is None:
            b = make_batch(samples, batch_idx, self.item_tokens)
            return (b.input_ids.to(self.device), b.attention_mask.to(self.device), b.labels.to(self.device),
                    None, None, None, None)
        hist = torch.from_numpy(samples.history[batch_idx, : int(samples.length[batch_idx].max())]).to(self.device)
        target = torch.from_numpy(samples.target[batch_idx]).to(self.device)
        valid = hist >= 0
        n_tok, B, L = self.vocab.n_tokens, hist.shape[0], hist.shape[1]
        flat_valid = valid.flatten()
        real = hist.flatten()[flat_valid]  # padding is not an item: it is neither tokenised nor counted
        items, inv = torch.unique(torch.cat([real, target]), return_inverse=True)
        t_inv = inv[len(real):]
        is_target = torch.zeros(len(items), dtype=torch.bool, device=self.device)
        is_target[t_inv] = True
        sid = self.joint.batch_sid(items, count=is_target, embed_table=self.model.embed_weight())
        h_inv = torch.zeros(B * L, dtype=torch.long, device=self.device)
        h_inv[flat_valid] = inv[: len(real)]
        h_inv = h_inv.view(B, L)
        mask = valid.repeat_interleave(n_tok, dim=1)
        input_ids = sid.tokens[h_inv].reshape(B, L * n_tok).masked_fill(~mask, 0)
        input_extra = dec_extra = None
        if sid.extras is not None:
            input_extra = (sid.extras[h_inv] * valid[..., None, None]).reshape(B, L * n_tok, -1)
            dec_extra = sid.extras[t_inv] if self.joint.decoder_extras else None
        if sid.label_soft is not None:  # coupling="embeddings": the targets' p - stopgrad(p), laid out like logits
            sid = sid._replace(label_soft=label_layout(sid.label_soft[t_inv], self.vocab))
        same = (sid.train_codes == sid.det_codes).all(dim=1)  # the fed ID is the one inference would use now
        agree = (int(same[inv[: len(real)]].sum()), len(real), int(same[t_inv].sum()), len(t_inv))
        return input_ids, mask, sid.tokens[t_inv], input_extra, dec_extra, sid, agree

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, samples = self.cfg, self.split.train
        self.model.train()
        if self.joint is not None:
            self.joint.train()
        batches = epoch_batches(samples, cfg, epoch)
        sums = {"loss": 0.0, "loss_gen": 0.0, "loss_vq": 0.0, "loss_recon": 0.0}
        counts = np.zeros(6, dtype=np.int64)  # sampled==det over unique items, input tokens, label tokens
        bar = progress_bar(batches, desc=f"epoch {epoch}", disable=not self.progress, unit="batch")
        for step, idx in enumerate(bar):
            inputs = self._step_inputs(idx, samples)
            sid, agree = inputs[5], inputs[6]
            self.opt.zero_grad(set_to_none=True)
            if self.joint is not None and self.tok_opt is not None:
                self.tok_opt.zero_grad(set_to_none=True)
            loss, l_gen, parts = self._batch_backward(idx, inputs)
            if not torch.isfinite(loss):  # checked before any optimiser step: the weights stay as they were
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch}, step {step}; stopped. The last good checkpoint "
                    f"is kept at {display_path(self.ckpt_dir / 'last.pt')} (epoch {self.state['epoch']}). Lower the learning "
                    f"rate or check the inputs.")
            params = [p for g in self.opt.param_groups for p in g["params"]]
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            if sid is not None:
                self._tokenizer_step(l_gen)
                counts += np.array([int((sid.codes == sid.det_codes).all(dim=1).sum()), len(sid.codes), *agree])
                sums["loss_vq"] += sid.out.loss_vq.item()
                sums["loss_recon"] += sid.out.loss_recon.item()
            sums["loss"] += loss.item()
            sums["loss_gen"] += l_gen.item()
            for key, value in parts.items():  # further terms of the method's loss (UniGRec's L_CD)
                sums[key] = sums.get(key, 0.0) + value
            if self.progress and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # redraws follow mininterval
        n = max(len(batches), 1)
        rec = {k: v / n for k, v in sums.items()}
        if self.joint is not None:
            rec["agreement"] = counts[0] / max(counts[1], 1)  # sampled == deterministic, unique batch items
            rec["agreement_input"] = counts[2] / max(counts[3], 1)  # fed history IDs == current deterministic IDs
            rec["agreement_label"] = counts[4] / max(counts[5], 1)  # fed label IDs == current deterministic IDs
        return rec

    def _batch_backward(self, idx: np.ndarray, inputs: tuple) -> StepLoss:
        """Backpropagate one batch (``inputs`` from ``_step_inputs``): L_gen, and for joint methods L_vq + L_recon
        through the tokenizer (section 4.3). ``idx`` are the batch's training samples."""
        input_ids, mask, labels, input_extra, decoder_extra, sid, _ = inputs
        sid_loss = None if sid is None else self.joint.own_loss(sid)
        l_gen = gen_backward(self.model, self.cfg.micro_batch_size, input_ids, mask, labels, input_extra, decoder_extra,
                             sid_loss, label_soft=None if sid is None else sid.label_soft, amp_dtype=self.amp_dtype)
        loss = l_gen
        if sid is not None:  # section 4.3: L_gen + L_vq + L_recon
            loss = l_gen + sid.out.loss_vq.detach() + sid.out.loss_recon.detach()
        return StepLoss(loss, l_gen, {})

    def _tokenizer_step(self, l_gen: torch.Tensor) -> None:
        cfg = self.cfg
        if self.tok_opt is not None:
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for g in self.tok_opt.param_groups for p in g["params"]], cfg.grad_clip)
            self.tok_opt.step()
            self.tok_sched.step()
        if self.sigma_opt is not None:  # Eq. 9: sigma follows L_gen towards its stationary point
            self.sigma_opt.zero_grad(set_to_none=True)
            self.joint.sigma.loss(l_gen.detach()).backward()
            self.sigma_opt.step()
            self.joint.sigma.project_()

    def dynamics(self, det: torch.Tensor, train_rec: dict[str, float] | None = None) -> dict[str, float]:
        """Section 8 / Appendix A: coverage, effective codes, collisions, drift against the previous epoch
        and against the initial IDs; plus the per-epoch diagnostics of ``diagnostics.py``."""
        joint, K = self.joint, self.joint.K
        use = M.code_usage(det, K)
        full = joint.full_ids(det)
        rec: dict[str, float] = {"collision_rate": M.collision_rate(det), "shared_id_rate": M.collision_rate(full),
                                 "max_conflict": int(joint.conflict.max())}
        for j in range(det.shape[1]):
            rec[f"coverage_l{j}"] = float(use.coverage[j])
            rec[f"effective_l{j}"] = float(use.effective[j])
        rec["drift_inc"] = M.sid_drift(self.prev_det, det) if self.prev_det is not None else 0.0
        rec["drift_cum"] = M.sid_drift(self.init_det, det) if self.init_det is not None else 0.0
        rec.update(DG.level_drift(self.prev_det, det, "drift_inc"))
        rec.update(DG.level_drift(self.init_det, det, "drift_cum"))
        rec.update(self.tracker.step())
        for j, gap in enumerate(joint.rqvae.logit_gaps(joint.item_emb, joint.assign.sim)):
            rec[f"logit_gap_l{j}"] = gap
        rec["sigma"] = joint.sigma.value if joint.sigma is not None else float("nan")
        rec["sigma_star"] = (DG.sigma_star(train_rec["loss_gen"], joint.assign.sdud_lambda)
                             if train_rec is not None else float("nan"))
        rec["hot_codes"] = (float(sum(joint.freq.hot_counts(joint.assign.frqud_r)))
                            if joint.freq is not None else float("nan"))
        table = joint.token_table(self.model.embed_weight())
        rec["probe_loss_new_ids"] = DG.probe_loss(self.model, self.split.train, self.probe, full, self.vocab, table)
        rec["probe_loss_old_ids"] = (DG.probe_loss(self.model, self.split.train, self.probe, self.prev_full, self.vocab,
                                                   table) if self.prev_full is not None else float("nan"))
        self.prev_full = full.clone()
        return rec

    def _evaluates_trained_table(self) -> bool:
        return self.joint is not None and getattr(self.joint.joint, "eval_ids", None) is EvalIDs.TRAINED

    def validate(self) -> tuple[dict[str, float], torch.Tensor, torch.Tensor | None]:
        """Validation metrics, the IDs they were computed with, and the refreshed deterministic codes (for the
        dynamics). With ``eval_ids="trained"`` the IDs are the table the recommender trained on this epoch (the
        refresh here becomes the next epoch's table); at epoch 0 there is no earlier table, so both agree."""
        refreshed_before = self.joint is not None and bool(self.joint.table.any())  # all zeros until the first refresh
        trained = self.joint.table.clone() if self._evaluates_trained_table() and refreshed_before else None
        ids, det = self.current_ids()
        if trained is not None:
            ids = trained
        table = self.joint.token_table(self.model.embed_weight()) if self.joint is not None else None
        met = self._evaluate(self.split.valid, ids, table, max_users=self.cfg.max_eval_users)
        return met, ids, det

    def _evaluate(self, samples: Samples, ids: torch.Tensor, table: torch.Tensor | None, *, max_users: int = 0,
                  ranks: list | None = None) -> dict[str, float]:
        return evaluate(self.model, samples, ids, self.vocab, self.cfg, token_table=table, max_users=max_users,
                        progress=self.progress, ranks=ranks)

    def _save_last(self) -> None:
        atomic_torch_save(self._payload(), self.ckpt_dir / "last.pt")

    def _past_budget(self, budget: float, t0: float, last: float | None) -> bool:
        """Would the next epoch (judged by the last one) end past the time budget?"""
        return budget > 0 and last is not None and time.time() - t0 + last > budget

    def _save_best(self, ids: torch.Tensor, det: torch.Tensor | None) -> None:
        best = {"fingerprint": self.fingerprint, "model": self.model.state_dict(), "ids": ids.cpu(),
                "epoch": self.state["epoch"]}
        if self.joint is not None:
            best["joint"] = self.joint.state_dict()
            best["usage"] = M.code_usage(det, self.joint.K).counts
        atomic_torch_save(best, self.ckpt_dir / "best.pt")

    def fit(self, resume: bool = True) -> TrainResult:
        cfg, t0 = self.cfg, time.time()
        resumed = self.try_resume() if resume else None
        if resumed is None and self.joint is not None:  # epoch-0 record: the pretrained tokenizer's IDs
            met, ids, det = self.validate()
            self.init_det = self.prev_det = det.clone()
            self.joint.set_epoch(0, det)
            rec = {"epoch": 0, **{f"val_{k}": v for k, v in met.items()}, **self.dynamics(det),
                   "agreement": float("nan"), "agreement_input": float("nan"), "agreement_label": float("nan")}
            rec["val_ndcg10"] = met["N@10"]
            self.state["history"].append(rec)
            self.state["best"], self.state["best_epoch"] = met["N@10"], 0
            self._save_best(ids, det)
            self.log(_fmt(rec))
        start = int(self.state["epoch"]) + 1
        budget, out_of_time = cfg.time_budget_minutes * 60.0, False
        for epoch in range(start, cfg.epochs + 1):
            if self.state["bad_epochs"] >= cfg.patience:
                break
            last = self.state["history"][-1].get("seconds") if self.state["history"] else None
            if self._past_budget(budget, t0, last):
                out_of_time = True
                self.log(f"time budget of {cfg.time_budget_minutes:g} min reached after epoch {epoch - 1}; "
                         f"run again to resume from {display_path(self.ckpt_dir / 'last.pt')}")
                break
            te = time.time()
            if self.joint is not None:
                self.joint.epoch = epoch
            train_rec = self.train_epoch(epoch)
            met, ids, det = self.validate()
            rec = {"epoch": epoch, **train_rec, **{f"val_{k}": v for k, v in met.items()}, "val_ndcg10": met["N@10"]}
            if det is not None:
                rec.update(self.dynamics(det, train_rec))
                self.prev_det = det.clone()
                self.joint.set_epoch(epoch, det)
            rec["seconds"] = time.time() - te
            self.state["history"].append(rec)
            self.state["epoch"] = epoch
            self.state["wall"] += time.time() - te
            if met["N@10"] > self.state["best"]:
                self.state.update(best=met["N@10"], best_epoch=epoch, bad_epochs=0)
                self._save_best(ids, det)
            else:
                self.state["bad_epochs"] += 1
            self._save_last()
            self.log(_fmt(rec))
        reason = ("early_stopping" if self.state["bad_epochs"] >= cfg.patience
                  else "time_budget" if out_of_time else "max_epochs")
        return self.finish(resumed, time.time() - t0, reason)

    def load_best(self) -> dict[str, Any] | None:
        """Load the best checkpoint's recommender (and tokenizer) weights; returns the checkpoint (None: no best.pt)."""
        path = self.ckpt_dir / "best.pt"
        best = load_checkpoint(path, self.fingerprint) if path.exists() else None
        if best is not None:
            self.model.load_state_dict(best["model"])
            if self.joint is not None:
                self.joint.load_state_dict(best["joint"])
        return best

    def finish(self, resumed: int | None, seconds: float, stop_reason: str = "max_epochs") -> TrainResult:
        best = self.load_best()
        ids, det = self.current_ids()
        if best is not None and self._evaluates_trained_table():  # the table validation read at the best epoch
            ids = best["ids"].to(ids.device)
        table = self.joint.token_table(self.model.embed_weight()) if self.joint is not None else None
        ranks: list[int] = []
        test = self._evaluate(self.split.test, ids, table, ranks=ranks)
        hist = self.state["history"]
        best_rec = next((r for r in hist if r["epoch"] == self.state["best_epoch"]), {})
        valid = {k[4:]: v for k, v in best_rec.items() if k.startswith("val_") and k != "val_ndcg10"}
        usage = M.code_usage(det, self.joint.K).counts if det is not None else None
        return TrainResult(hist, int(self.state["best_epoch"]), valid, test, ids.cpu().numpy(),
                           None if usage is None else np.asarray(usage), self.state["wall"], resumed, stop_reason,
                           np.asarray(ranks, dtype=np.int64))


def _fmt(rec: dict[str, Any]) -> str:
    keys = ["epoch", "loss", "loss_gen", "val_ndcg10", "collision_rate", "drift_inc", "agreement", "sigma", "seconds"]
    return "  ".join(f"{k}={rec[k]:.4g}" if isinstance(rec.get(k), float) else f"{k}={rec[k]}"
                     for k in keys if k in rec and not (isinstance(rec[k], float) and math.isnan(rec[k])))
