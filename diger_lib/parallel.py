"""Data-parallel training over torch.distributed (launched by ``torchrun``): each global batch split across ranks.

What is split and what is replicated (README, reproduction note 24):

* Every rank builds the same global batch (``epoch_batches`` is seeded) and, for the joint methods, tokenises all of
  its items with the same tokenizer and the same Gumbel generator state. So the sampled codes, sigma (SDUD, Eq. 9) and
  the FrqUD counts (Eq. 10, or the per-step EMA of the batch targets) are the same on every rank by construction; the
  tokenizer's forward is repeated on each rank (an MLP over the batch's unique items, small next to the T5).
* The recommender's forward and backward is split: rank r takes a contiguous slice of the batch's samples, weights
  its micro-batches by their share of the *global* batch's label tokens, sends its gradient through W_j and the
  tokenizer, and only rank 0 adds L_vq + L_recon (section 4.3). One all-reduce (sum) of every trained gradient then
  gives each rank the 1-process step's gradient, so the optimisers, clipping and sigma move identically.
* Validation and test are sharded: the users are ordered and chunked exactly as ``decoding.recommend`` chunks them,
  the chunks are dealt out to the ranks and the top-k lists gathered, so the metrics are the 1-process ones.
* Rank 0 alone writes checkpoints; ``last.pt`` holds every rank's RNG state (dropout draws differ per rank), so a run
  resumes exactly with the same number of processes. Each epoch's checkpoint also checks that the ranks still hold
  identical weights.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from . import metrics as M
from .checkpoint import atomic_torch_save
from .data import Samples
from .evaluation import eval_users, top_items
from .runtime import resolve_device, rng_state, set_rng_state
from .training import StepLoss, Trainer, gen_backward

BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class Group:
    """This process's place in the job (from torchrun's environment)."""
    rank: int
    world: int
    local_rank: int
    backend: str

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` samples (sizes differ by at most one)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)


def env_world() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: str = "auto", backend: str = "", timeout_minutes: float = 60.0) -> Group:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). Backend: ``gloo`` on
    CPU, ``nccl`` on CUDA (each rank on GPU ``LOCAL_RANK``); ``device="auto"`` picks CUDA only if it is there."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"not launched by torchrun ({', '.join(missing)} unset): run "
                           f"`torchrun --nproc_per_node=N -m diger_lib.distributed --params FILE`")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; choose one of {', '.join(BACKENDS)}")
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"backend='nccl' needs CUDA devices, but device={device!r} resolves to {dev}")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local)  # "cuda" below means this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Group(dist.get_rank(), dist.get_world_size(), local, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world: int) -> None:
    if world < 1:
        raise ValueError(f"world size {world} must be >= 1")
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {world} processes: each rank takes "
                         f"batch_size / world samples of every global batch; choose a world size that divides it")


def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks in one all-reduce. A gradient that no rank has stays None
    (the optimiser then skips it, as in one process); one that some rank lacks counts as zero there."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    dev = params[0].device
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [has])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype).clone()
        offset += n
    for p, h in zip(params, flat[offset:].tolist()):
        if h == 0:
            p.grad = None


def state_checksum(parts: Sequence[torch.nn.Module | torch.Tensor | None]) -> float:
    """One number per rank summarising every parameter and buffer (float64), to check the ranks agree."""
    total = 0.0
    for part in parts:
        tensors = [part] if torch.is_tensor(part) else [] if part is None else part.state_dict().values()
        for t in tensors:
            if torch.is_tensor(t) and t.numel():
                t = t.detach().double()
                total += float(t.abs().sum()) + float(t.sum())
    return total


class DataParallelTrainer(Trainer):
    """:class:`Trainer` whose steps, validation and checkpoints are shared by the ranks of ``group``."""

    def __init__(self, *args: Any, group: Group, **kw: Any):
        if group.rank != 0:  # one voice: rank 0 prints and shows progress
            kw.update(progress=False, log=lambda s: None)
        super().__init__(*args, **kw)
        check_batch_size(self.cfg.batch_size, group.world)
        self.group = group
        if group.rank:  # dropout draws differ per rank (rank 0 keeps the 1-process stream)
            torch.manual_seed(self.cfg.seed + 7919 * group.rank)

    # -- one step ---------------------------------------------------------------------------------------------
    def _batch_backward(self, idx: np.ndarray, inputs: tuple) -> StepLoss:
        """This rank's share of the step (module docstring), then the gradient all-reduce."""
        input_ids, mask, labels, input_extra, decoder_extra, sid, _ = inputs
        n_labels = int((labels != -100).sum())  # the global batch's label tokens weight every share
        sid_loss = None if sid is None or self.group.rank != 0 else self.joint.own_loss(sid)  # counted once, on rank 0
        rows = self.group.rows(len(input_ids))

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        if rows.stop > rows.start:
            l_gen = gen_backward(self.model, self.cfg.micro_batch_size, cut(input_ids), cut(mask), cut(labels),
                                 cut(input_extra), cut(decoder_extra), sid_loss, n_labels=n_labels,
                                 label_soft=None if sid is None else cut(sid.label_soft), amp_dtype=self.amp_dtype)
        else:  # a batch shorter than the world: nothing of L_gen here
            l_gen = torch.zeros((), device=input_ids.device)
            if sid_loss is not None:
                sid_loss.backward()
        dist.all_reduce(l_gen, op=dist.ReduceOp.SUM)  # the global batch's L_gen (Eq. 4), what sigma follows
        all_reduce_grads(self._trained_params())
        loss = l_gen if sid is None else l_gen + sid.out.loss_vq.detach() + sid.out.loss_recon.detach()
        return StepLoss(loss, l_gen, {})

    def _trained_params(self) -> list[torch.nn.Parameter]:
        params = [p for g in self.opt.param_groups for p in g["params"]]
        if self.joint is not None and self.tok_opt is not None:
            params += [p for g in self.tok_opt.param_groups for p in g["params"]]
        return params

    # -- evaluation, sharded ----------------------------------------------------------------------------------
    def _evaluate(self, samples: Samples, ids: torch.Tensor, table: torch.Tensor | None, *, max_users: int = 0,
                  ranks: list | None = None) -> dict[str, float]:
        """``evaluate`` with the users dealt out in the chunks ``decoding.recommend`` would form in one process."""
        users = eval_users(len(samples), max_users)
        order = np.argsort(-samples.length[users], kind="stable")  # recommend's order: longest history first
        bs, world = self.cfg.eval_batch_size, self.group.world
        chunks = [np.arange(s, min(s + bs, len(users))) for s in range(0, len(users), bs)]
        share = [np.concatenate(chunks[r::world]) if chunks[r::world] else np.zeros(0, np.int64) for r in range(world)]
        mine = users[order[share[self.group.rank]]]
        top = (top_items(self.model, samples, mine, ids, self.vocab, self.cfg, token_table=table,
                         progress=self.progress).numpy() if len(mine) else np.zeros((0, self.cfg.topk), np.int64))
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, top)
        rows = np.full((len(users), self.cfg.topk), -1, dtype=np.int64)
        for r, part in enumerate(parts):
            rows[order[share[r]]] = part  # back to evaluate's order (users ascending)
        if ranks is not None:
            ranks.extend(M.target_ranks(rows, samples.target[users]).tolist())
        return M.ranking_metrics(rows, samples.target[users], ks=(5, 10))

    # -- checkpoints and the time budget: rank 0 decides and writes -----------------------------------------------
    def _payload(self) -> dict[str, Any]:
        p = super()._payload()
        every: list[Any] = [None] * self.group.world
        dist.all_gather_object(every, rng_state())
        p["rng_ranks"] = every
        return p

    def _restore(self, ckpt: dict[str, Any]) -> None:
        super()._restore(ckpt)  # sets rank 0's RNG state everywhere
        saved = ckpt.get("rng_ranks") or []
        if len(saved) == self.group.world:
            set_rng_state(saved[self.group.rank])
        elif self.group.rank:  # saved with another number of processes: fresh dropout stream per rank
            torch.manual_seed(self.cfg.seed + 7919 * self.group.rank + int(self.state["epoch"]))

    def _save_last(self) -> None:
        self.check_in_step()
        payload = self._payload()  # collective: gathers every rank's RNG state
        if self.group.rank == 0:
            atomic_torch_save(payload, self.ckpt_dir / "last.pt")
        dist.barrier()

    def _save_best(self, ids: torch.Tensor, det: torch.Tensor | None) -> None:
        if self.group.rank == 0:
            super()._save_best(ids, det)
        dist.barrier()  # every rank's finish() reads best.pt

    def _past_budget(self, budget: float, t0: float, last: float | None) -> bool:
        decision = [super()._past_budget(budget, t0, last)]
        dist.broadcast_object_list(decision, src=0)
        return bool(decision[0])

    def check_in_step(self) -> None:
        """Raise if the ranks no longer hold the same weights (they would silently train different models)."""
        freq = self.joint.freq.freq if self.joint is not None and self.joint.freq is not None else None
        mine = state_checksum([self.model, self.joint, freq])
        every: list[Any] = [None] * self.group.world
        dist.all_gather_object(every, mine)
        if max(every) - min(every) > 1e-9 * max(1.0, abs(mine)):
            raise RuntimeError(f"data-parallel ranks drifted apart (weight checksums {every}); stopped")
