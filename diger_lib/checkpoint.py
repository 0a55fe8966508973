"""Atomic checkpoints with a config fingerprint (the RNG states that make a resume exact are in ``runtime``)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_open


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable (truncated, corrupt) or belongs to another configuration."""


def fingerprint(config: dict[str, Any]) -> str:
    """Stable hash of a JSON-able config; a checkpoint only resumes a run with the same fingerprint."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a kill never leaves half a file."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def load_checkpoint(path: Path | str, expected_fingerprint: str | None = None) -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated zip, wrong format, ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); it is truncated or "
                              f"corrupt. Delete it to start the run again.") from None
    if not isinstance(ckpt, dict) or "fingerprint" not in ckpt:
        raise CheckpointError(f"{path} is not a diger checkpoint")
    if expected_fingerprint is not None and ckpt["fingerprint"] != expected_fingerprint:
        raise CheckpointError(f"checkpoint {path} was written by a different configuration (fingerprint "
                              f"{ckpt['fingerprint']} != {expected_fingerprint}). Use a fresh output folder, or "
                              f"delete the checkpoint to start over.")
    return ckpt
