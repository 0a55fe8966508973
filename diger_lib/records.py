"""What a notebook records: the flat ``metrics.json``, ``timing.json``, other JSON files, per-user test ranks."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_open


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) else v
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_json(path: Path | str, obj: Any) -> Path:
    """Atomic JSON write (temp file + rename)."""
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n")
    return Path(path)


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def write_metrics(out_dir: Path | str, metrics: dict[str, Any]) -> Path:
    """The flat ``metrics.json`` every notebook writes; tables and tests read it, never the outputs."""
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, (dict, list, tuple)):
            raise TypeError(f"metrics.json must be flat; {k!r} is a {type(v).__name__}")
        flat[k] = _plain(v)
    return write_json(Path(out_dir) / "metrics.json", flat)


def write_timing(out_dir: Path | str, **timing: Any) -> Path:
    """Wall times and resume facts go to ``timing.json``, apart from the results, so that metrics.json is
    identical for identical runs."""
    return write_json(Path(out_dir) / "timing.json", {k: _plain(v) for k, v in timing.items()})


def write_ranks(path: Path | str, ranks: Any) -> Path:
    """Per-user target ranks (-1 = not in the top k), one integer per line, gzip-compressed (small in git)."""
    with atomic_open(path, "wb") as fh:
        fh.write(gzip.compress("\n".join(str(int(r)) for r in np.asarray(ranks)).encode() + b"\n", mtime=0))
    return Path(path)


def read_ranks(path: Path | str) -> np.ndarray:
    return np.array(gzip.decompress(Path(path).read_bytes()).split(), dtype=np.int64)
