"""RQ-VAE item tokenizer (TIGER/LETTER style) with DIGER's differentiable tokenisation (section 4.3).

Pretraining (two-stage, TIGER): MLP encoder -> m levels of nearest-code residual quantisation ->
MLP decoder, loss = MSE reconstruction + sum_j ||sg(r_j) - e_j||^2 + beta ||r_j - sg(e_j)||^2.
Joint training (DIGER): ``tokenize`` quantises with ``assignment.assign_level`` at every level
(Gumbel noise, soft/hard update, FrqUD masks) and drops the decoder (section 4.3).
Also: k-means codebook initialisation, TIGER's conflict code and the collision rate.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from .progress import progress_bar

from .assignment import assign_level, neg_sq_dist, scaled_logits
from .config import AssignConfig, RQVAEConfig, Sim, VQCodes
from .metrics import collision_rate
from .runtime import deterministic_algorithms, eval_mode


class PretrainOut(NamedTuple):
    x_hat: Tensor  # [B, in_dim]
    codes: Tensor  # [B, m] nearest codes
    loss: Tensor  # loss_recon + loss_vq
    loss_recon: Tensor
    loss_vq: Tensor


class TokenizeOut(NamedTuple):
    z: Tensor  # [B, D] encoder output r_1
    codes: Tensor  # [B, m] forward codes (sampled under noise, Eq. 7)
    det_codes: Tensor  # [B, m] noise-free argmax chain (what inference uses)
    level_embs: Tensor  # [B, m, D] e-hat per level
    quantized: Tensor  # [B, D] sum of level_embs
    soft_probs: Tensor  # [B, m, K]
    loss_vq: Tensor
    loss_recon: Tensor


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:  # no activation on the output layer
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _vq_terms(residual: Tensor, e: Tensor, beta: float) -> Tensor:
    """||sg(r) - e||^2 + beta ||r - sg(e)||^2, averaged over batch and dimensions (F.mse_loss, as in the
    LETTER/TIGER code), so L_vq stays on the scale of L_recon and small beside L_gen (section 4.3)."""
    return F.mse_loss(e, residual.detach()) + beta * F.mse_loss(residual, e.detach())


class RQVAE(nn.Module):
    def __init__(self, in_dim: int, cfg: RQVAEConfig) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim={in_dim} must be >= 1")
        self.in_dim, self.cfg = int(in_dim), cfg
        hidden = list(cfg.hidden_dims)
        self.encoder = _mlp([in_dim, *hidden, cfg.code_dim], cfg.dropout)
        self.decoder = _mlp([cfg.code_dim, *reversed(hidden), in_dim], cfg.dropout)
        self.codebooks = nn.Parameter(torch.randn(cfg.n_levels, cfg.codebook_size, cfg.code_dim) / math.sqrt(cfg.code_dim))
        # Per-dimension standardisation of the input embeddings (fit once on the catalogue). Sentence
        # embeddings are unit-norm, so each dimension varies by ~0.04: unscaled, the reconstruction
        # gradient is too weak against the VQ terms and the encoder collapses to one point.
        self.register_buffer("x_mean", torch.zeros(in_dim))
        self.register_buffer("x_std", torch.ones(in_dim))

    @property
    def n_levels(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def fit_input_norm_(self, x: Tensor) -> None:
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp(min=1e-6))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_std

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(self.normalize(x))

    def forward(self, x: Tensor) -> PretrainOut:
        """Pretraining pass: deterministic nearest-code RQ, decoder fed through the straight-through q."""
        z = self.encode(x)
        residual, q = z, torch.zeros_like(z)
        codes, loss_vq = [], z.new_zeros(())
        for j in range(self.n_levels):
            c = neg_sq_dist(residual.detach(), self.codebooks[j]).argmax(-1)
            e = self.codebooks[j][c]
            loss_vq = loss_vq + _vq_terms(residual, e, self.cfg.beta)
            # sg(e): level-j commitment then pulls z toward the partial sum e_1 + ... + e_j (Lee et al.)
            residual = residual - e.detach()
            q = q + e
            codes.append(c)
        x_hat = self.decoder(z + (q - z).detach())  # straight-through to the encoder
        loss_recon = F.mse_loss(x_hat, self.normalize(x))
        return PretrainOut(x_hat, torch.stack(codes, 1), loss_recon + loss_vq, loss_recon, loss_vq)

    @torch.no_grad()
    def _argmax_chain(self, z: Tensor) -> Tensor:
        residual, codes = z, []
        for j in range(self.n_levels):
            c = neg_sq_dist(residual, self.codebooks[j]).argmax(-1)
            residual = residual - self.codebooks[j][c]
            codes.append(c)
        return torch.stack(codes, 1)

    @torch.no_grad()
    def deterministic_codes(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        """Noise-free argmax codes [N, m] (inference-time SIDs), encoder in eval mode."""
        with eval_mode(self):
            return torch.cat([self._argmax_chain(self.encode(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)])

    def tokenize(
        self,
        x: Tensor,
        cfg: AssignConfig,
        *,
        noise_scale: float | Tensor = 1.0,
        hot_masks: Tensor | None = None,
        row_mask: Tensor | None = None,
        tau: float | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenizeOut:
        """Joint-training tokenisation (Eq. 5-8, 13 at every level; r_{j+1} = r_j - e-hat_j).

        Section 4.3 omits the decoder in joint training, so the reconstruction term is evaluated on the
        quantised representation: loss_recon = MSE(quantized, z). ``cfg.vq_codes`` picks the codes of L_vq
        and L_recon: "deterministic" (the standard RQ-VAE nearest-code losses, the default) or "sampled"
        (the forward codes; with Gumbel noise this pulls every code towards random residuals). FrqUD masks:
        ``hot_masks`` [m, K] (Eq. 13, per code) or ``row_mask`` [B] (per item: noise at every level of the
        rows marked True, the others assigned deterministically).
        """
        m = self.n_levels
        if hot_masks is not None and hot_masks.shape != (m, self.codebook_size):
            raise ValueError(f"hot_masks must be [{m}, {self.codebook_size}], got {tuple(hot_masks.shape)}")
        z = self.encode(x)
        residual, embs, codes, probs, loss_vq = z, [], [], [], z.new_zeros(())
        for j in range(m):
            a = assign_level(residual, self.codebooks[j], cfg, noise_scale=noise_scale,
                             hot_mask=None if hot_masks is None else hot_masks[j], row_mask=row_mask, tau=tau,
                             generator=generator)
            if cfg.vq_codes is VQCodes.SAMPLED:
                loss_vq = loss_vq + _vq_terms(residual, self.codebooks[j][a.codes], self.cfg.beta)
            residual = residual - a.emb
            embs.append(a.emb)
            codes.append(a.codes)
            probs.append(a.soft_probs)
        level_embs = torch.stack(embs, 1)
        quantized = level_embs.sum(1)
        det_codes = self._argmax_chain(z.detach())
        if cfg.vq_codes is VQCodes.DETERMINISTIC:  # section 4.3: the standard RQ-VAE losses (nearest codes)
            residual, q, loss_vq = z, torch.zeros_like(z), z.new_zeros(())
            for j in range(m):
                e = self.codebooks[j][det_codes[:, j]]
                loss_vq = loss_vq + _vq_terms(residual, e, self.cfg.beta)
                residual, q = residual - e.detach(), q + e
            loss_recon = F.mse_loss(q, z)
        else:
            loss_recon = F.mse_loss(quantized, z)
        return TokenizeOut(z, torch.stack(codes, 1), det_codes, level_embs, quantized, torch.stack(probs, 1), loss_vq, loss_recon)

    @torch.no_grad()
    def logit_gaps(self, x: Tensor, sim: Sim = Sim.DISTANCE) -> list[float]:
        """Median gap between the best and second-best Eq. 5 logit per level along the deterministic chain of
        ``x`` (all items at once, so batch-scaled sims see the whole catalogue). Noise of scale ~1 re-draws a
        level's code when its gap is well below 1."""
        with eval_mode(self):
            residual, gaps = self.encode(x), []
            for j in range(self.n_levels):
                logits = scaled_logits(residual, self.codebooks[j], sim)
                top2 = logits.topk(2, dim=-1).values
                gaps.append(float((top2[:, 0] - top2[:, 1]).median()))
                residual = residual - self.codebooks[j][neg_sq_dist(residual, self.codebooks[j]).argmax(-1)]
            return gaps

    @torch.no_grad()
    def kmeans_init_(self, x: Tensor, iters: int, seed: int) -> None:
        """Initialise each level's codebook by k-means on that level's residuals of encode(x)."""
        with eval_mode(self):
            z = torch.cat([self.encode(x[i : i + 4096]) for i in range(0, x.shape[0], 4096)])
        g = torch.Generator().manual_seed(int(seed))
        residual = z
        for j in range(self.n_levels):
            centroids = kmeans(residual, self.codebook_size, iters, g)
            self.codebooks[j].copy_(centroids.to(self.codebooks.dtype))
            residual = residual - centroids[neg_sq_dist(residual, centroids).argmax(-1)]


def _rand_index(n: int, size: int, g: torch.Generator) -> Tensor:
    return torch.randint(n, (size,), generator=g)


def kmeans(data: Tensor, k: int, iters: int, g: torch.Generator) -> Tensor:
    """Lloyd k-means with k-means++ seeding, deterministic given ``g`` (a CPU generator). [k, D]."""
    n = data.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    scale = float(data.std()) if n > 1 else 1.0
    jitter = 1e-3 * (scale if scale > 0 else 1.0)

    def noise(shape: tuple[int, ...]) -> Tensor:
        return (torch.randn(shape, generator=g) * jitter).to(data.device, data.dtype)

    distinct = torch.unique(data, dim=0)
    if distinct.shape[0] < k:  # too few points: every distinct point once, the rest resampled + jitter
        extra = distinct[_rand_index(distinct.shape[0], k - distinct.shape[0], g).to(data.device)]
        centroids = torch.cat([distinct, extra + noise(tuple(extra.shape))])
    else:  # k-means++: next centre drawn with probability proportional to D^2
        centroids = data[_rand_index(n, 1, g).to(data.device)]
        d2 = (-neg_sq_dist(data, centroids)).clamp_min(0).squeeze(1)
        for _ in range(1, k):
            w = d2.double().cpu()
            idx = torch.multinomial(w / w.sum(), 1, generator=g) if w.sum() > 0 else _rand_index(n, 1, g)
            new = data[idx.to(data.device)]
            centroids = torch.cat([centroids, new])
            d2 = torch.minimum(d2, (-neg_sq_dist(data, new)).clamp_min(0).squeeze(1))
    for _ in range(iters):
        assign = neg_sq_dist(data, centroids).argmax(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, data)
        counts = torch.bincount(assign, minlength=k).to(data.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        n_empty = int(empty.sum())
        if n_empty:  # reseed empty clusters on random points (+ jitter) so every code stays usable
            centroids[empty] = data[_rand_index(n, n_empty, g).to(data.device)] + noise((n_empty, data.shape[1]))
    return centroids


def add_conflict_codes(codes: Tensor, K: int, *, overflow: str = "raise") -> Tensor:
    """Append TIGER's conflict code: items sharing an m-code prefix get 0, 1, 2, ... in item order.

    A prefix shared by more than K items cannot be made unique with one more code in [0, K). ``overflow``
    says what then happens: ``"raise"`` (ValueError naming the prefix), or ``"share"``: items ranked K-1
    and later in the group all get code K-1 and share one full ID, which decoding maps back to all of them
    (section 3's "retrieval step over items sharing the same SID"). Joint training needs "share": a
    collapsing tokenizer (STE) can put hundreds of items under one prefix.
    """
    if overflow not in ("raise", "share"):
        raise ValueError(f"overflow={overflow!r} must be 'raise' or 'share'")
    if codes.dim() != 2:
        raise ValueError(f"codes must be [N, m], got {tuple(codes.shape)}")
    if codes.shape[0] == 0:
        return codes.new_zeros((0, codes.shape[1] + 1))
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    if int(counts.max()) > K and overflow == "raise":
        g = int(counts.argmax())
        prefix = codes[(inverse == g).nonzero()[0, 0]].tolist()
        raise ValueError(f"prefix {prefix} is shared by {int(counts[g])} items, more than K={K} conflict codes")
    order = torch.argsort(inverse, stable=True)  # groups contiguous, ascending item order inside
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(codes.shape[0], device=codes.device) - starts[inverse[order]]
    return torch.cat([codes, rank.clamp(max=K - 1)[:, None].to(codes.dtype)], 1)


def pretrain_rqvae(
    model: RQVAE,
    x: Tensor,
    cfg: RQVAEConfig,
    *,
    seed: int,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Two-stage tokenizer training: k-means init, then AdamW on recon + vq over shuffled minibatches."""
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty [N, in_dim] tensor, got {tuple(x.shape)}")
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise ValueError(f"x contains {n_bad} non-finite values (NaN/inf); fix the item embeddings first")
    with deterministic_algorithms():  # same seed, same tokenizer, whatever the thread count (runtime.py)
        return _pretrain(model, x, cfg, seed=seed, progress=progress, on_epoch=on_epoch)


def _pretrain(model: RQVAE, x: Tensor, cfg: RQVAEConfig, *, seed: int, progress: bool,
              on_epoch: Callable[[dict], None] | None) -> list[dict]:
    model.fit_input_norm_(x)
    model.kmeans_init_(x, cfg.kmeans_iters, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(int(seed))
    history: list[dict] = []
    bar = progress_bar(range(1, cfg.epochs + 1), desc="RQ-VAE", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        sums = {"loss": 0.0, "loss_recon": 0.0, "loss_vq": 0.0}
        for idx in torch.randperm(x.shape[0], generator=g).split(cfg.batch_size):
            out = model(x[idx.to(x.device)])
            if not torch.isfinite(out.loss):
                raise FloatingPointError(f"RQ-VAE pretraining: epoch {epoch} loss is {out.loss.item()} "
                                         f"(recon {out.loss_recon.item()}, vq {out.loss_vq.item()})")
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            for key in sums:
                sums[key] += getattr(out, key).item() * idx.numel()
        record = {"epoch": epoch, **{k: v / x.shape[0] for k, v in sums.items()},
                  "collision_rate": collision_rate(model.deterministic_codes(x))}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", coll=f"{record['collision_rate']:.3f}", refresh=False)
        if on_epoch is not None:
            on_epoch(record)
    return history
