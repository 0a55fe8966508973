"""Epoch selection for the cornac baselines: validation NDCG@10 checked every few epochs, patience, the best state
kept (``baselines``, ``baseline_lightgcn``, ``peer_tiger``)."""
from __future__ import annotations

from typing import Any, Callable


class _OurValidation:
    """What cornac's ``fit`` gets as ``val_set``: it only has to be "not None" (and resettable), since the hook
    evaluates our own validation samples."""

    def reset(self) -> None:
        pass


class _Stop(Exception):
    """Raised from the validation hook when validation NDCG@10 has not improved for ``patience`` checks."""


class Selection:
    """Epoch selection on validation NDCG@10 with patience; keeps the best state and the per-check history."""

    def __init__(self, evaluate_valid: Callable[[], dict[str, float]], patience: int, snapshot: Callable[[], Any]):
        self.evaluate_valid, self.patience, self.snapshot = evaluate_valid, patience, snapshot
        self.best, self.best_epoch, self.best_state, self.history, self.bad = -1.0, 0, None, [], 0

    def check(self, epoch: int, seconds: float) -> float:
        valid = self.evaluate_valid()
        self.history.append({"epoch": epoch, **{f"val_{k}": v for k, v in valid.items()}, "val_ndcg10": valid["N@10"],
                             "seconds": seconds})  # the column names of notebook 04's history (plots.training_curve)
        if valid["N@10"] > self.best:
            self.best, self.best_epoch, self.best_state, self.bad = valid["N@10"], epoch, self.snapshot(), 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            raise _Stop
        return valid["N@10"]
