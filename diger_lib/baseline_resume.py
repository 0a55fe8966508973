"""Epoch checkpoints inside cornac's ``fit`` (SASRec, BERT4Rec; LightGCN through ``baseline_lightgcn``), so a grid
point a session's end interrupts resumes where it stopped instead of starting again (a Beauty SASRec point takes
20-50 epochs, up to an hour of one core; a Yelp LightGCN point about as long).

cornac builds the model and its Adam optimizer inside ``fit`` and runs every epoch there. At each validation check
(``baselines._validation_hook``) ``save`` writes the model, the optimizer, both random streams (torch's global one:
dropout, the negatives of ``sasrec_bce1_loss``; cornac's numpy ``rng``: shuffling, negatives, masks), the epoch and
the epoch selection's state. On a resumed fit, ``resuming_adam`` restores them the moment cornac creates its
optimizer (after its ``manual_seed`` and model construction), and the fit runs only the remaining epochs: the
result equals an uninterrupted fit's (tested on the Tiny fixture)."""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

SELECTION_FIELDS = ("best", "best_epoch", "best_state", "history", "bad")


def point_file(folder: Path, settings: Any, params: dict[str, Any]) -> Path:
    """The checkpoint of one grid point under these settings (another configuration never reads it)."""
    key = hashlib.sha256(json.dumps([settings, params], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(folder) / f"point_{key}.pt"


def _objective_params(net: Any) -> list:
    objective = getattr(net, "objective_", None)  # BERT4Rec's training objective (MLM: no parameters of its own)
    return list(objective.parameters()) if objective is not None else []


def write(path: Path, opt: Any, epoch: int, seconds: float, selection: Any, **state: Any) -> None:
    """Write a fit's state after ``epoch``: Adam, the epoch selection and the model's own ``state`` (atomically: a
    stop while writing keeps the previous checkpoint)."""
    from .checkpoint import atomic_torch_save

    atomic_torch_save({"epoch": epoch, "seconds": seconds, "opt": opt.state_dict(),
                       "selection": {k: getattr(selection, k) for k in SELECTION_FIELDS}, **state}, path)


def save(path: Path, net: Any, opt: Any, epoch: int, seconds: float, selection: Any) -> None:
    """A SASRec/BERT4Rec fit's state: model, objective and both random streams besides ``write``'s."""
    import torch

    write(path, opt, epoch, seconds, selection, model=net.model.state_dict(),
          objective=[p.detach().clone() for p in _objective_params(net)], torch_rng=torch.get_rng_state(),
          np_rng=net.rng.get_state())


def resume(saved: dict[str, Any] | None, selection: Any, log: Callable[[str], None]) -> tuple[float, int]:
    """The fit's clock start and the epochs already run: with a checkpoint, the selection as it was and a log line;
    without, now and 0."""
    if saved is None:
        return time.time(), 0
    for k, v in saved["selection"].items():
        setattr(selection, k, v)
    log(f"  resumed after epoch {saved['epoch']} (best {selection.best:.4f} at epoch {selection.best_epoch})")
    return time.time() - saved["seconds"], saved["epoch"]


def load(path: Path | None) -> dict[str, Any] | None:
    if path is None or not Path(path).is_file():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _restore_sequential(net: Any, opt: Any, saved: dict[str, Any]) -> None:
    """What ``save`` wrote, back into a SASRec/BERT4Rec fit: model, objective, optimizer and both random streams."""
    import torch

    net.model.load_state_dict(saved["model"])
    with torch.no_grad():
        for p, v in zip(_objective_params(net), saved["objective"]):
            p.copy_(v)
    opt.load_state_dict(saved["opt"])
    torch.set_rng_state(saved["torch_rng"])
    net.rng.set_state(saved["np_rng"])


@contextmanager
def resuming_adam(net: Any, saved: dict[str, Any] | None, box: list,
                  restore: Callable[[Any, dict[str, Any]], None] | None = None) -> Iterator[None]:
    """Within this block, the ``torch.optim.Adam`` cornac's ``fit`` creates is put in ``box`` (``save`` needs it) and,
    with ``saved``, starts from the checkpoint: ``restore(optimizer, saved)``, by default SASRec's/BERT4Rec's (model,
    objective, optimizer and both random streams)."""
    import torch

    original = torch.optim.Adam
    restore = restore or partial(_restore_sequential, net)

    class Adam(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            box.append(self)
            if saved is not None:
                restore(self, saved)

    torch.optim.Adam = Adam
    try:
        yield
    finally:
        torch.optim.Adam = original
