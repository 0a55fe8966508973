"""One rank of the data-parallel equivalence test (tests/test_distributed.py), launched by torchrun; run without
torchrun (or imported) it is the 1-process reference. ``torchrun --nproc_per_node=2 tests/_ddp_run.py OUT_DIR`` trains
Two-Stage and DIGER on the tiny fixture for one epoch, resumes for a second and, on rank 0, writes OUT_DIR/<method>.pt."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import build  # noqa: E402

from diger_lib import parallel  # noqa: E402

METHODS = ("two_stage", "diger")
# dropout off: with it the ranks draw other masks than one process would. 101 samples per epoch in batches of 64
# gives a short last batch (37 samples: shards of 18 and 19), micro-batches of 16 split each shard again.
SETTINGS = dict(model={"dropout": 0.0}, train={"samples_per_epoch": 101, "micro_batch_size": 16})
EPOCHS = 2
GRAD_BATCH = np.arange(37)  # uneven shards: a wrong token weighting shows in the gradient


def step_grads(trainer) -> dict[str, torch.Tensor]:
    """The gradient of one step on GRAD_BATCH as the optimisers would see it (after the all-reduce)."""
    gen = trainer.joint.generator.get_state() if trainer.joint is not None else None
    named = dict(trainer.model.named_parameters())
    if trainer.joint is not None:
        named.update({f"joint.{k}": v for k, v in trainer.joint.named_parameters()})
    for p in named.values():
        p.grad = None
    trainer._batch_backward(GRAD_BATCH, trainer._step_inputs(GRAD_BATCH, trainer.split.train))
    grads = {k: p.grad.clone() for k, p in named.items() if p.grad is not None}
    for p in named.values():
        p.grad = None
    if gen is not None:  # the training that follows draws the same noise as without this probe
        trainer.joint.generator.set_state(gen)
    return grads


def run(method: str, ckpt: Path, epochs: int, group=None) -> dict:
    trainer = build(method, ckpt, epochs=epochs, data_parallel=group, **SETTINGS)
    grads = step_grads(trainer)
    res = trainer.fit()
    state = {f"model.{k}": v for k, v in torch.load(ckpt / "last.pt", weights_only=False)["model"].items()}
    if trainer.joint is not None:
        state.update({f"joint.{k}": v for k, v in trainer.joint.state_dict().items()})
        if trainer.joint.freq is not None:
            state["freq"] = trainer.joint.freq.freq
    hist = [{k: v for k, v in r.items() if k != "seconds"} for r in res.history]
    return {"grads": grads, "state": state, "history": hist, "test": res.test, "resumed_from": res.resumed_from}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    group = parallel.init("cpu") if parallel.env_world() > 1 else None
    for method in METHODS:
        run(method, out / f"ckpt_{method}", 1, group)  # one epoch, checkpointed ...
        got = run(method, out / f"ckpt_{method}", EPOCHS, group)  # ... then a new trainer resumes and goes on
        if group is None or group.rank == 0:
            torch.save(got, out / f"{method}.pt")
    parallel.shutdown()
